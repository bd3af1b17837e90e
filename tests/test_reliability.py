"""The reliability defects found in review, each pinned by a test: resume overrides, run dir names, broken
checkpoints, failed checkpoint writes, unsafe .pt files, episodes cut short by the end of a rollout."""

import errno
import json
import os
import pickle
import re
import warnings
from urllib.parse import quote

import numpy as np
import pytest
import torch

from conftest import ConstantPolicy, PointEnv, PointExpert, StopAfter, point_config
from dagger_cli import assembly
from dagger_cli.core.io.run_dir import create_run_dir, default_run_dir, record_resume, resume_config, run_config
from dagger_cli.core.io import checkpoint
from dagger_cli.core.engine import replay_storage
from dagger_cli.core.errors import CheckpointError, UsageError
from dagger_cli.core.engine.run_checkpoint import buffer_meta
from dagger_cli.core.engine.run_state import RunState
from dagger_cli.core.engine.rollout import Rollout
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.policies.mlp import MLPPolicy
from test_cli import dagger


def runner_in(run_dir, cfg, hooks=None):
    torch.manual_seed(cfg.seed)
    return SyncRunner(cfg, run_dir, PointEnv(3), MLPPolicy(cfg.actor.model), PointExpert(), hooks=hooks,
                      tensorboard=False)


def started_run(tmp_path, stop_after=None, **overrides):
    """A point-env run dir (config.yaml, meta.json), run until `stop_after` iterations (or the end)."""
    cfg = point_config(**overrides)
    run_dir = create_run_dir(tmp_path / "run", cfg, ["test"])
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
    cfg, changed = resume_config(run_dir, ["runner.max_epochs=3"])
    assert changed == {"runner.max_epochs": 3}
    loaded = assembly.resume_checkpoint(run_dir, warn=pytest.fail)
    record_resume(run_dir, cfg, changed)
    resumed = runner_in(run_dir, cfg)
    resumed.state.restore(loaded)
    summary = resumed.run()
    # THEN the run went to 3, the saved config says 3, and a later resume and the report see 3
    assert summary["iterations"] == 3 and summary["status"] == "finished"
    assert run_config(run_dir).runner.max_epochs == 3
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
        resume_config(run_dir, ["algorithm.replay_buffer.sample_window_size=100"])
    # THEN it is refused, naming the key, its value in the checkpoint and what may change; nothing is written
    message = str(e.value)
    assert "algorithm.replay_buffer.sample_window_size" in message and "500" in message and "runner.max_epochs" in message
    assert "\n" not in message and (run_dir / "config.yaml").read_text() == before
    result = dagger("train", "--resume", str(run_dir), "--set", "algorithm.replay_buffer.sample_window_size=100")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cannot change on --resume" in result.stderr


# RUN DIRS
def test_two_runs_started_in_the_same_second_get_their_own_run_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr("dagger_cli.core.io.run_dir.time.strftime", lambda fmt, *a: "20261202-101500")
    cfg = point_config()
    first, second = default_run_dir(cfg, tmp_path), default_run_dir(cfg, tmp_path)
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
    loaded = assembly.resume_checkpoint(run_dir, warn=warnings_said.append)
    # THEN it continues from iteration 2, saying in one line which file was bad
    assert loaded.state["iteration"] == 2
    (line,) = warnings_said
    assert "iter_000003" in line and f"{only_newest}/expert_action.bin" in line and "\n" not in line
    # AND with every kept checkpoint broken it fails in one line
    older = checkpoint.checkpoint_dir(run_dir / "checkpoints", 2)
    (older / "state.json").write_text("{not json")
    with pytest.raises(UsageError) as e:
        assembly.resume_checkpoint(run_dir, warn=lambda line: None)
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
    assert runner.state.checkpoint.read(kept[0]).state["iteration"] == 1
    assert not list((tmp_path / "checkpoints").glob(".iter_*"))  # no half-written directory left


