import json

import numpy as np
import pytest
import torch

from conftest import (INSTRUCTIONS, PointEnv, PointExpert, PromptPointEnv, StateOf, StatsFittingMLP, StopAfter,
                      point_config, straight_and_resumed)
from dagger_cli.core.io import checkpoint
from dagger_cli.core.errors import CheckpointError
from dagger_cli.core.engine.run_checkpoint import checkpoint_samples
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.core.protocols import RunnerHooks
from dagger_cli.policies.mlp import MLPPolicy

REQUIRED_METRICS = {
    "env/success_once", "train/dagger/actor_loss", "train/dagger/beta", "train/dagger/expert_action_frac",
    "train/actor/lr", "train/actor/grad_norm", "train/replay_buffer/num_trajectories",
    "train/replay_buffer/total_samples", "train/replay_buffer/cache_size", "time/rollout_s", "time/train_s",
}


def make_runner(run_dir, cfg=None, hooks=None):
    cfg = cfg or point_config()
    torch.manual_seed(cfg.seed)
    student = MLPPolicy(cfg.actor.model)
    return SyncRunner(cfg, run_dir, PointEnv(3), student, PointExpert(), hooks=hooks, tensorboard=False)


def weights(runner):
    return {k: v.clone() for k, v in runner.state.student.module.state_dict().items()}


def test_student_learns_and_everything_is_recorded(tmp_path):
    # GIVEN a point-reaching task and a random student
    cfg = point_config(**{"runner.max_epochs": 5, "runner.keep_checkpoints": 2})
    runner = make_runner(tmp_path, cfg)
    # WHEN DAgger runs
    summary = runner.run()
    # THEN the student goes from failing to succeeding, evaluated alone
    assert summary["student_init_sr"] < 0.5
    assert summary["expert_sr"] == 1.0
    assert summary["student_final_sr"] >= 0.8
    assert summary["iterations"] == 5 and summary["env_steps"] == 5 * 40 * 3
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5]
    for row in rows[1:]:
        assert REQUIRED_METRICS <= set(row)
    assert [r["train/dagger/beta"] for r in rows[1:]] == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.0625])
    assert rows[-1]["eval/success_once"] == summary["student_final_sr"]
    assert rows[-1]["train/replay_buffer/total_samples"] == 5 * 40 * 3
    assert rows[-1]["train/replay_buffer/cache_size"] == 500  # the window is full
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "checkpoints")] == ["iter_000004", "iter_000005"]


def test_interim_evaluations_use_the_first_seeds_and_the_last_uses_all(tmp_path):
    # GIVEN 6 evaluation episodes, 2 of them for the evaluations before the last, one every 2 iterations
    cfg = point_config(**{"env.eval.interim_episodes": 2, "runner.val_check_interval": 2, "runner.max_epochs": 3})
    summary = make_runner(tmp_path, cfg).run()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # THEN the initial student, the expert and iteration 2 are evaluated on 2 episodes, the final one on all 6
    assert rows[0]["eval/episodes"] == 2 and rows[0]["eval_expert/episodes"] == 2
    assert [r.get("eval/episodes") for r in rows[1:]] == [None, 2, 6]
    assert summary["eval_episodes"] == 6


def test_interim_episodes_are_at_most_the_evaluations_and_never_negative():
    from dagger_cli.core.errors import ConfigError

    assert point_config(**{"env.eval.interim_episodes": 7}).env.eval.seeds_for(final=False) == list(range(6))
    with pytest.raises(ConfigError, match="env.eval.interim_episodes"):
        point_config(**{"env.eval.interim_episodes": -1})


def test_training_waits_for_min_buffer_size(tmp_path):
    cfg = point_config(**{"algorithm.replay_buffer.min_buffer_size": 200, "runner.max_epochs": 2,
                          "runner.eval_expert": False, "runner.eval_student_init": False})
    runner = make_runner(tmp_path, cfg)
    runner.run()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "train/dagger/actor_loss" not in rows[0]  # 120 samples after iteration 1: no training yet
    assert "train/dagger/actor_loss" in rows[1]  # 240 after iteration 2
    assert runner.state.learner.steps == cfg.actor.update_epoch


