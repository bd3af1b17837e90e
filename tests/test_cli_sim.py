"""End to end on the real ManiSkill: train, eval, report, check, Ctrl-C, and resume after SIGKILL."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import requires_maniskill
from test_cli import assert_eval_reproduces, dagger

pytestmark = [requires_maniskill, pytest.mark.sim]

SMALL = [
    "--set", "env.max_steps_per_rollout_epoch=100",
    "--set", "env.eval.num_episodes=4",
    "--set", "actor.update_epoch=20",
    "--set", "algorithm.replay_buffer.min_buffer_size=100",
]


def final_student(run_dir: Path) -> dict:
    ckpts = sorted((run_dir / "checkpoints").glob("iter_*"))
    return load_file(str(ckpts[-1] / "student.safetensors"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A short real run: 4 iterations, checkpoint each, no expert eval."""
    run_dir = tmp_path_factory.mktemp("runs") / "straight"
    result = dagger("train", "pick-cube", "--run-dir", str(run_dir), "--json",
                    "--set", "runner.max_epochs=4", "--set", "runner.eval_expert=false", *SMALL)
    assert result.returncode == 0, result.stderr
    return run_dir, json.loads(result.stdout)


def test_train_writes_summary_metrics_tensorboard_and_checkpoints(finished_run):
    run_dir, summary = finished_run
    assert summary["iterations"] == 4 and summary["eval_episodes"] == 4
    assert summary["env_steps"] == 4 * 100 * 2
    assert summary["expert_sr"] is None and summary["status"] == "finished"
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # the reported success is the final evaluation's, over its 4 episodes
    assert summary["student_final_sr"] == rows[4]["eval/success_once"] and rows[4]["eval/episodes"] == 4
    assert summary["student_final_sr"] * 4 == round(summary["student_final_sr"] * 4)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[4]["train/replay_buffer/total_samples"] == 800
    assert rows[1]["train/dagger/beta"] == 1.0 and rows[2]["train/dagger/beta"] == 0.5
    assert rows[1]["train/dagger/expert_action_frac"] == 1.0
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert (run_dir / "config.yaml").read_text().startswith("name: pick-cube")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["iter_000003", "iter_000004", "replay_buffer"]


def test_eval_reproduces_the_final_evaluation(finished_run):
    # GIVEN the finished run; WHEN its student is evaluated with the same protocol
    run_dir, summary = finished_run
    # THEN the numbers are those the run reported (same weights, same seeds, deterministic student)
    assert_eval_reproduces(run_dir, summary, episodes=4)
    human = dagger("eval", "--ckpt", str(run_dir / "checkpoints" / "iter_000004"), "--episodes", "2")
    assert human.returncode == 0 and "success_once" in human.stdout and "episodes        2" in human.stdout


def test_report_tables_the_run(finished_run):
    run_dir, summary = finished_run
    result = dagger("report", str(run_dir), "--json")
    assert result.returncode == 0
    (row,) = json.loads(result.stdout)["runs"]
    assert row["student_final_sr"] == summary["student_final_sr"] and row["status"] == "finished"
    human = dagger("report", str(run_dir), env={"COLUMNS": "200"})
    for column in ("Config", "Student init SR", "Expert SR", "Training time", "Student final SR", "pick-cube"):
        assert column in human.stdout


def test_check_passes_on_this_machine():
    # (its --json output on a passing check is test_pi0's, test_robotwin_check's and test_third_party_adapter's)
    human = dagger("check", "pick-cube")
    assert human.returncode == 0 and "✓ env: PickCube-v1" in human.stdout, human.stdout + human.stderr
    passed = {line[2:].split(":")[0] for line in human.stdout.splitlines() if line.startswith("✓ ")}
    assert passed >= {"simulator", "env", "student", "expert", "renderer"}


def test_check_reports_each_problem_and_exits_3(tmp_path):
    result = dagger("check", "pick-cube", "--set", "actor.model.obs_dim=40",
                    "--set", "rollout.expert_model.model_type=mlp", "--set", "rollout.expert_model.obs_dim=40",
                    "--set", f"runner.expert_ckpt_path={tmp_path}/missing.pt")
    assert result.returncode == 3
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    assert "actor.model.obs_dim is 40" in lines["✗ env"]
    assert "missing.pt" in lines["✗ expert"]
    assert lines["✓ simulator"]


