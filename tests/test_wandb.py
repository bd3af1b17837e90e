"""Weights & Biases beside TensorBoard (runner.logger.logger_backends), run offline (WANDB_MODE=offline) and read
back from the run's own `.wandb` record file: the scalars metrics.jsonl holds, at its steps; the evaluation videos;
one W&B run continued by `--resume`. And a missing wandb package: one line naming the key and the extra."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

wandb = pytest.importorskip("wandb")

from conftest import FilmedPointEnv, PointExpert, StopAfter, point_config  # noqa: E402
from dagger_cli.core.engine.runner import SyncRunner  # noqa: E402
from dagger_cli.core.io import checkpoint  # noqa: E402
from dagger_cli.policies.mlp import MLPPolicy  # noqa: E402

BOTH = "[tensorboard, wandb]"


def read_records(path: Path) -> list:
    """The protobuf records of a `.wandb` file: W&B's 7-byte header (`:W&B`, magic, version), then LevelDB's log
    format (32 KiB blocks of records, each with a 7-byte header: CRC32C, length, type FULL=1 / FIRST / MIDDLE /
    LAST=4), each record a `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding to the block's end
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            records.append(record)
            pending = b""
        else:
            pending += chunk
    return records


def history(run_dir: Path) -> tuple[dict[int, dict], list]:
    """{step: logged values} and the records of one offline W&B run directory."""
    (file,) = run_dir.glob("run-*.wandb")
    records = read_records(file)
    rows = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            rows[int(items["_step"])] = items
    return rows, records


def offline_runs(wandb_dir: Path, run_id: str) -> list[Path]:
    """The offline runs of W&B run `run_id`, oldest first (`offline-run-<time>-<id>`, `-1` added in the same second)."""
    return sorted((wandb_dir / "wandb").glob(f"offline-run-*-{run_id}*"))


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def scalars_of(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "step" and v is not None}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    wandb_dir = tmp_path / "wandb-dir"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return wandb_dir


def make_runner(run_dir, cfg, hooks=None):
    torch.manual_seed(cfg.seed)
    return SyncRunner(cfg, run_dir, FilmedPointEnv(3), MLPPolicy(cfg.actor.model), PointExpert(), hooks=hooks)


def test_wandb_gets_the_scalars_of_metrics_jsonl_at_their_steps_and_the_videos(tmp_path, offline):
    # GIVEN a 2-iteration run evaluating after each, filming 2 episodes, logging to TensorBoard and W&B (offline)
    cfg = point_config(**{"runner.max_epochs": 2, "runner.val_check_interval": 1, "runner.eval_video_episodes": 2,
                          "runner.logger.logger_backends": BOTH, "runner.logger.project_name": "dagger-tests"})
    run_dir = tmp_path / "run"
    make_runner(run_dir, cfg).run()
    # THEN the run dir names the W&B run, whose record file is under WANDB_DIR
    info = json.loads((run_dir / "wandb.json").read_text())
    assert info["project"] == "dagger-tests" and info["name"] == f"{cfg.name}/run"
    (wandb_run,) = offline_runs(offline, info["id"])
    logged, records = history(wandb_run)
    # AND W&B holds every number of metrics.jsonl under its name at its step, and nothing else but the videos
    rows = metrics_rows(run_dir)
    assert sorted(logged) == [r["step"] for r in rows] == [0, 1, 2]
    for row in rows:
        got = {k: v for k, v in logged[row["step"]].items() if not k.startswith("_") and "/videos" not in k}
        assert got == pytest.approx(scalars_of(row)), row["step"]
        assert "eval/success_once" in got and "train/dagger/beta" in got or row["step"] == 0
    # AND the TensorBoard events hold the same scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb")).Reload()
    for key in ("eval/success_once", "train/dagger/actor_loss", "train/replay_buffer/total_samples"):
        tb = {e.step: e.value for e in events.Scalars(key)}
        assert tb == pytest.approx({r["step"]: r[key] for r in rows if r.get(key) is not None}), key
    # AND each evaluation's filmed episodes are W&B videos at its step, byte for byte the run's mp4 files
    for step, key, label in [(0, "eval/videos", "0"), (0, "eval_expert/videos", "expert"), (1, "eval/videos", "1"),
                             (2, "eval/videos", "2")]:
        videos = logged[step][f"{key}/videos"]
        files = sorted((run_dir / "videos" / label).glob("*.mp4"))
        assert logged[step][f"{key}/count"] == len(files) == 2
        assert sorted(v["sha256"] for v in videos) == sorted(hashlib.sha256(f.read_bytes()).hexdigest()
                                                             for f in files)
        for video in videos:
            assert video["_type"] == "video-file" and (wandb_run / "files" / video["path"]).is_file()
    # AND the W&B config is the run's resolved config
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["seed"] == cfg.seed and config["runner"]["max_epochs"] == 2
    assert config["runner"]["logger"]["project_name"] == "dagger-tests"


def test_a_resumed_run_continues_the_same_wandb_run_from_its_checkpoint(tmp_path, offline):
    # GIVEN a run logging to W&B only, stopped after iteration 1 (as a Ctrl-C does), then resumed to iteration 3
    cfg = point_config(**{"runner.max_epochs": 3, "runner.logger.logger_backends": "[wandb]",
                          "runner.eval_expert": False})
    run_dir = tmp_path / "run"
    hooks = StopAfter(1)
    first = make_runner(run_dir, cfg, hooks)
    hooks.runner = first
    first.run()
    resumed = make_runner(run_dir, cfg)
    resumed.state.restore(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])
    resumed.run()
    # THEN both parts logged to one W&B run id, the second from the step after the checkpoint on
    run_id = json.loads((run_dir / "wandb.json").read_text())["id"]
    parts = offline_runs(offline, run_id)
    assert len(parts) == 2 and sorted((offline / "wandb").glob("offline-run-*")) == parts
    before, _ = history(parts[0])
    after, _ = history(parts[1])
    assert sorted(before) == [0, 1] and sorted(after) == [2, 3]
    # AND together they are metrics.jsonl, each step once; TensorBoard was not asked for
    rows = metrics_rows(run_dir)
    for row in rows:
        logged = (before if row["step"] <= 1 else after)[row["step"]]
        assert {k: v for k, v in logged.items() if not k.startswith("_")} == pytest.approx(scalars_of(row))
    assert not (run_dir / "tb").exists()


def test_without_the_wandb_package_selecting_it_is_one_line_naming_the_key_and_the_extra(tmp_path):
    # GIVEN a Python where `import wandb` fails
    code = ("import sys; sys.modules['wandb'] = None; sys.argv = ['dagger'] + sys.argv[1:]\n"
            "from dagger_cli.cli.main import main\nmain()")
    run_dir = tmp_path / "run"
    # WHEN a run selects it
    result = subprocess.run([sys.executable, "-c", code, "train", "pick-cube", "--run-dir", str(run_dir), "--set",
                             f"runner.logger.logger_backends={BOTH}"], capture_output=True, text=True)
    # THEN it fails in one line naming the key and the extra, before anything is built
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: runner.logger.logger_backends: wandb is not installed; pip install 'dagger-cli[wandb]'")
    assert not run_dir.exists()


def test_an_unknown_backend_names_the_key():
    from dagger_cli.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"runner.logger.logger_backends: 'wandbb' is not one of 'tensorboard', "
                                          r"'wandb' \(did you mean 'wandb'\?\)"):
        point_config(**{"runner.logger.logger_backends": "[wandbb]"})
    with pytest.raises(ConfigError, match="runner.logger.logger_backends: expected a list"):
        point_config(**{"runner.logger.logger_backends": "wandb"})
    assert np.array_equal(point_config().runner.logger.logger_backends, ["tensorboard"])


def test_wandb_may_be_added_on_resume_and_logs_from_the_resumed_step(tmp_path, offline):
    from dagger_cli import assembly
    from dagger_cli.core.io.run_dir import record_resume, resume_config
    from test_reliability import runner_in, started_run

    # GIVEN a run stopped after iteration 1 that logged to TensorBoard only
    run_dir, _ = started_run(tmp_path, stop_after=1, **{"runner.max_epochs": 2})
    assert not (run_dir / "wandb.json").exists()
    # WHEN it is resumed with W&B added (a key --resume may change)
    cfg, changed = resume_config(run_dir, [f"runner.logger.logger_backends={BOTH}"])
    assert changed == {"runner.logger.logger_backends": ["tensorboard", "wandb"]}
    record_resume(run_dir, cfg, changed)
    resumed = runner_in(run_dir, cfg)
    resumed.state.restore(assembly.resume_checkpoint(run_dir, warn=pytest.fail))
    resumed.run()
    # THEN a W&B run holds the steps after the checkpoint, as metrics.jsonl does
    (wandb_run,) = offline_runs(offline, json.loads((run_dir / "wandb.json").read_text())["id"])
    logged, _ = history(wandb_run)
    (row,) = [r for r in metrics_rows(run_dir) if r["step"] == 2]
    assert sorted(logged) == [2]
    assert {k: v for k, v in logged[2].items() if not k.startswith("_")} == pytest.approx(scalars_of(row))
