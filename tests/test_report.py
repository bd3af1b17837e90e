"""`dagger report` on real runs (point env, 3 seeds and another config): plots, seed aggregates, JSON/CSV, HTML
(opened in headless Chromium where installed), per-task success and evaluation videos."""

import csv
import io
import json
import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch

from conftest import FilmedPointEnv, PointEnv, PointExpert, point_config
from dagger_cli.assembly import seed_samples
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.policies.mlp import MLPPolicy
from test_cli import dagger

pytest.importorskip("matplotlib")
av = pytest.importorskip("av")


def train(run_dir, env=None, **sets):
    cfg = point_config(**{"runner.max_epochs": 3, "runner.val_check_interval": 1, **sets})
    torch.manual_seed(cfg.seed)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    student = MLPPolicy(cfg.actor.model)
    runner = SyncRunner(cfg, run_dir, env or FilmedPointEnv(3), student, PointExpert(), tensorboard=False,
                        seed_samples=seed_samples(cfg, student.action_shape))
    return runner.run()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three seeds of one config, filmed, and one run of another config (a smaller learning rate)."""
    root = tmp_path_factory.mktemp("runs")
    summaries = [train(root / f"seed{s}", seed=s, **{"runner.eval_video_episodes": 2}) for s in (0, 1, 2)]
    summaries.append(train(root / "slow", **{"actor.optim.lr": 1e-4}))
    return root, summaries


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_evaluation_records_success_per_task(runs):
    root, summaries = runs
    # THEN every evaluation's episodes are split by the task the env names, in the metrics and the summary
    rows = [json.loads(line) for line in (root / "seed0" / "metrics.jsonl").read_text().splitlines()]
    final = summaries[0]["student_final_tasks"]
    assert set(final) == {"goal_left", "goal_right"}
    assert sum(t["episodes"] for t in final.values()) == summaries[0]["eval_episodes"]
    overall = sum(t["success_once"] * t["episodes"] for t in final.values()) / summaries[0]["eval_episodes"]
    assert overall == pytest.approx(summaries[0]["student_final_sr"])
    for task, entry in final.items():
        assert rows[-1][f"eval/task/{task}/success_once"] == entry["success_once"]


def test_evaluation_videos_decode_to_the_episode_length(runs):
    root, summaries = runs
    # THEN the first 2 episodes of each evaluation are mp4 files named by seed and outcome, one frame per step
    for label in ("0", "expert", "1", "2", "3"):
        videos = sorted((root / "seed0" / "videos" / label).glob("*.mp4"))
        assert len(videos) == 2, label
        for video in videos:
            assert video.stem.split("-")[1] in ("success", "failure")
            with av.open(str(video)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert len(frames) == 1 + 20  # the reset frame and one per step of the 20-step episode
            assert frames[0].shape == (24, 48, 3)  # the two cameras side by side
    final = summaries[0]
    outcome = {v.stem: v for v in (root / "seed0" / "videos" / "3").glob("*.mp4")}
    assert len(outcome) == 2 and final["student_final_sr"] is not None


def test_an_env_that_renders_nothing_says_so_once_and_records_none(tmp_path):
    notes = []

    class Hooks:
        def __getattr__(self, name):
            return lambda *a, **k: None

        def note(self, text):
            notes.append(text)

    cfg = point_config(**{"runner.max_epochs": 2, "runner.val_check_interval": 1, "runner.eval_video_episodes": 2})
    SyncRunner(cfg, tmp_path, PointEnv(3), MLPPolicy(cfg.actor.model), PointExpert(), hooks=Hooks(),
               tensorboard=False).run()
    assert len(notes) == 1 and "renders no frames" in notes[0]
    assert not (tmp_path / "videos").exists()


def test_report_aggregates_seeds_and_lists_what_differs(runs):
    root, summaries = runs
    result = dagger("report", *(str(root / n) for n in ("seed0", "seed1", "seed2", "slow")), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["runs"]) == 4
    three, one = data["configs"]
    assert three["seeds"] == [0, 1, 2] and one["seeds"] == [0]
    finals = [s["student_final_sr"] for s in summaries[:3]]
    assert three["student_final_sr"] == pytest.approx(np.mean(finals))
    low, high = three["student_final_sr_ci95"]
    assert low <= np.mean(finals) <= high and (high > low or len(set(finals)) == 1)
    assert three["differs"] == {"actor.optim.lr": 0.001, "runner.eval_video_episodes": 2}
    # AND the expert's queries are counted: every visited state, 3 iterations of 40 steps in 3 envs
    assert [s["expert_queries"] for s in summaries] == [360] * 4 and three["expert_queries"] == 360
    assert "actor.optim.lr=0.0001" in one["config"]
    # AND --csv gives the same numbers
    table = list(csv.DictReader(io.StringIO(dagger("report", *(str(root / n) for n in ("seed0", "seed1", "seed2",
                                                                                        "slow")), "--csv").stdout)))
    assert [r["kind"] for r in table] == ["run"] * 4 + ["config"] * 2
    assert float(table[4]["student_final_sr"]) == pytest.approx(three["student_final_sr"])
    assert float(table[0]["student_final_sr"]) == summaries[0]["student_final_sr"]


@pytest.mark.parametrize("x", ["iteration", "env_steps", "wall", "expert_queries"])
def test_report_plots_the_curves(runs, tmp_path, x):
    root, _ = runs
    png = tmp_path / "curves.png"
    result = dagger("report", str(root / "seed0"), str(root / "seed1"), str(root / "slow"), "--plot", str(png),
                    "--x", x)
    assert result.returncode == 0, result.stderr
    width, height = png_size(png)
    assert (width, height) == (1200, 680)  # 15 × 8.5 in at 80 dpi
    assert png.stat().st_size > 30_000  # six panels of curves, not an empty canvas


def test_a_curves_interval_stays_where_its_values_can_be():
    """GIVEN two seeds whose loss and success differ widely (the t-interval of two values is 12.7 standard errors
    wide) WHEN their curves are aggregated THEN the loss's band does not go below 0, where no loss is, and the
    success rate's stays within [0, 1] (libero-spatial-small's report drew a loss band down to -0.3)."""
    from dagger_cli.report.plot import curve
    from dagger_cli.report.runs import Group

    class Run:
        def __init__(self, loss, success):
            self.series_of = {"train/dagger/actor_loss": loss, "env/success_once": success}

        def series(self, metric, x):
            values = self.series_of[metric]
            return list(range(len(values))), list(values)

    group = Group([Run([1.1, 0.2, 0.1], [1.0, 0.0, 0.5]), Run([0.1, 0.5, 0.1], [0.5, 1.0, 0.0])])
    _, _, low, _ = curve(group, "train/dagger/actor_loss", "iteration")
    assert (low >= 0).all() and low[0] == 0.0
    _, _, low, high = curve(group, "env/success_once", "iteration")
    assert (low >= 0).all() and (high <= 1).all()


def test_success_against_expert_queries_takes_the_cumulative_count_as_x(runs):
    from dagger_cli.report.plot import curve
    from dagger_cli.report.runs import group_runs, load_run

    root, _ = runs
    group = group_runs([load_run(root / f"seed{s}") for s in (0, 1, 2)])[0]
    xs, mean, _, _ = curve(group, "eval/success_once", "expert_queries")
    assert xs.tolist() == [0, 120, 240, 360] and len(mean) == 4


def test_html_report_holds_the_tables_the_curves_and_the_videos(runs, tmp_path):
    root, summaries = runs
    page = tmp_path / "report.html"
    result = dagger("report", *(str(root / n) for n in ("seed0", "seed1", "seed2", "slow")), "--html", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    for column in ("Config", "Student init SR", "Expert SR", "Training time", "Student final SR"):
        assert f"<th>{column}</th>" in text
    mean = np.mean([s["student_final_sr"] for s in summaries[:3]])
    assert f"{100 * mean:.1f}%" in text
    assert text.count('src="data:image/png;base64,') == 1
    assert text.count('src="data:video/mp4;base64,') == 6  # 2 videos of the last evaluation of each filmed run
    assert "goal_left" in text and "actor.optim.lr" in text
    assert "http://" not in text and "https://" not in text  # nothing to fetch


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")
def test_html_report_renders_in_headless_chromium(runs, tmp_path):
    root, summaries = runs
    page = tmp_path / "report.html"
    dagger("report", str(root / "seed0"), str(root / "seed1"), "--html", str(page))
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    # THEN the page loaded, its inline curves image decoded, and the results are shown
    assert 'data-ready="yes"' in dom
    assert 'data-images="1"' in dom and 'data-images-loaded="1"' in dom
    mean = np.mean([s["student_final_sr"] for s in summaries[:2]])
    assert f"{100 * mean:.1f}%" in dom and "Student final SR" in dom
