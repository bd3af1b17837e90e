"""The reliability defects found in review, each pinned by a test: resume overrides, run dir names, broken
checkpoints, failed checkpoint writes, unsafe .pt files, episodes cut short by the end of a rollout."""

import errno
import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from conftest import ConstantPolicy, PointEnv, PointExpert, StopAfter, point_config
from dagger_cli import runs
from dagger_cli.core import checkpoint
from dagger_cli.core.errors import CheckpointError, UsageError
from dagger_cli.core.rollout import Rollout
from dagger_cli.core.runner import SyncRunner
from dagger_cli.policies.mlp import MLPPolicy
from test_cli import dagger


def runner_in(run_dir, cfg, hooks=None):
    torch.manual_seed(cfg.seed)
    return SyncRunner(cfg, run_dir, PointEnv(3), MLPPolicy(cfg.actor.model), PointExpert(), hooks=hooks,
                      tensorboard=False)


def started_run(tmp_path, stop_after=None, **overrides):
    """A point-env run dir (config.yaml, meta.json), run until `stop_after` iterations (or the end)."""
    cfg = point_config(**overrides)
    run_dir = runs.create_run_dir(tmp_path / "run", cfg, ["test"])
    hooks = StopAfter(stop_after) if stop_after else None
    runner = runner_in(run_dir, cfg, hooks)
    if hooks:
        hooks.runner = runner
    runner.run()
    return run_dir, runner


# RESUME --set
def test_a_resume_override_of_an_allowed_key_is_kept_for_the_next_resume_and_the_report(tmp_path):
    # GIVEN a run of 2 iterations stopped after 1
    run_dir, _ = started_run(tmp_path, stop_after=1, **{"runner.max_epochs": 2})
    # WHEN it is resumed with runner.max_epochs=3 and runs to its end
    cfg, changed = runs.resume_config(run_dir, ["runner.max_epochs=3"])
    assert changed == {"runner.max_epochs": 3}
    loaded = runs.resume_checkpoint(run_dir, warn=pytest.fail)
    runs.record_resume(run_dir, cfg, changed)
    resumed = runner_in(run_dir, cfg)
    resumed.state.restore(loaded)
    summary = resumed.run()
    # THEN the run went to 3, the saved config says 3, and a later resume and the report see 3
    assert summary["iterations"] == 3 and summary["status"] == "finished"
    assert runs.run_config(run_dir).runner.max_epochs == 3
    assert json.loads((run_dir / "meta.json").read_text())["resumes"][0]["set"] == {"runner.max_epochs": 3}
    report = dagger("report", str(run_dir), "--json")
    (row,) = json.loads(report.stdout)["runs"]
    assert row["max_epochs"] == 3 and row["iterations"] == 3 and row["status"] == "finished"


def test_a_resume_override_of_state_shaping_key_is_refused_in_one_line(tmp_path):
    # GIVEN a stopped run
    run_dir, _ = started_run(tmp_path, stop_after=1, **{"runner.max_epochs": 2})
    before = (run_dir / "config.yaml").read_text()
    # WHEN --resume tries to change the replay buffer's size
    with pytest.raises(UsageError) as e:
        runs.resume_config(run_dir, ["algorithm.replay_buffer.sample_window_size=100"])
    # THEN it is refused, naming the key, its value in the checkpoint and what may change; nothing is written
    message = str(e.value)
    assert "algorithm.replay_buffer.sample_window_size" in message and "500" in message and "runner.max_epochs" in message
    assert "\n" not in message and (run_dir / "config.yaml").read_text() == before
    result = dagger("train", "--resume", str(run_dir), "--set", "algorithm.replay_buffer.sample_window_size=100")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cannot change on --resume" in result.stderr


