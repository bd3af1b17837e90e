"""The data-parallel learner: 2 gloo ranks on this CPU (Ray actors) against one in-process learner."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import PointEnv, PointExpert, StopAfter, point_config  # noqa: E402
from dagger_cli.core import checkpoint  # noqa: E402
from dagger_cli.core.distributed_learner import DistributedLearner  # noqa: E402
from dagger_cli.core.learner import Learner  # noqa: E402
from dagger_cli.core.replay_buffer import ReplayBuffer  # noqa: E402
from dagger_cli.core.runner import SyncRunner  # noqa: E402
from dagger_cli.policies.mlp import MLPPolicy  # noqa: E402

TESTS = str(Path(__file__).resolve().parent)
TOLERANCE = 1e-5
"""largest parameter difference allowed after the updates (float32 sums in another order)"""


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="dagger-tests",
             object_store_memory=100 * 1024**2, runtime_env={"env_vars": {"PYTHONPATH": TESTS}})
    yield
    ray.shutdown()


def filled_buffer(n: int = 400) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(n)
    obs = rng.standard_normal((n, 2)).astype(np.float32)
    buffer.add({"obs": obs, "expert_action": np.clip(-obs[:, :1, None], -1, 1).astype(np.float32),
                "action": np.zeros((n, 1, 1), np.float32), "expert_used": np.ones(n, bool)})
    return buffer


def test_two_gloo_ranks_train_the_same_parameters_as_one_process():
    # GIVEN one student copied into a single-process learner and a 2-rank learner (shards of 24, micro-batches 16 + 8)
    cfg = point_config(**{"cluster.learner_procs": 2, "actor.global_batch_size": 48, "actor.micro_batch_size": 16})
    torch.manual_seed(0)
    single, parallel = MLPPolicy(cfg.actor.model), MLPPolicy(cfg.actor.model)
    parallel.module.load_state_dict(single.module.state_dict())
    buffer = filled_buffer()
    one = Learner(single, cfg.actor, cfg.seed, 40)
    two = DistributedLearner(parallel, cfg, 40)
    # WHEN both take 2 × 10 updates on the same global batches
    try:
        for _ in range(2):
            m1, m2 = one.train(buffer, 10), two.train(buffer, 10)
        # THEN the parameters (and the loss they report) agree within the tolerance, and training moved them
        a, b = single.module.state_dict(), parallel.module.state_dict()
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < TOLERANCE
        assert m1["train/dagger/actor_loss"] == pytest.approx(m2["train/dagger/actor_loss"], rel=1e-5)
        assert m1["train/actor/lr"] == m2["train/actor/lr"]
        start = MLPPolicy(cfg.actor.model)
        assert max(float((a[k] - start.module.state_dict()[k]).abs().max()) for k in a) > 100 * TOLERANCE
        # AND the optimizer state a checkpoint takes from rank 0 matches the single learner's
        t1, meta1 = one.state_dict()
        t2, meta2 = two.state_dict()
        assert set(t1) == set(t2) and all(torch.allclose(t1[k], t2[k], atol=TOLERANCE) for k in t1)
        assert meta1["steps"] == meta2["steps"] == 20 and meta1["rng"] == meta2["rng"]
    finally:
        two.close()


def make_runner(run_dir, cfg, hooks=None):
    torch.manual_seed(cfg.seed)
    return SyncRunner(cfg, run_dir, PointEnv(3), MLPPolicy(cfg.actor.model), PointExpert(), hooks=hooks,
                      tensorboard=False)


def test_a_two_rank_run_checkpoints_and_resumes_exactly(tmp_path):
    # GIVEN an uninterrupted 3-iteration run with 2 learner ranks, and one stopped after 1 iteration and resumed
    cfg = point_config(**{"cluster.learner_procs": 2, "runner.max_epochs": 3})
    straight = make_runner(tmp_path / "a", cfg)
    straight.run()
    hooks = StopAfter(1)
    first = make_runner(tmp_path / "b", cfg, hooks)
    hooks.runner = first
    first.run()
    resumed = make_runner(tmp_path / "b", cfg)
    resumed.state.restore(checkpoint.list_checkpoints(tmp_path / "b" / "checkpoints")[-1])
    resumed.run()
    # THEN the resumed run ends with the uninterrupted run's weights and results
    a, b = straight.state.student.module.state_dict(), resumed.state.student.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.state.summary()["student_final_sr"] == resumed.state.summary()["student_final_sr"]
    assert straight.state.summary()["student_final_sr"] >= 0.5
    # AND a single-process run of the same config lands within the tolerance of it
    single = make_runner(tmp_path / "c", point_config(**{"runner.max_epochs": 3}))
    single.run()
    c = single.state.student.module.state_dict()
    assert max(float((a[k] - c[k]).abs().max()) for k in a) < 1e-4
    assert os.listdir(tmp_path / "b" / "checkpoints")
