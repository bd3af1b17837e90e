"""The learner: fresh uniform samples from the replay buffer each optimizer step, AdamW, clipping, LR schedule, and
the optional moving average of the weights the student acts with."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from dagger_cli.core.config import ActorConfig, DaggerConfig
from dagger_cli.core.errors import CheckpointError, ConfigError
from dagger_cli.core.protocols import TrainablePolicy
from dagger_cli.core.engine.replay_buffer import ReplayBuffer, unflatten_obs

_SAMPLE_STREAM = 1
TRAINED = "trained"
"""the prefix of the trained weights' tensors in a learner's state, with actor.ema_decay"""


def lr_factor(step: int, kind: str, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    if kind == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if kind == "linear":
        return min_ratio + (1 - min_ratio) * (1 - progress)
    raise ValueError(f"unknown lr_scheduler {kind!r}")


def draw_loss_noise(policy: TrainablePolicy, batch_size: int, micro_batch_size: int) -> dict[str, torch.Tensor] | None:
    """The randomness of the losses of one global batch of `batch_size` samples (the policy's optional
    `loss_noise`; None for a deterministic loss), drawn as a single learner's micro-batches would draw it, one call
    per micro-batch in order, and joined row by row: slices of it give any shard or micro-batch its own rows, so a
    data-parallel learner's ranks compute the single learner's losses."""
    draw = getattr(policy, "loss_noise", None)
    if draw is None:
        return None
    parts = [draw(min(micro_batch_size, batch_size - start)) for start in range(0, batch_size, micro_batch_size)]
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def loss_weights(d: DaggerConfig) -> tuple[float, float] | None:
    """(expert-acted, student-acted) sample weights of the loss, from algorithm.dagger's `expert_loss_weight` and
    `student_loss_weight`; None where they are equal, whose weighted mean is the plain mean: the learner then
    computes the loss as it does without weights, bit for bit."""
    if d.expert_loss_weight == d.student_loss_weight:
        return None
    return d.expert_loss_weight, d.student_loss_weight


def sample_weights(expert_used: np.ndarray, weights: tuple[float, float]) -> np.ndarray:
    """Each sample's loss weight: the expert's where it acted (`expert_used`), the student's elsewhere."""
    return np.where(np.asarray(expert_used, dtype=bool), weights[0], weights[1]).astype(np.float32)


def check_weightable(policy: TrainablePolicy, weights: tuple[float, float] | None) -> None:
    """Loss weights need the student's `per_sample_loss`; one line naming the keys where it has none."""
    if weights is not None and not hasattr(policy, "per_sample_loss"):
        raise ConfigError(f"algorithm.dagger.expert_loss_weight and student_loss_weight differ but the student "
                          f"({type(policy).__name__}) has no per-sample loss to weight; make them equal")


