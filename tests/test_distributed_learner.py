"""The data-parallel learner: 2 gloo ranks on this CPU (Ray actors) against one in-process learner."""

import os
import time

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import PointEnv, PointExpert, StopAfter, point_config, requires_pi0  # noqa: E402
from dagger_cli.core.io import checkpoint# noqa: E402
from dagger_cli.core.config_loader import load_config  # noqa: E402
from dagger_cli.core.cluster.distributed_learner import DistributedLearner  # noqa: E402
from dagger_cli.core.engine.learner import Learner, loss_weights  # noqa: E402
from dagger_cli.core.engine.replay_buffer import ReplayBuffer  # noqa: E402
from dagger_cli.core.engine.runner import SyncRunner  # noqa: E402
from dagger_cli.policies.mlp import MLPPolicy  # noqa: E402

TOLERANCE = 1e-5
"""largest parameter difference allowed after the updates (float32 sums in another order)"""


pytestmark = pytest.mark.usefixtures("shared_ray")  # conftest.py's local Ray (its 2 GPUs advertised only, for the tests
# of ranks on GPUs that are not free), shared with test_async.py


def filled_buffer(n: int = 400, expert_used: np.ndarray | None = None) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(n)
    obs = rng.standard_normal((n, 2)).astype(np.float32)
    buffer.add({"obs": obs, "expert_action": np.clip(-obs[:, :1, None], -1, 1).astype(np.float32),
                "action": np.zeros((n, 1, 1), np.float32),
                "expert_used": np.ones(n, bool) if expert_used is None else expert_used})
    return buffer


def test_two_gloo_ranks_train_the_same_parameters_as_one_process():
    # GIVEN one student copied into a single-process learner and a 2-rank learner (shards of 24, micro-batches 16 + 8),
    # both acting with a moving average of their weights (the ranks train and average; the others' tests, without it)
    cfg = point_config(**{"cluster.learner_procs": 2, "actor.global_batch_size": 48, "actor.micro_batch_size": 16,
                          "actor.ema_decay": 0.9})
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
        # AND the optimizer state and trained weights a checkpoint takes from rank 0 match the single learner's
        t1, meta1 = one.state_dict()
        t2, meta2 = two.state_dict()
        assert set(t1) == set(t2) and all(torch.allclose(t1[k], t2[k], atol=TOLERANCE) for k in t1)
        assert max(float((t1[f"trained/{k}"] - a[k]).abs().max()) for k in a) > 100 * TOLERANCE
        assert meta1["steps"] == meta2["steps"] == 20 and meta1["rng"] == meta2["rng"]
    finally:
        two.close()


def test_two_gloo_ranks_weight_the_loss_by_who_acted_as_one_process():
    # GIVEN a single-process and a 2-rank learner, expert-acted samples weighted 3 and student-acted ones 0.5
    cfg = point_config(**{"cluster.learner_procs": 2, "actor.global_batch_size": 48, "actor.micro_batch_size": 16,
                          "algorithm.dagger.expert_loss_weight": 3.0, "algorithm.dagger.student_loss_weight": 0.5})
    torch.manual_seed(0)
    single, parallel = MLPPolicy(cfg.actor.model), MLPPolicy(cfg.actor.model)
    parallel.module.load_state_dict(single.module.state_dict())
    buffer = filled_buffer(expert_used=np.random.default_rng(1).random(400) < 0.3)
    one = Learner(single, cfg.actor, cfg.seed, 40, loss_weights(cfg.algorithm.dagger))
    unweighted = Learner(MLPPolicy(cfg.actor.model), cfg.actor, cfg.seed, 40)
    unweighted.policy.module.load_state_dict(single.module.state_dict())
    two = DistributedLearner(parallel, cfg, 40)
    # WHEN they take 10 updates on the same global batches (the ranks' shards hold different weight sums)
    try:
        m1, m2, m0 = one.train(buffer, 10), two.train(buffer, 10), unweighted.train(buffer, 10)
        # THEN the ranks' parameters and weighted loss are the single learner's, which the weights changed
        a, b, c = single.module.state_dict(), parallel.module.state_dict(), unweighted.policy.module.state_dict()
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < TOLERANCE
        assert m1["train/dagger/actor_loss"] == pytest.approx(m2["train/dagger/actor_loss"], rel=1e-5)
        assert max(float((a[k] - c[k]).abs().max()) for k in a) > 100 * TOLERANCE
        assert m1["train/dagger/actor_loss"] != pytest.approx(m0["train/dagger/actor_loss"], rel=1e-3)
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



