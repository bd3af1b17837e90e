import math

import numpy as np
import pytest
import torch

from conftest import PointExpert, point_config
from dagger_cli.core.engine.learner import Learner, loss_weights, lr_factor
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


def test_with_ema_decay_the_student_holds_the_moving_average_of_the_weights_it_trained():
    """GIVEN two learners from the same start and seed, one with `actor.ema_decay` WHEN each takes 12 optimizer
    steps, one at a time THEN the averaging one trained the very same weights (kept beside the module) and its module
    holds their moving average, warmed up as min(decay, (1 + n) / (10 + n)); the plain one's module holds the trained
    weights."""
    buffer, decay = labelled_buffer(), 0.8
    learners = []
    for ema in (None, decay):
        torch.manual_seed(0)
        cfg = point_config(**({} if ema is None else {"actor.ema_decay": ema}))
        learners.append(Learner(MLPPolicy(cfg.actor.model), cfg.actor, seed=0, default_total_steps=100))
    plain, averaging = learners
    names = [n for n, p in plain.policy.module.named_parameters() if p.requires_grad]
    expected = {n: p.detach().clone() for n, p in plain.policy.module.named_parameters() if n in names}
    for n in range(12):
        plain.train(buffer, 1)
        averaging.train(buffer, 1)
        rate = 1 - min(decay, (1 + n) / (10 + n))
        for name, p in plain.policy.module.named_parameters():
            if name in names:
                expected[name] += rate * (p.detach() - expected[name])
    trained = averaging.average.trained()
    held = dict(averaging.policy.module.named_parameters())
    for name, p in plain.policy.module.named_parameters():
        assert torch.equal(p, trained[name]) if name in names else torch.equal(p, held[name])
    for name in names:
        assert torch.allclose(held[name], expected[name], atol=1e-6)
    assert sum(not torch.equal(held[name], trained[name]) for name in names) >= 4  # all but the unused log-std
    assert averaging.average.updates == 12 and plain.average is None


def test_a_learner_state_saved_with_or_without_the_average_is_refused_by_the_other_in_one_line():
    from dagger_cli.core.errors import CheckpointError

    learners = []
    for ema in (None, 0.9):
        cfg = point_config(**({} if ema is None else {"actor.ema_decay": ema}))
        learners.append(Learner(MLPPolicy(cfg.actor.model), cfg.actor, seed=0, default_total_steps=100))
    for saver, loader in (learners, learners[::-1]):
        with pytest.raises(CheckpointError, match="actor.ema_decay"):
            loader.load_state_dict(*saver.state_dict())


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


# LOSS WEIGHTS BY WHO ACTED (algorithm.dagger.expert_loss_weight, student_loss_weight)
def mixed_batches(count=3, n=64, seed=0):
    """`count` batches of point-env samples, about half of each acted on by the expert (`expert_used`)."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        obs = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
        batches.append({"obs": obs, "expert_action": PointExpert().act(obs), "expert_used": rng.random(n) < 0.5})
    return batches


def weighted_learner(expert_weight, student_weight, **sets):
    cfg = point_config(**{"algorithm.dagger.expert_loss_weight": expert_weight,
                          "algorithm.dagger.student_loss_weight": student_weight, **sets})
    torch.manual_seed(0)
    policy = MLPPolicy(cfg.actor.model)
    return Learner(policy, cfg.actor, 0, 100, loss_weights(cfg.algorithm.dagger))


def test_student_weight_zero_trains_as_the_expert_acted_samples_alone():
    # GIVEN the same student twice: one learner weighting student-acted samples 0 (expert-acted 1), one unweighted
    weighted = weighted_learner(1.0, 0.0)
    plain = weighted_learner(1.0, 1.0)
    assert plain.weights is None and weighted.weights == (1.0, 0.0)
    # WHEN the first takes 3 steps on mixed batches (micro-batches of 32) and the second on their expert-acted rows
    for batch in mixed_batches():
        loss_w, _ = weighted.step(batch, len(batch["obs"]))
        expert_rows = {k: v[batch["expert_used"]] for k, v in batch.items()}
        assert 0 < len(expert_rows["obs"]) < len(batch["obs"])
        loss_p, _ = plain.step(expert_rows, len(expert_rows["obs"]))
        # THEN each step's loss and the updated weights are the same (float sums in another order)
        assert loss_w == pytest.approx(loss_p, rel=1e-5)
    a, b = weighted.policy.module.state_dict(), plain.policy.module.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    start = weighted_learner(1.0, 1.0).policy.module.state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-3


def test_weighted_gradient_is_the_weighted_mean_of_per_sample_gradients():
    # GIVEN expert-acted samples weighted 2 and student-acted ones 0.5, no clipping, micro-batches of 16
    learner = weighted_learner(2.0, 0.5, **{"actor.optim.clip_grad": 0, "actor.micro_batch_size": 16})
    batch = mixed_batches(1, n=64)[0]
    module = learner.policy.module
    before = {k: v.clone() for k, v in module.state_dict().items()}
    # WHEN it takes one step
    loss, _ = learner.step(batch, 64)
    got = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    # THEN the gradient is sum_i w_i grad(l_i) / sum_i w_i, each l_i one sample's MSE, computed sample by sample
    module.load_state_dict(before)
    w = np.where(batch["expert_used"], 2.0, 0.5)
    expected = {name: torch.zeros_like(g) for name, g in got.items()}
    plain = {name: torch.zeros_like(g) for name, g in got.items()}
    losses = []
    for i in range(64):
        module.zero_grad()
        mean = module(torch.as_tensor(batch["obs"][i : i + 1]))
        sample_loss = ((mean - torch.as_tensor(batch["expert_action"][i]).reshape(1, -1)) ** 2).mean()
        sample_loss.backward()
        losses.append(float(sample_loss.detach()))
        for name, p in module.named_parameters():
            if name in expected:
                expected[name] += float(w[i]) * p.grad
                plain[name] += p.grad / 64
    for name in got:
        assert torch.allclose(got[name], expected[name] / w.sum(), atol=1e-6, rtol=1e-4), name
    assert loss == pytest.approx(float(np.dot(w, losses) / w.sum()), rel=1e-5)
    # AND it is not the unweighted mean's gradient
    assert not all(torch.allclose(got[name], plain[name], atol=1e-6, rtol=1e-4) for name in got)


def test_equal_weights_are_the_plain_mean_and_bad_weights_name_their_key():
    from dagger_cli.core.errors import ConfigError

    assert loss_weights(point_config(**{"algorithm.dagger.expert_loss_weight": 3.0,
                                        "algorithm.dagger.student_loss_weight": 3.0}).algorithm.dagger) is None
    for sets, key in [({"algorithm.dagger.expert_loss_weight": -1}, "algorithm.dagger.expert_loss_weight"),
                      ({"algorithm.dagger.student_loss_weight": ".inf"}, "algorithm.dagger.student_loss_weight"),
                      ({"algorithm.dagger.expert_loss_weight": 0, "algorithm.dagger.student_loss_weight": 0},
                       "algorithm.dagger.student_loss_weight")]:
        with pytest.raises(ConfigError, match=key) as e:
            point_config(**sets)
        assert "\n" not in str(e.value)


def test_loss_weights_need_a_student_with_per_sample_losses():
    from conftest import StateOf
    from dagger_cli.core.errors import ConfigError

    cfg = point_config()
    with pytest.raises(ConfigError, match="expert_loss_weight and student_loss_weight differ"):
        Learner(StateOf(MLPPolicy(cfg.actor.model)), cfg.actor, 0, 100, (2.0, 1.0))
