"""Weights at scale in async mode: each worker receives each version once, into an object store sized from the
model (an embedded Ray of this module's own, started by the worker group as `dagger train --async` starts it)."""

import os
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from async_doubles import build_point_plain_init, plain_init, point_config  # noqa: E402
from dagger_cli.core.cluster.async_runner import AsyncRunner, RolloutWorkerGroup  # noqa: E402
from dagger_cli.core.cluster.ray_cluster import object_store_bytes  # noqa: E402
from dagger_cli.core.registry import policy_adapter  # noqa: E402
from dagger_cli.policies.mlp import MLPPolicy  # noqa: E402

TESTS = str(Path(__file__).resolve().parent)


def test_each_worker_receives_each_weights_version_once(tmp_path, monkeypatch):
    # GIVEN a student of a few hundred MB, two rollout workers and an embedded Ray sized from the model
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    cfg = point_config(**{
        "env.num_envs": 2, "cluster.num_rollout_workers": 2, "cluster.rollout_worker_cpus": 0.5,
        "actor.model.hidden_dim": 5000, "actor.update_epoch": 2, "actor.global_batch_size": 32,
        "runner.max_epochs": 3, "runner.val_check_interval": 1, "runner.save_interval": -1,
    })
    weights = policy_adapter("mlp").weight_bytes(cfg.actor.model)
    assert weights > 150e6
    if ray.is_initialized():
        ray.shutdown()
    group = RolloutWorkerGroup(cfg, build_point_plain_init).start()  # the student's init: see plain_init
    try:
        assert ray.cluster_resources()["object_store_memory"] >= 0.95 * object_store_bytes(cfg) > 3 * weights
        torch.manual_seed(cfg.seed)
        with plain_init():
            student = MLPPolicy(cfg.actor.model)
        runner = AsyncRunner(cfg, tmp_path, student, group, tensorboard=False)
        # WHEN the run publishes 4 versions (initial + 3 iterations), each evaluated in chunks by both workers
        summary = runner.run()
        counts = [ray.get(actor.counts.remote(), timeout=60) for actor in group.actors]
    finally:
        group.shutdown()
    # THEN every worker received each version it used exactly once, though it ran more tasks than versions
    assert summary["iterations"] == 3
    for count in counts:
        assert set(count["receipts"]) <= {0, 1, 2, 3} and set(count["receipts"].values()) == {1}
        assert count["tasks"] > len(count["receipts"])
    assert sum(len(c["receipts"]) for c in counts) <= 2 * 4