# RANKS ON GPUS: a whole one each, checked before the run starts (the cluster's 2 GPUs are advertised, not real)
@ray.remote(num_cpus=0)
class GpuHolder:
    """Stands for a rollout worker holding its GPU share."""

    def ping(self) -> bool:
        return True


@pytest.mark.parametrize("procs, held, needle", [
    (3, 0, "the Ray cluster has 2 GPUs; lower cluster.learner_procs, or train on CPUs"),
    (2, 1, ("2 GPUs, 1 free: the others are held by the rollout workers (cluster.num_rollout_workers × "
            "cluster.rollout_worker_gpus) or by other jobs; lower cluster.learner_procs, or cluster.rollout_worker_gpus")),
])
def test_learner_ranks_short_of_free_gpus_fail_in_one_line_before_the_run_starts(tmp_path, monkeypatch, procs, held,
                                                                                 needle):
    import dagger_cli.core.cluster.distributed_learner as distributed
    from dagger_cli.core.errors import DaggerError

    # GIVEN a cluster of 2 GPUs, `held` of them taken by a rollout worker, and a run whose student (so each of its
    # `procs` learner ranks) trains on a GPU
    holders = [GpuHolder.options(num_gpus=held).remote() for _ in range(1 if held else 0)]
    ray.get([h.ping.remote() for h in holders])
    monkeypatch.setattr(distributed, "_on_gpu", lambda policy: True, raising=False)
    runner = make_runner(tmp_path / "run", point_config(**{"cluster.learner_procs": procs}))
    env_steps, step = [], runner.env.step
    runner.env.step = lambda actions: env_steps.append(1) or step(actions)
    # WHEN it starts
    start = time.monotonic()
    try:
        with pytest.raises(DaggerError) as e:
            runner.run()
    finally:
        for h in holders:
            ray.kill(h)
    # THEN it fails at once, in one line naming the keys, before any env step
    assert time.monotonic() - start < 30
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(f"cluster.learner_procs={procs}: each learner rank trains on a whole GPU")
    assert not env_steps


def test_learner_ranks_wait_a_bounded_time_for_whole_gpus(monkeypatch):
    import dagger_cli.core.cluster.distributed_learner as distributed
    from dagger_cli.core.errors import DaggerError

    # GIVEN 2 GPUs, each with 0.6 taken (1 GPU free in all, no whole one), which a count of free GPUs does not see
    holders = [GpuHolder.options(num_gpus=0.6).remote() for _ in range(2)]
    ray.get([h.ping.remote() for h in holders])
    monkeypatch.setattr(distributed, "_on_gpu", lambda policy: True, raising=False)
    monkeypatch.setattr(distributed, "PLACEMENT_TIMEOUT_S", 2.0, raising=False)
    monkeypatch.setattr(ray, "available_resources", lambda: {"GPU": 2.0, "CPU": 2.0})
    cfg = point_config(**{"cluster.learner_procs": 2})
    learner = DistributedLearner(MLPPolicy(cfg.actor.model), cfg, 10)
    # WHEN the ranks start
    start = time.monotonic()
    try:
        with pytest.raises(DaggerError) as e:
            learner.train(filled_buffer(), 1)
    finally:
        for h in holders:
            ray.kill(h)
    # THEN they give up after the bounded wait, in one line naming the key
    assert time.monotonic() - start < 30
    assert "not 2 whole ones (with a CPU each) within 2 s" in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("cluster.learner_procs=2: ")


