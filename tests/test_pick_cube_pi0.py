"""`pick-cube-pi0` end to end on the real ManiSkill, shortened: the π₀ code path as a DAgger student with a
scripted expert, norm stats computed from the first iteration's labels, and `dagger eval` on its checkpoint.
The learning run itself (≥90% on 100 episodes) is bench/pick_cube_pi0.py."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import requires_maniskill, requires_pi0
from dagger_cli.core.io import checkpoint
from dagger_cli.core.engine.run_checkpoint import checkpoint_samples
from test_cli import assert_eval_reproduces, dagger

pytestmark = [requires_maniskill, requires_pi0, pytest.mark.sim]

SHORT = [
    "--set",
    "runner.max_epochs=2",
    "--set",
    "env.max_steps_per_rollout_epoch=50",
    "--set",
    "env.eval.num_episodes=8",
    "--set",
    "actor.update_epoch=10",  # the loss still falls clearly (≈2.20 -> 1.84), in half the learner steps
    "--set",
    "algorithm.replay_buffer.min_buffer_size=100",
    "--set",
    "runner.eval_student_init=false",
    "--set",
    "runner.eval_expert=false",
]


@pytest.fixture(scope="module")
def pi0_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "pick-cube-pi0"
    result = dagger("train", "pick-cube-pi0", "--run-dir", str(run_dir), "--json", *SHORT)
    assert result.returncode == 0, result.stderr
    return run_dir, json.loads(result.stdout)


def test_two_iterations_train_the_small_pi0_student(pi0_run):
    run_dir, summary = pi0_run
    assert summary["iterations"] == 2 and summary["eval_episodes"] == 8 and summary["env_steps"] == 2 * 50 * 8
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/dagger/actor_loss"] for r in rows if "train/dagger/actor_loss" in r]
    assert len(losses) == 2 and all(np.isfinite(losses)) and losses[1] < losses[0]
    student = load_file(str(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1] / "student.safetensors"))
    assert "paligemma_with_expert.gemma_expert.model.layers.3.self_attn.q_proj.weight" in student  # openpi's names


def test_norm_stats_come_from_the_first_iterations_expert_labels(pi0_run):
    # GIVEN the run's last checkpoint: its student's norm stats and its replay buffer
    run_dir, _ = pi0_run
    ckpt = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    student = load_file(str(ckpt / "student.safetensors"))
    buffer = checkpoint_samples(ckpt)
    first = buffer["iteration"] == 0
    # THEN the stats are those of iteration 0's states and labels (stds floored at 0.01), not identity
    state, labels = buffer["obs"][first].astype(np.float64), buffer["expert_action"][first].astype(np.float64)
    assert np.allclose(student["norm_stats/state_mean"].numpy(), state.mean(0))
    assert np.allclose(student["norm_stats/state_std"].numpy(), np.maximum(state.std(0), 0.01))
    assert np.allclose(student["norm_stats/actions_mean"].numpy(), labels.reshape(-1, 8).mean(0))
    assert not np.allclose(student["norm_stats/actions_std"].numpy(), 1.0)


def test_dagger_eval_reproduces_the_runs_final_evaluation(pi0_run):
    run_dir, summary = pi0_run
    assert_eval_reproduces(run_dir, summary, episodes=8)