@pytest.mark.parametrize("storage, ema", [("memory", None), ("disk", None), ("memory", 0.9)])
def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(tmp_path, storage, ema):
    # GIVEN an uninterrupted 4-iteration run (the buffer in RAM or on disk; the student acting with a moving average
    # of its weights, which the checkpoints keep beside the trained ones)
    cfg = point_config(**{"algorithm.replay_buffer.storage": storage, **({"actor.ema_decay": ema} if ema else {})})
    straight = make_runner(tmp_path / "a", cfg)
    straight.run()
    # AND a run stopped after 2 iterations, then resumed from its checkpoint in a new runner
    hooks = StopAfter(2)
    first = make_runner(tmp_path / "b", cfg, hooks=hooks)
    hooks.runner = first
    first.run()
    assert first.state.progress.iteration == 2
    stopped = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert stopped["status"] == "stopped" and stopped["iterations"] == 2
    saved = checkpoint_samples(checkpoint.list_checkpoints(tmp_path / "b" / "checkpoints")[-1])
    assert all(np.array_equal(v, saved[k]) for k, v in first.state.buffer.stored().items())  # read in place
    resumed = make_runner(tmp_path / "b", cfg)
    resumed.state.restore(checkpoint.list_checkpoints(tmp_path / "b" / "checkpoints")[-1])
    assert resumed.state.progress.iteration == 2 and resumed.state.beta(resumed.state.progress.iteration) == 0.25
    resumed.run()
    # THEN the final weights, buffer and metrics equal the uninterrupted run's
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key, value in straight.state.buffer.stored().items():
        assert np.array_equal(value, resumed.state.buffer.stored()[key])
    rows_a = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/") and k != "eval/seconds"}  # noqa: E731
    assert [strip(r) for r in rows_a] == [strip(r) for r in rows_b]
    assert straight.state.summary()["student_final_sr"] == resumed.state.summary()["student_final_sr"]


KILLED_IN_ITERATION_3 = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import torch
from conftest import PointEnv, PointExpert, point_config
from dagger_cli.core.io.run_dir import create_run_dir
from dagger_cli.core.protocols import RunnerHooks
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.core.protocols import RunnerHooks
from dagger_cli.policies.mlp import MLPPolicy