# DATA THAT HOLDS
@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_every_file_and_directory_a_checkpoint_names_is_synced_before_its_save_returns(tmp_path, monkeypatch, storage):
    # GIVEN a run whose fsyncs, row writes, renames and saves are recorded in order (paths as /proc/self/fd names them)
    events = []
    real_fsync, real_pwrite, real_replace, real_save = os.fsync, os.pwrite, os.replace, RunState.save

    def path_of(fd):
        return re.sub(r"\.(iter_\d+)\.tmp-\d+", r"\1", os.readlink(f"/proc/self/fd/{fd}"))  # a temp dir as its final

    def fsync(fd):
        events.append(("sync", path_of(fd)))
        return real_fsync(fd)

    def pwrite(fd, data, offset):
        events.append(("write", path_of(fd)))
        return real_pwrite(fd, data, offset)

    def replace(src, dst):
        real_replace(src, dst)
        events.append(("rename", str(os.path.realpath(dst))))

    def save(self):
        events.append(("begin", None))
        path = real_save(self)
        events.append(("saved", str(path.resolve())))
        return path

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(RunState, "save", save)
    # WHEN it runs 4 iterations, saving after each and keeping every checkpoint (segments of 32 rows: several a save)
    run_dir, _ = started_run(tmp_path, **{"runner.max_epochs": 4, "runner.keep_checkpoints": 10,
                                          "algorithm.replay_buffer.storage": storage})
    # THEN for each save, before it returned: every column file of every segment its checkpoint names was synced
    # after its last write, each segment directory and the log's directory after the segment's files were made, the
    # checkpoint's files and directory during the save, and the checkpoints' directory after the rename
    def synced(path, after, end):
        return ("sync", str(path)) in events[after + 1 : end]

    def first_write(folder, end):
        return min((i for i, e in enumerate(events[:end]) if e[0] == "write" and e[1].startswith(f"{folder}/")),
                   default=end)

    saves = [(i, path) for i, (kind, path) in enumerate(events) if kind == "saved"]
    assert len(saves) == 4
    for end, ckpt in saves:
        begin = max(i for i, (kind, _) in enumerate(events[:end]) if kind == "begin")
        meta = buffer_meta(checkpoint.read_state(ckpt), run_dir)
        log = os.path.realpath(meta["storage"]["log"])
        segments = meta["storage"]["segments"]
        assert segments
        for m in segments:
            folder = f"{log}/{m['name']}"
            for key in meta["dtypes"]:
                file = f"{folder}/{quote(key, safe='')}.bin"
                last = max((i for i, e in enumerate(events[:end]) if e == ("write", file)), default=-1)
                assert synced(file, last, end), f"{file} not synced after its last write, before {ckpt} was saved"
            assert synced(folder, first_write(folder, end), end), f"{folder} not synced before {ckpt} was saved"
        newest = f"{log}/{segments[-1]['name']}"
        assert synced(log, first_write(newest, end), end), f"{log} not synced after {newest} was made"
        for file in os.listdir(ckpt):
            assert synced(f"{ckpt}/{file}", begin, end), f"{ckpt}/{file} not synced during its save"
        assert synced(ckpt, begin, end), f"{ckpt} not synced during its save"
        renamed = max(i for i, e in enumerate(events[:end]) if e == ("rename", ckpt))
        assert synced(os.path.dirname(ckpt), renamed, end), f"{os.path.dirname(ckpt)} not synced after the rename"


class Killed(BaseException):
    """The process dies here (nothing catches it)."""


def test_a_resave_killed_at_any_rename_leaves_a_complete_checkpoint_of_its_iteration(tmp_path, monkeypatch):
    # GIVEN a finished run that keeps one checkpoint, iteration 2's, and is saved again (as async's end of run does)
    run_dir, runner = started_run(tmp_path, **{"runner.max_epochs": 2, "runner.keep_checkpoints": 1})
    root = run_dir / "checkpoints"
    real_replace, real_rename = os.replace, os.rename
    calls = []

    def counting(real, kill_at):
        def rename(src, dst):
            calls.append((src, dst))
            if len(calls) == kill_at:
                raise Killed(f"killed before renaming {src} to {dst}")
            return real(src, dst)
        return rename

    monkeypatch.setattr(os, "replace", counting(real_replace, None))
    runner.state.save()
    renames = len(calls)
    assert renames >= 3  # state.json into the temp dir, the old copy aside, the new one in
    for kill_at in range(1, renames + 1):
        # WHEN the re-save is killed at its n-th rename
        calls.clear()
        monkeypatch.setattr(os, "replace", counting(real_replace, kill_at))
        monkeypatch.setattr(os, "rename", counting(real_rename, kill_at))
        with pytest.raises(Killed):
            runner.state.save()
        monkeypatch.setattr(os, "replace", real_replace)
        monkeypatch.setattr(os, "rename", real_rename)
        # THEN a complete checkpoint of iteration 2 is listed, reads whole and restores
        found = checkpoint.list_checkpoints(root)
        assert [checkpoint.read_state(p)["iteration"] for p in found] == [2], (kill_at, os.listdir(root))
        loaded = assembly.resume_checkpoint(run_dir, warn=pytest.fail)
        assert loaded.state["iteration"] == 2
        resumed = runner_in(run_dir, run_config(run_dir))
        resumed.state.restore(loaded)
        assert resumed.state.progress.iteration == 2 and resumed.state.buffer.size == runner.state.buffer.size
        # AND the next save leaves the one checkpoint in its place, nothing aside
        resumed.state.save()
        assert [p.name for p in root.iterdir() if p.name.startswith((".iter", "iter"))] == ["iter_000002"]


def test_a_resume_without_room_for_a_new_window_beside_the_kept_checkpoints_fails_in_one_line(tmp_path, monkeypatch):
    # GIVEN a disk-buffer run with kept checkpoints, whose disk has less free space than a window of new rows
    run_dir, runner = started_run(tmp_path, **{"runner.max_epochs": 2, "algorithm.replay_buffer.storage": "disk"})
    window = runner.state.buffer.capacity * sum(runner.state.buffer.row_bytes(k) for k in runner.state.buffer.fields)
    real_usage = replay_storage.shutil.disk_usage
    monkeypatch.setattr(replay_storage.shutil, "disk_usage",
                        lambda path: real_usage(path)._replace(free=window // 2))
    loaded = assembly.resume_checkpoint(run_dir, warn=pytest.fail)
    # WHEN the run is resumed (the kept checkpoints' rows stay on the disk until later saves replace them)
    with pytest.raises(replay_storage.StorageError) as e:
        runner_in(run_dir, run_config(run_dir)).state.restore(loaded)
    # THEN it is refused in one line naming the directory and what the kept checkpoints hold there
    message = str(e.value)
    assert str(run_dir / "replay_buffer") in message and "the kept checkpoints hold there" in message
    assert "GB free; free space there" in message and "\n" not in message


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