def test_train_with_mismatched_model_sizes_names_the_key(tmp_path):
    result = dagger("train", "pick-cube", "--run-dir", str(tmp_path / "r"), "--set", "actor.model.action_dim=4")
    assert result.returncode == 2
    assert "actor.model.action_dim is 4 but PickCube-v1 actions have 8" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def start_training(run_dir: Path, *extra: str) -> subprocess.Popen:
    args = ["dagger", "train", "pick-cube", "--run-dir", str(run_dir),
            "--set", "runner.max_epochs=4", "--set", "runner.eval_expert=false", *SMALL, *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_continued_like(straight: Path, resumed: Path, from_iteration: int) -> None:
    """The resumed run has every iteration once, the schedule and buffer counts of the uninterrupted run, and
    identical metrics up to the checkpoint. (After the checkpoint, bitwise equality is an engine guarantee tested
    with a deterministic env in test_runner.py: PhysX CPU contacts depend on a process's simulation history.)"""
    a, b = metrics_rows(straight), metrics_rows(resumed)
    assert [r["step"] for r in b] == [0, 1, 2, 3, 4]
    for key in ("train/dagger/beta", "train/replay_buffer/total_samples", "train/replay_buffer/cache_size"):
        assert [r[key] for r in a[1:]] == [r[key] for r in b[1:]]
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}  # noqa: E731
    assert [strip(r) for r in a[: from_iteration + 1]] == [strip(r) for r in b[: from_iteration + 1]]
    assert not torch.equal(final_student(resumed)["actor_mean.weight"],
                           load_file(str(resumed / "checkpoints" / "iter_000003" / "student.safetensors"))["actor_mean.weight"])


def test_ctrl_c_stops_cleanly_and_after_sigkill_the_run_resumes_at_its_checkpoint(finished_run, tmp_path):
    """One run (its buffer on disk) stopped by Ctrl-C, resumed, killed with SIGKILL, resumed to its end. (Merged from
    test_ctrl_c_stops_cleanly_with_a_checkpoint_and_resumes and test_resume_after_sigkill_continues_at_the_checkpoint,
    which trained a run each. The buffer in RAM, and both storages killed mid-iteration and compared bitwise, are
    test_runner.py's test_resume_after_sigkill_continues_exactly_at_the_checkpoint on the point env; a RAM buffer
    resumed through the CLI is the async Ctrl-C test below.)"""
    run = tmp_path / "run"
    # GIVEN a run that receives Ctrl-C (SIGINT to the whole process group, as a terminal sends it)
    proc = start_training(run, "--set", "algorithm.replay_buffer.storage=disk")
    wait_for(run / "checkpoints" / "iter_000001" / "state.json", proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    # THEN it finishes the iteration, saves, says how to resume, and exits 130
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    done = sorted(p.name for p in (run / "checkpoints").glob("iter_*"))
    assert done and done[-1] < "iter_000004"
    stopped_at = int(done[-1].split("_")[1])
    assert stopped_at <= 2  # the iteration under way when Ctrl-C came
    # WHEN it is resumed, and that run is killed with SIGKILL (workers included) right after its next checkpoint (the
    # disk buffer may have rows written after it), then resumed again
    resumed = subprocess.Popen(["dagger", "train", "--resume", str(run)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(run / "checkpoints" / f"iter_{stopped_at + 1:06d}" / "state.json", resumed)
    os.killpg(resumed.pid, signal.SIGKILL)
    resumed.wait()
    result = dagger("train", "--resume", str(run))
    # THEN it says where it continues, and finishes the run like an uninterrupted one (a resumed run's --json summary:
    # the async test's)
    assert result.returncode == 0, result.stderr
    resumed_at = int(result.stderr.split("resuming")[1].split("at iteration")[1].split()[0])
    assert resumed_at >= stopped_at + 1 and "(beta " in result.stderr
    assert json.loads((run / "summary.json").read_text())["iterations"] == 4
    # (identical metrics up to the Ctrl-C checkpoint, the first process's: on disk, the same samples as in RAM; after
    # it, the counts and schedule)
    assert_continued_like(finished_run[0], run, stopped_at)


def test_train_async_on_an_embedded_ray_stops_on_ctrl_c_and_resumes(tmp_path):
    pytest.importorskip("ray")
    # GIVEN an async run (embedded Ray) that receives Ctrl-C after its first checkpoint
    run = tmp_path / "async"
    proc = start_training(run, "--async")
    wait_for(run / "checkpoints" / "iter_000001" / "state.json", proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    # THEN Ray's processes are not torn down under it: the run stops cleanly with a checkpoint and exits 130
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err and "failed" not in err
    stopped_at = int(sorted(p.name for p in (run / "checkpoints").glob("iter_*"))[-1].split("_")[1])
    assert 1 <= stopped_at < 4
    assert [r["step"] for r in metrics_rows(run)] == list(range(stopped_at + 1))
    # AND `--resume` continues it as an async run to the end
    result = dagger("train", "--resume", str(run), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["iterations"] == 4 and summary["env_steps"] > 0
    rows = metrics_rows(run)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert all("train/async/policy_lag" in r for r in rows[1:])
    assert "eval/success_once" in rows[4] and summary["student_final_sr"] == rows[4]["eval/success_once"]
    assert json.loads((run / "meta.json").read_text())["mode"] == "async"