# π₀ (tiny): a random loss (flow-matching time and noise, image augmentation), drawn where the global batch is
def pi0_config(checkpoint_dir, tokenizer_path, **overrides):
    """A short DAgger run of a tiny π₀ student and expert on LIBERO's cameras (SeededCameraEnv), 2 learner ranks."""
    sets = {"cluster.learner_procs": 2, "env.max_episode_steps": 20, "env.max_steps_per_rollout_epoch": 20,
            "env.eval.num_episodes": 2, "algorithm.replay_buffer.min_buffer_size": 2,
            "algorithm.replay_buffer.sample_window_size": 16, "actor.update_epoch": 2, "actor.global_batch_size": 6,
            "actor.micro_batch_size": 2, "runner.max_epochs": 2, "runner.val_check_interval": 100,
            "runner.eval_expert": False, "runner.eval_student_init": False, "runner.device": "cpu"}
    for model in ("actor.model", "rollout.expert_model"):
        sets.update({f"{model}.model_type": "pi0", f"{model}.model_path": checkpoint_dir,
                     f"{model}.pi0.variant": "tiny", f"{model}.pi0.tokenizer_path": tokenizer_path,
                     f"{model}.pi0.num_steps": 1, f"{model}.action_dim": 7, f"{model}.num_action_chunks": 10})
    return load_config("pick-cube", overrides=[f"{k}={v}" for k, v in {**sets, **overrides}.items()])


@requires_pi0
def test_two_gloo_ranks_compute_the_single_learners_pi0_gradient(checkpoint_dir, tokenizer_path):
    from dagger_cli.core.engine.replay_buffer import flatten_obs
    from dagger_cli.policies.pi0 import Pi0Policy
    from test_pi0 import observation

    # GIVEN one tiny π₀ student (LIBERO's cameras, augmented) in a single-process learner and a 2-rank learner;
    # global batches of 6 in micro-batches of 2: the single learner's are rows 0-1, 2-3, 4-5, the ranks' (shards of
    # 3) 0-1, 2 and 3-4, 5 (rows of two of the single learner's micro-batches, each with its own augmentation)
    cfg = pi0_config(checkpoint_dir, tokenizer_path)
    single, parallel = Pi0Policy(cfg.actor.model, "cpu"), Pi0Policy(cfg.actor.model, "cpu")
    assert single.augment
    buffer = ReplayBuffer(16)
    labels = np.random.default_rng(1).normal(size=(16, 10, 7)).astype(np.float32)
    buffer.add({**flatten_obs(observation(batch=16, size=32)), "expert_action": labels})
    one = Learner(single, cfg.actor, cfg.seed, 10)
    two = DistributedLearner(parallel, cfg, 10)
    try:
        # WHEN both take 3 updates on the same global batches, from the same torch generator state
        for step in range(3):
            torch.manual_seed(step)
            m1 = one.train(buffer, 1)
            torch.manual_seed(step)
            m2 = two.train(buffer, 1)
            # THEN each step's gradient norm and loss are the single learner's (float sums in another order)
            assert m2["train/actor/grad_norm"] == pytest.approx(m1["train/actor/grad_norm"], rel=1e-5), step
            assert m2["train/dagger/actor_loss"] == pytest.approx(m1["train/dagger/actor_loss"], rel=1e-5), step
        # AND so are the parameters, which training moved
        a, b = single.model.state_dict(), parallel.model.state_dict()
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < TOLERANCE
        start = Pi0Policy(cfg.actor.model, "cpu").model.state_dict()
        assert max(float((a[k] - start[k]).abs().max()) for k in a) > 100 * TOLERANCE
    finally:
        two.close()


@requires_pi0
def test_a_two_rank_pi0_run_resumes_bitwise(checkpoint_dir, tokenizer_path, tmp_path):
    from conftest import straight_and_resumed
    from dagger_cli.policies.pi0 import Pi0Policy
    from test_pi0 import SeededCameraEnv

    cfg = pi0_config(checkpoint_dir, tokenizer_path, **{"actor.global_batch_size": 4, "actor.micro_batch_size": 2})

    def runner(run_dir, hooks=None):
        torch.manual_seed(cfg.seed)
        student = Pi0Policy(cfg.actor.model, "cpu")
        expert = Pi0Policy(cfg.rollout.expert_model, "cpu", trainable=False)
        return SyncRunner(cfg, run_dir, SeededCameraEnv(), student, expert, hooks=hooks, tensorboard=False)

    # GIVEN an uninterrupted 2-iteration run with 2 learner ranks, and one stopped after iteration 1 and resumed
    # (new ranks, which draw nothing: the time, noise and augmentation come from the checkpointed generator here)
    straight, resumed = straight_and_resumed(runner, tmp_path, 1)
    # THEN the students are bitwise equal
    a, b = straight.state.student.model.state_dict(), resumed.state.student.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.state.learner.steps == resumed.state.learner.steps == 4
