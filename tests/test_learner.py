import math

import numpy as np
import pytest
import torch

from conftest import PointExpert, point_config
from dagger_cli.core.engine.learner import Learner, lr_factor
from dagger_cli.core.engine.replay_buffer import ReplayBuffer
from dagger_cli.policies.mlp import MLPPolicy


def labelled_buffer(n=400, seed=0):
    obs = np.random.default_rng(seed).uniform(-1, 1, size=(n, 2)).astype(np.float32)
    buffer = ReplayBuffer(1000)
    buffer.add({"obs": obs, "expert_action": PointExpert().act(obs)})
    return buffer


def test_loss_falls_on_a_fixed_dataset():
    # GIVEN a random student and expert labels
    torch.manual_seed(0)
    cfg = point_config()
    policy = MLPPolicy(cfg.actor.model)
    learner = Learner(policy, cfg.actor, seed=0, default_total_steps=1000)
    buffer = labelled_buffer()
    # WHEN it trains for a few rounds
    first = learner.train(buffer, 30)["train/dagger/actor_loss"]
    for _ in range(5):
        last = learner.train(buffer, 30)
    # THEN the MSE to the expert falls by an order of magnitude and the metrics are reported
    assert last["train/dagger/actor_loss"] < first / 10
    assert last["train/actor/grad_norm"] > 0 and last["train/actor/lr"] == cfg.actor.optim.lr
    assert learner.steps == 180


def test_logstd_gets_no_gradient():
    cfg = point_config()
    policy = MLPPolicy(cfg.actor.model)
    before = policy.module.actor_logstd.detach().clone()
    Learner(policy, cfg.actor, 0, 100).train(labelled_buffer(), 5)
    assert torch.equal(before, policy.module.actor_logstd.detach())


def test_micro_batches_accumulate_to_the_global_batch_gradient():
    # GIVEN the same start, sampled batch and optimizer, with and without gradient accumulation
    results = []
    for micro in (64, 16):
        torch.manual_seed(0)
        cfg = point_config(**{"actor.micro_batch_size": micro, "actor.global_batch_size": 64})
        policy = MLPPolicy(cfg.actor.model)
        Learner(policy, cfg.actor, 0, 100).train(labelled_buffer(), 3)
        results.append(torch.cat([p.detach().flatten() for p in policy.module.parameters()]))
    # THEN the weights agree up to float rounding
    assert torch.allclose(results[0], results[1], atol=1e-5)


@pytest.mark.parametrize(
    "kind, step, expected",
    [
        ("constant", 0, 0.1), ("constant", 5, 0.6), ("constant", 50, 1.0),
        ("cosine", 10, 1.0), ("cosine", 60, 0.55), ("cosine", 110, 0.1), ("cosine", 500, 0.1),
        ("linear", 60, 0.55), ("linear", 110, 0.1),
    ],
)
def test_lr_schedule(kind, step, expected):
    # warm-up 10 steps, decay over 100 more, min_lr = 0.1 * lr
    assert lr_factor(step, kind, warmup=10, total=110, min_ratio=0.1) == pytest.approx(expected)


def test_state_round_trip_continues_identically():
    # GIVEN a learner that has trained a little, and a copy restored from its state
    torch.manual_seed(0)
    cfg = point_config(**{"actor.optim.lr_scheduler": "cosine", "actor.optim.lr_warmup_steps": 3})
    buffer = labelled_buffer()
    a = Learner(MLPPolicy(cfg.actor.model), cfg.actor, 0, 100)
    a.train(buffer, 7)
    tensors, meta = a.state_dict()
    b = Learner(MLPPolicy(cfg.actor.model), cfg.actor, 0, 100)
    b.policy.module.load_state_dict(a.policy.module.state_dict())
    b.load_state_dict(tensors, meta)
    # WHEN both train on
    ma, mb = a.train(buffer, 5), b.train(buffer, 5)
    # THEN losses, LR and weights are identical
    assert ma == mb
    for pa, pb in zip(a.policy.module.parameters(), b.policy.module.parameters()):
        assert torch.equal(pa, pb)
    assert not math.isnan(ma["train/dagger/actor_loss"])