# RUN DIRS
def test_two_runs_started_in_the_same_second_get_their_own_run_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.time, "strftime", lambda fmt, *a: "20261202-101500")
    cfg = point_config()
    first, second = runs.default_run_dir(cfg, tmp_path), runs.default_run_dir(cfg, tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name == "20261202-101500-2"


# BROKEN CHECKPOINTS
def test_resume_falls_back_past_a_broken_latest_checkpoint_with_a_warning(tmp_path):
    # GIVEN a run whose kept checkpoints are iterations 2 and 3, the rows only the newest holds half-written
    run_dir, _ = started_run(tmp_path, **{"runner.max_epochs": 3, "runner.keep_checkpoints": 2})
    states = [checkpoint.read_state(checkpoint.checkpoint_dir(run_dir / "checkpoints", i)) for i in (2, 3)]
    older, newer = ({m["name"] for m in s["replay_buffer"]["storage"]["segments"]} for s in states)
    (only_newest,) = newer - older
    broken = run_dir / "checkpoints" / "replay_buffer" / only_newest / "expert_action.bin"
    broken.write_bytes(broken.read_bytes()[:10])
    # WHEN the run is resumed
    warnings_said = []
    loaded = runs.resume_checkpoint(run_dir, warn=warnings_said.append)
    # THEN it continues from iteration 2, saying in one line which file was bad
    assert loaded.state["iteration"] == 2
    (line,) = warnings_said
    assert "iter_000003" in line and f"{only_newest}/expert_action.bin" in line and "\n" not in line
    # AND with every kept checkpoint broken it fails in one line
    older = checkpoint.checkpoint_dir(run_dir / "checkpoints", 2)
    (older / "state.json").write_text("{not json")
    with pytest.raises(UsageError) as e:
        runs.resume_checkpoint(run_dir, warn=lambda line: None)
    assert "no intact checkpoint" in str(e.value) and "\n" not in str(e.value)


def test_a_failed_checkpoint_write_leaves_the_previous_one_and_ends_the_run_in_one_line(tmp_path, monkeypatch):
    # GIVEN a run whose second checkpoint write hits a full disk
    import safetensors.torch

    real_save, calls = safetensors.torch.save_file, []

    def save_file(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 2:  # student + learner of iteration 1 went fine
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    cfg = point_config(**{"runner.max_epochs": 3})
    runner = runner_in(tmp_path, cfg)
    # WHEN the run saves after iteration 2
    with pytest.raises(CheckpointError) as e:
        runner.run()
    # THEN the error names the checkpoint and the reason, in one line, and iteration 1's checkpoint is whole
    message = str(e.value)
    assert "iter_000002" in message and "No space left on device" in message and "iter_000001" in message
    assert "\n" not in message
    kept = checkpoint.list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in kept] == ["iter_000001"]
    assert runner.state.read(kept[0]).state["iteration"] == 1
    assert not list((tmp_path / "checkpoints").glob(".iter_*"))  # no half-written directory left


# UNSAFE .pt FILES
class Payload:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_a_pickle_with_objects_is_refused_without_torchs_advice_or_warnings(tmp_path, capsys):
    from dagger_cli.policies.weights import read_state_dict

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"backbone.0.weight": Payload()}, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked UserWarning would fail here
        with pytest.raises(CheckpointError) as e:
            read_state_dict(tmp_path / "evil.pt")
    message = str(e.value)
    assert "evil.pt: not a weights-only checkpoint" in message
    assert "weights_only=False" not in message and "can still be loaded" not in message and "trust" not in message
    assert "unpickled arbitrary code" not in capsys.readouterr().out


# EPISODES CUT SHORT
def test_episodes_still_running_when_a_rollout_ends_are_counted_apart(tmp_path):
    # GIVEN a student that never reaches the goal: every episode runs its 10 steps, 3 envs, 25 steps each
    env = PointEnv(3)
    rollout = Rollout(env, ConstantPolicy(0.0), PointExpert(), max_episode_steps=10)
    result = rollout.collect(25, 0.0, iteration=0, seed=0)
    # THEN two finished episodes per env and one cut short at 5 steps are reported as such
    m = result.episodes.metrics()
    assert m["env/num_trajectories"] == 6 and m["env/unfinished_episodes"] == 3
    assert m["env/success_once"] == m["env/success_once_with_unfinished"] == 0.0
    # AND with an expert that succeeds at once, cut episodes count by their outcome so far
    result = Rollout(PointEnv(3), ConstantPolicy(0.0), PointExpert(), max_episode_steps=50,
                     terminate_on_success=False).collect(25, 1.0, iteration=0, seed=0)
    m = result.episodes.metrics()
    assert m["env/num_trajectories"] == 0 and m["env/unfinished_episodes"] == 3
    assert np.isnan(m["env/success_once"]) and m["env/success_once_with_unfinished"] == 1.0