class WeightAverage:
    """An exponential moving average of a module's trainable parameters (`actor.ema_decay`), held in the module
    itself whenever it is not training, so that everything that acts or saves the student (rollouts, evaluations,
    checkpoints, Ray workers) gets the average: `training()` exchanges the trained weights and the average (their
    storage, no copy) around the optimizer's steps, and `update` after each step moves the average toward the
    trained weights by 1 - min(decay, (1 + n) / (10 + n)) at the n-th update."""

    def __init__(self, params: dict[str, torch.nn.Parameter], decay: float):
        self.params = params
        self.decay = decay
        self.other = {name: p.detach().clone() for name, p in params.items()}
        """the trained weights outside `training()`, the average inside it"""
        self.updates = 0
        """`update` calls so far"""

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        self._exchange()
        try:
            yield
        finally:
            self._exchange()

    def _exchange(self) -> None:
        for name, p in self.params.items():
            p.data, self.other[name] = self.other[name], p.data

    @torch.no_grad()
    def update(self) -> None:
        """Inside `training()`, after an optimizer step."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        names = list(self.params)
        torch._foreach_lerp_([self.other[n] for n in names], [self.params[n].detach() for n in names], 1.0 - decay)
        self.updates += 1

    def trained(self) -> dict[str, torch.Tensor]:
        """Outside `training()`: the trained weights, which a run's checkpoint keeps beside the average."""
        return self.other

    def load_trained(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        for name, value in tensors.items():
            self.other[name].copy_(value)
        self.updates = updates


class Learner:
    """Trains the student on DAgger labels: `update_epoch` optimizer steps per call of `train`.

    With `weights` (`loss_weights`: expert-acted, student-acted), a global batch's loss is the weighted mean of
    its samples' losses, sum(w_i * l_i) / sum(w_i) (the student's `per_sample_loss`); a batch whose weights are all
    0 has zero gradient (AdamW still applies its momentum and weight decay)."""

    def __init__(self, policy: TrainablePolicy, cfg: ActorConfig, seed: int, default_total_steps: int,
                 weights: tuple[float, float] | None = None):
        self.policy = policy
        self.cfg = cfg
        self.weights = weights
        check_weightable(policy, weights)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            [p for p in policy.module.parameters() if p.requires_grad],
            lr=o.lr,
            betas=tuple(o.betas),
            weight_decay=o.weight_decay,
        )
        total = o.total_training_steps or default_total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(step, o.lr_scheduler, o.lr_warmup_steps, total, o.min_lr / o.lr),
        )
        self.rng = np.random.default_rng([seed, _SAMPLE_STREAM])
        self.steps = 0
        """optimizer steps taken"""
        self.average = None if cfg.ema_decay is None else WeightAverage(
            {n: p for n, p in policy.module.named_parameters() if p.requires_grad}, cfg.ema_decay)
        """actor.ema_decay: the moving average the student acts with"""

    def training(self) -> contextlib.AbstractContextManager:
        """The student's trained weights in its module (the average's otherwise), for optimizer steps."""
        return self.average.training() if self.average is not None else contextlib.nullcontext()

    def train(self, buffer: ReplayBuffer, num_updates: int) -> dict[str, float]:
        """Takes `num_updates` optimizer steps; returns mean loss and grad norm and the final LR."""
        self.policy.module.train()
        losses, norms = [], []
        with self.training():
            for _ in range(num_updates):
                batch_size = min(self.cfg.global_batch_size, buffer.size)
                batch = buffer.sample(batch_size, self.rng)
                noise = draw_loss_noise(self.policy, batch_size, self.cfg.micro_batch_size)
                loss, norm = self.step(batch, batch_size, noise=noise)
                losses.append(loss)
                norms.append(norm)
        self.policy.module.eval()
        return self.metrics(losses, norms)

    def step(self, batch: dict[str, np.ndarray], batch_size: int, reduce=None,
             noise: dict[str, torch.Tensor] | None = None, weight_total: float | None = None) -> tuple[float, float]:
        """One optimizer step on `batch`, all of a global batch of `batch_size` samples or (data-parallel) this
        process's shard of it, with `reduce(params)` summing the shards' gradients; `noise`, the loss's
        randomness for these rows (`draw_loss_noise`; None: the policy's loss draws its own); `weight_total`, with
        loss weights, the sum of the global batch's sample weights (None: this batch's, all of it); returns (loss,
        grad norm), the loss summed over the shards' parts. Inside `training()`."""
        cfg = self.cfg
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.optimizer.zero_grad(set_to_none=True)
        weights = None if self.weights is None else sample_weights(batch["expert_used"], self.weights)
        if weights is not None and weight_total is None:
            weight_total = float(weights.sum(dtype=np.float64))
        total = 0.0
        for start in range(0, len(batch["expert_action"]), cfg.micro_batch_size):
            part = {k: v[start : start + cfg.micro_batch_size] for k, v in batch.items()}
            kwargs = {} if noise is None else {"noise": {k: v[start : start + cfg.micro_batch_size]
                                                         for k, v in noise.items()}}
            if weights is None:
                weight = len(part["expert_action"]) / batch_size
                loss = self.policy.loss(unflatten_obs(part), part["expert_action"], **kwargs)
                loss = loss * weight
            else:  # this part's share of the global batch's weighted mean
                losses = self.policy.per_sample_loss(unflatten_obs(part), part["expert_action"], **kwargs)
                w = torch.as_tensor(weights[start : start + cfg.micro_batch_size], device=losses.device)
                loss = (losses * w).sum() / (weight_total if weight_total > 0 else 1.0)
            loss.backward()
            total += float(loss.detach())
        if reduce is not None:
            reduce(params)
        limit = cfg.optim.clip_grad if cfg.optim.clip_grad > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, limit)
        self.optimizer.step()
        self.scheduler.step()
        if self.average is not None:
            self.average.update()
        self.steps += 1
        return total, float(norm)

    def metrics(self, losses: list[float], norms: list[float]) -> dict[str, float]:
        return {
            "train/dagger/actor_loss": float(np.mean(losses)) if losses else float("nan"),
            "train/actor/grad_norm": float(np.mean(norms)) if norms else float("nan"),
            "train/actor/lr": float(self.optimizer.param_groups[0]["lr"]),
        }

    # CHECKPOINT
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON-able state) of the optimizer, schedule and sampling RNG, and with `actor.ema_decay` the
        trained weights (the student's own are the average)."""
        opt = self.optimizer.state_dict()
        tensors, scalars = {}, {}
        for index, entry in opt["state"].items():
            for name, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer/{index}/{name}"] = value.detach().cpu().clone()
                else:
                    scalars[f"{index}/{name}"] = value
        groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
        meta = {
            "steps": self.steps,
            "param_groups": groups,
            "optimizer_scalars": scalars,
            "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"},
            "rng": self.rng.bit_generator.state,
        }
        if self.average is not None:
            tensors.update({f"{TRAINED}/{name}": w.detach().cpu().clone() for name, w in self.average.trained().items()})
            meta["average_updates"] = self.average.updates
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        trained = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{TRAINED}/")}
        if (self.average is not None) != bool(trained):
            raise CheckpointError("actor.ema_decay: the checkpoint was saved " + (
                "without a moving average of the weights; resume it without the key" if self.average is not None
                else "with a moving average of the weights; resume it with the run's actor.ema_decay"))
        if self.average is not None:
            self.average.load_trained(trained, int(meta["average_updates"]))
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(f"{TRAINED}/"):
                continue
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
        for key, value in meta["optimizer_scalars"].items():
            index, name = key.split("/", 1)
            state.setdefault(int(index), {})[name] = value
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        scheduler = self.scheduler.state_dict()
        scheduler.update(meta["scheduler"])
        self.scheduler.load_state_dict(scheduler)
        self.rng.bit_generator.state = meta["rng"]
        self.steps = int(meta["steps"])

    def close(self) -> None:
        """Nothing to end in-process (`DistributedLearner` ends its ranks)."""