class KilledWhileTrainingIteration3(RunnerHooks):
    done = 0

    def iteration_done(self, iteration, total, metrics):
        self.done = iteration

    def phase(self, text):
        if self.done == 2 and text == "training":  # iteration 3's rows are in the buffer, its checkpoint is not
            os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` or the OOM killer would

cfg = point_config(**{{"algorithm.replay_buffer.storage": {storage!r}}})
run_dir = create_run_dir(Path({run_dir!r}), cfg, ["test"])
torch.manual_seed(cfg.seed)
SyncRunner(cfg, run_dir, PointEnv(3), MLPPolicy(cfg.actor.model), PointExpert(), KilledWhileTrainingIteration3(),
           tensorboard=False).run()
"""


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_resume_after_sigkill_continues_exactly_at_the_checkpoint(tmp_path, storage):
    """(Moved from test_cli_sim.py's ManiSkill pair, which keeps the disk case through the CLI: here the env is
    deterministic, so the resumed run is compared bitwise.)"""
    import subprocess
    import sys
    from pathlib import Path

    from dagger_cli import assembly

    # GIVEN a run (its buffer in RAM or on disk) killed with SIGKILL in iteration 3, after its second checkpoint and
    # after iteration 3's rows were added (a disk buffer has written them)
    cfg = point_config(**{"algorithm.replay_buffer.storage": storage})
    script = KILLED_IN_ITERATION_3.format(tests=str(Path(__file__).parent), storage=storage,
                                          run_dir=str(tmp_path / "b"))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    if storage == "disk":
        named = {m["name"] for m in checkpoint.read_state(checkpoint.checkpoint_dir(tmp_path / "b" / "checkpoints", 2))
                 ["replay_buffer"]["storage"]["segments"]}
        assert {p.name for p in (tmp_path / "b" / "replay_buffer").glob("seg-*")} - named  # rows after the checkpoint
    # WHEN it is resumed as `dagger train --resume` resumes it (its newest intact checkpoint, into a new runner)
    warned = []
    loaded = assembly.resume_checkpoint(tmp_path / "b", warn=warned.append)
    assert loaded.state["iteration"] == 2 and not warned
    resumed = make_runner(tmp_path / "b", cfg)
    resumed.state.restore(loaded)
    assert resumed.state.progress.iteration == 2 and resumed.state.beta(resumed.state.progress.iteration) == 0.25
    resumed.run()
    # THEN it finishes like an uninterrupted run: the same weights, buffer and metrics
    straight = make_runner(tmp_path / "a", cfg)
    straight.run()
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["iterations"] == 4
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key, value in straight.state.buffer.stored().items():
        assert np.array_equal(value, resumed.state.buffer.stored()[key])
    rows_a = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/") and k != "eval/seconds"}  # noqa: E731
    assert [strip(r) for r in rows_a] == [strip(r) for r in rows_b]


def test_prompts_stay_whole_through_training_checkpoint_and_resume(tmp_path):
    # GIVEN an env whose instructions grow longer after every env's first episode, and a run stopped after 2 of 3
    # iterations and resumed from its checkpoint
    def runner(run_dir, hooks=None):
        cfg = point_config(**{"runner.max_epochs": 3, "env.max_episode_steps": 8})
        torch.manual_seed(cfg.seed)
        student = StateOf(MLPPolicy(cfg.actor.model))
        expert = StateOf(PointExpert())
        return SyncRunner(cfg, run_dir, PromptPointEnv(3), student, expert, hooks=hooks, tensorboard=False)

    straight, resumed = straight_and_resumed(runner, tmp_path, 2)
    # THEN the learner trained on whole prompts, the buffer holds them whole, and the resumed run holds the same
    assert straight.state.student.prompts <= set(INSTRUCTIONS) and INSTRUCTIONS[-1] in straight.state.student.prompts
    stored = straight.state.buffer.stored()["obs/prompt"].tolist()
    assert set(stored) <= set(INSTRUCTIONS) and INSTRUCTIONS[-1] in stored
    assert resumed.state.buffer.stored()["obs/prompt"].tolist() == stored


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    # GIVEN a run checkpointed at iteration 2 whose metrics file already has a row for iteration 3 (killed before save)
    cfg = point_config(**{"runner.max_epochs": 3, "runner.save_interval": 2})
    runner = make_runner(tmp_path, cfg)
    runner.run()
    ckpt = checkpoint.checkpoint_dir(tmp_path / "checkpoints", 2)
    assert ckpt.is_dir()
    # WHEN it resumes from iteration 2
    resumed = make_runner(tmp_path, cfg)
    resumed.state.restore(ckpt)
    resumed.run()
    # THEN iteration 3 appears once
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]


def test_interrupted_writes_are_ignored_and_cleaned(tmp_path):
    root = tmp_path / "checkpoints"
    runner = make_runner(tmp_path, point_config(**{"runner.max_epochs": 1}))
    runner.run()
    stale = root / ".iter_000002.tmp-999"
    stale.mkdir()
    (stale / "student.safetensors").write_bytes(b"half")
    assert [p.name for p in checkpoint.list_checkpoints(root)] == ["iter_000001"]
    runner.state.progress.advance()  # to iteration 2
    runner.state.save()
    assert not stale.exists()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    runner = make_runner(tmp_path, point_config(**{"runner.max_epochs": 1}))
    runner.run()
    ckpt = checkpoint.list_checkpoints(tmp_path / "checkpoints")[-1]
    (ckpt / "student.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="student.safetensors"):
        make_runner(tmp_path).state.restore(ckpt)
    (ckpt / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="state.json"):
        make_runner(tmp_path).state.restore(ckpt)


class NoisyPolicy:
    """Samples like π₀: torch's global generator decides the action; remembers what it did."""

    action_shape = (1, 1)

    def __init__(self):
        self.actions = []

    def act(self, obs):
        self.actions.append(torch.randn(len(obs), 1, 1).numpy())
        return self.actions[-1]


def test_evaluation_of_a_sampling_policy_repeats_and_leaves_trainings_random_stream_alone():
    from dagger_cli.core.engine.run_evaluation import evaluate_policy

    # GIVEN a policy whose actions come from torch's global generator, evaluated from two generator states
    torch.manual_seed(1)
    first, second, other = NoisyPolicy(), NoisyPolicy(), NoisyPolicy()
    evaluate_policy(PointEnv(2), first, [5, 6, 7], 12)
    after_first = torch.get_rng_state()
    torch.manual_seed(2)
    evaluate_policy(PointEnv(2), second, [5, 6, 7], 12)
    # THEN it acted identically (its noise is seeded by the protocol), and the caller's stream did not move
    assert np.array_equal(np.concatenate(first.actions), np.concatenate(second.actions))
    torch.manual_seed(1)
    assert torch.equal(after_first, torch.get_rng_state())
    # AND a different protocol draws different noise
    evaluate_policy(PointEnv(2), other, [8, 9, 10], 12)
    assert not np.array_equal(np.concatenate(first.actions), np.concatenate(other.actions))


class KeepStored(RunnerHooks):
    """Runner hooks that keep a copy of the buffer's samples after each iteration."""

    def __init__(self):
        self.runner, self.stored = None, []

    def iteration_done(self, iteration, total, metrics):
        self.stored.append(self.runner.state.buffer.stored())


def test_only_success_stores_the_successful_episodes_of_each_iteration(tmp_path):
    # GIVEN the same run without and with algorithm.dagger.only_success (the student fails at first: beta halves)
    stored = {}
    for only_success in (False, True):
        cfg = point_config(**{"algorithm.dagger.only_success": only_success, "runner.max_epochs": 3,
                              "algorithm.replay_buffer.min_buffer_size": 1, "runner.eval_expert": False,
                              "runner.eval_student_init": False})
        hooks = KeepStored()
        runner = make_runner(tmp_path / str(only_success), cfg, hooks)
        hooks.runner = runner
        runner.run()
        stored[only_success] = hooks.stored[-1]
    # THEN each episode the filtered run stored succeeded (its last sample's action brings the point to the goal:
    # episodes end at their success), and some of the unfiltered run's did not
    def succeeded(samples):
        ends = {}
        for i, episode in enumerate(samples["episode_id"]):
            ends[int(episode)] = i  # samples of an episode are stored in order
        rows = np.array(sorted(ends.values()))
        moved = samples["obs"][rows, 0] + np.float32(0.2) * np.clip(samples["action"][rows, 0, 0], -1, 1)
        return np.abs(moved - samples["obs"][rows, 1]) < 0.05

    assert succeeded(stored[True]).all() and len(stored[True]["obs"]) > 0
    assert not succeeded(stored[False]).all()
    assert len(stored[True]["obs"]) < len(stored[False]["obs"])


def test_norm_stats_come_from_the_first_iterations_and_training_waits_for_them(tmp_path):
    # GIVEN a student without norm stats, to be fitted on the first 3 iterations, and a buffer ready after one
    cfg = point_config(**{"actor.norm_stats_iterations": 3, "algorithm.replay_buffer.min_buffer_size": 10})
    torch.manual_seed(cfg.seed)
    student = StatsFittingMLP(cfg.actor.model)
    runner = SyncRunner(cfg, tmp_path, PointEnv(3), student, PointExpert(), tensorboard=False)
    # WHEN it runs
    runner.run()
    # THEN the stats were fitted once, on exactly iterations 0-2's labels, with the weights untrained until then
    stored = runner.state.buffer.stored()
    first = stored["iteration"] < 3
    assert len(student.fitted) == 1
    obs, labels, weights = student.fitted[0]
    assert np.array_equal(obs, stored["obs"][first]) and np.array_equal(labels, stored["expert_action"][first])
    assert all(torch.equal(weights[k], student.initial[k]) for k in weights)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][1:]
    assert ["train/dagger/actor_loss" in r for r in rows] == [False, False, True, True]


def test_a_run_shorter_than_norm_stats_iterations_fits_them_on_its_last_iteration(tmp_path):
    # GIVEN a 2-iteration run of a student whose stats are to come from 5 iterations
    cfg = point_config(**{"actor.norm_stats_iterations": 5, "runner.max_epochs": 2,
                          "algorithm.replay_buffer.min_buffer_size": 10})
    student = StatsFittingMLP(cfg.actor.model)
    runner = SyncRunner(cfg, tmp_path, PointEnv(3), student, PointExpert(), tensorboard=False)
    # WHEN it runs
    runner.run()
    # THEN it fitted them on both iterations and trained in the last, so its checkpoint carries stats
    assert len(student.fitted) == 1 and len(student.fitted[0][0]) == runner.state.buffer.size
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][1:]
    assert ["train/dagger/actor_loss" in r for r in rows] == [False, True]
