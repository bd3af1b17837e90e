"""The async pipeline on a local Ray instance (2 CPUs) with the point env, plus `dagger train pick-cube --async`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from async_doubles import build_crashing, build_point, point_config  # noqa: E402
from conftest import StopAfter  # noqa: E402
from dagger_cli.core import checkpoint  # noqa: E402
from dagger_cli.core.async_runner import AsyncRunner  # noqa: E402
from dagger_cli.core.errors import DaggerError  # noqa: E402
from dagger_cli.policies.mlp import MLPPolicy  # noqa: E402

TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="dagger-tests",
             object_store_memory=100 * 1024**2, runtime_env={"env_vars": {"PYTHONPATH": TESTS}})
    yield
    ray.shutdown()


def async_config(**overrides):
    sets = {"env.num_envs": 2, "cluster.num_rollout_workers": 2, "cluster.rollout_worker_cpus": 0.5,
            "algorithm.dagger.max_policy_lag": 1, "runner.max_epochs": 6, **overrides}
    return point_config(**sets)


def make_runner(run_dir, cfg, build=build_point, hooks=None):
    torch.manual_seed(cfg.seed)
    return AsyncRunner(cfg, run_dir, MLPPolicy(cfg.actor.model), build, hooks=hooks, tensorboard=False)


def test_new_weights_reach_the_workers_within_the_staleness_bound(tmp_path):
    # GIVEN two workers that may run one collection ahead of the learner
    cfg = async_config()
    runner = make_runner(tmp_path, cfg)
    # WHEN the async run trains for 6 iterations
    summary = runner.run()
    # THEN later collections used newer weights, never more than the bound behind the learner
    stored = runner.buffer.stored()
    versions, index = stored["policy_version"], stored["iteration"]
    assert summary["iterations"] == 6 and versions.max() >= 1  # published weights reached the workers
    order = np.argsort(index, kind="stable")
    assert np.all(np.diff(versions[order]) >= 0)  # a later collection never uses older weights
    assert np.all(versions >= (index + 1) / 2 - 1)  # collection i started at version >= (i+1)/workers - lag
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(7))
    for row in rows[1:]:
        assert {"train/async/policy_lag", "train/async/queue_size", "time/rollout_env_steps_per_s",
                "time/learner_updates_per_s", "train/dagger/actor_loss"} <= set(row)
    assert rows[1]["train/dagger/beta"] == 1.0 and rows[2]["train/dagger/beta"] == 0.5  # beta per learner iteration
    # the learner is never more than the bound ahead either: iteration k waits for (k - lag) collections per worker
    for row in rows[1:]:
        assert row["time/env_steps"] >= (row["step"] - 1) * 2 * 40
    assert summary["student_final_sr"] is not None and summary["expert_sr"] == 1.0


def test_a_crashed_worker_is_named_and_the_checkpoint_kept(tmp_path):
    cfg = async_config(**{"runner.max_epochs": 50})
    runner = make_runner(tmp_path, cfg, build=build_crashing)
    with pytest.raises(DaggerError) as e:
        runner.run()
    message = str(e.value)
    assert "rollout worker 1 failed while collecting" in message and "simulated simulator crash" in message
    assert "\n" not in message
    saved = checkpoint.list_checkpoints(tmp_path / "checkpoints")
    if saved:  # whatever was saved before the crash is complete and loadable
        checkpoint.read_state(saved[-1])


def test_async_runs_resume(tmp_path):
    cfg = async_config(**{"runner.max_epochs": 4})
    hooks = StopAfter(2)
    first = make_runner(tmp_path, cfg, hooks=hooks)
    hooks.runner = first
    first.run()
    assert first.iteration == 2 and not (tmp_path / "summary.json").exists()
    resumed = make_runner(tmp_path, cfg)
    resumed.restore(checkpoint.list_checkpoints(tmp_path / "checkpoints")[-1])
    assert resumed.iteration == 2 and resumed.beta(resumed.iteration) == 0.25
    summary = resumed.run()
    assert summary["iterations"] == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]
    assert resumed.buffer.total_samples > first.buffer.total_samples
