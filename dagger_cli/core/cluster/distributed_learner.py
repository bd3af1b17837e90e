"""A data-parallel learner: `cluster.learner_procs` = N processes (Ray actors) training replicas of the student with
`torch.distributed` (NCCL on GPUs, gloo on CPUs).

This process keeps the replay buffer and the sampling RNG, so it draws exactly the global batches a single learner
would draw; rank i gets the i-th contiguous shard of each. It also draws each global batch's loss randomness
(π₀'s flow-matching time and noise, its image augmentation: the policy's `loss_noise`) from this process's
torch generator, which run checkpoints hold, as a single learner's micro-batches would, and ships each rank the rows of
its shard: the ranks' losses are the single learner's, reproducible and exactly resumable, and no rank draws
anything. Each rank weights its micro-batches' losses by their share of the global batch (with loss weights by
expert_used: its samples' weighted losses over the global batch's weight sum, which this process sends), so the
all-reduced sum of the ranks' gradients is the single learner's gradient; every rank then clips and steps the same way, and the
replicas stay equal. After each `train` the student here takes rank 0's weights (for rollouts, evaluation and
checkpoints); checkpoints hold rank 0's optimizer state, which `load_state_dict` gives to every rank.

The ranks start at the first `train`, from a copy of the student as it is then (a new task's norm stats, fitted on
the first iteration's data, are in it; so are weights restored from a checkpoint). Each rank holds a whole replica
(DDP's memory, not FSDP's): π₀ full fine-tuning needs ≈49 GiB per rank before activations.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np
import torch

from dagger_cli.core.config import ActorConfig, Config
from dagger_cli.core.errors import DaggerError
from dagger_cli.core.engine.learner import (Learner, _SAMPLE_STREAM, check_weightable, draw_loss_noise, loss_weights,
                                           sample_weights)
from dagger_cli.core.protocols import TrainablePolicy
from dagger_cli.core.engine.replay_buffer import ReplayBuffer


PLACEMENT_TIMEOUT_S = 120.0
"""how long learner ranks on GPUs wait for Ray to place them (a whole GPU and a CPU each) before the run fails"""


def _on_gpu(policy: TrainablePolicy) -> bool:
    """Whether the student, and so each rank's replica, trains on a GPU."""
    return bool(next(policy.module.parameters()).is_cuda)


class LearnerRank:
    """One rank, in a Ray actor: a replica of the student, its optimizer and the process group."""

    def __init__(self, policy: TrainablePolicy, cfg: ActorConfig, seed: int, total_steps: int, threads: int,
                 weights: tuple[float, float] | None = None):
        torch.set_num_threads(threads)
        self.policy = policy
        self.learner = Learner(policy, cfg, seed, total_steps, weights)

    def address(self) -> str:
        """host:port for the process group's rendezvous (called on rank 0)."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return f"{socket.gethostbyname(socket.gethostname())}:{port}"

    def join(self, address: str, rank: int, world: int, backend: str) -> int:
        import torch.distributed as dist

        dist.init_process_group(backend, init_method=f"tcp://{address}", rank=rank, world_size=world)
        return rank

    def step(self, shard: dict[str, np.ndarray], batch_size: int, noise: dict[str, torch.Tensor] | None = None,
             weight_total: float | None = None) -> tuple[float, float]:
        self.policy.module.train()
        with self.learner.training():
            return self.learner.step(shard, batch_size, reduce=_all_reduce, noise=noise, weight_total=weight_total)

    def weights(self) -> dict[str, torch.Tensor]:
        self.policy.module.eval()
        return self.policy.state_dict()

    def state_dict(self):
        return self.learner.state_dict()

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.learner.load_state_dict(tensors, meta)

    def lr(self) -> float:
        return float(self.learner.optimizer.param_groups[0]["lr"])


def _all_reduce(params: list[torch.Tensor]) -> None:
    """Sums the gradients over the ranks, one flat buffer per dtype. A parameter no rank has a gradient for keeps
    none (AdamW then leaves it alone, as a single learner does); one that only some ranks have counts as zeros
    on the others."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(has)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p, anyone in zip(params, has.tolist()):
        if anyone:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(reduced)


class DistributedLearner:
    """`Learner`'s interface (train, state_dict, load_state_dict, steps) over N ranks."""

    def __init__(self, policy: TrainablePolicy, run_cfg: Config, total_steps: int):
        self.policy = policy
        self.run_cfg = run_cfg
        self.cfg = run_cfg.actor
        self.procs = run_cfg.cluster.learner_procs
        self.weights = loss_weights(run_cfg.algorithm.dagger)
        check_weightable(policy, self.weights)  # here, not in the ranks
        self.total_steps = total_steps
        self.rng = np.random.default_rng([run_cfg.seed, _SAMPLE_STREAM])
        self.steps = 0
        self.ranks: list = []
        self._own_ray = False
        self._connected = False
        self._group = None  # the placement group holding the ranks' GPUs
        self._pending: tuple[dict, dict] | None = None  # optimizer state restored before the ranks started

    def _connect(self) -> None:
        from dagger_cli.core.cluster.ray_cluster import connect

        if not self._connected:
            self._own_ray = connect(self.run_cfg, f"cluster.learner_procs={self.procs}")
            self._connected = True

    def reserve(self) -> None:
        """Ranks on GPUs take a whole GPU each: before the run starts (`RunState.start`, after the rollout workers
        took theirs), too few free GPUs is one line naming the keys, and the ranks' GPUs are held for them in a Ray
        placement group, found within PLACEMENT_TIMEOUT_S or one line (fractions left by the workers, busy GPUs of a
        joined cluster), instead of ranks pending until the process group's 30-minute timeout. CPU ranks need
        nothing."""
        if self._group is not None or not _on_gpu(self.policy):
            return
        self._connect()
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        total = ray.cluster_resources().get("GPU", 0.0)
        free = ray.available_resources().get("GPU", 0.0)
        if free < self.procs:
            self.close()
            raise DaggerError(self._shortage(total, free))
        group = placement_group([{"GPU": 1, "CPU": 1}] * self.procs, strategy="PACK")
        if not group.wait(PLACEMENT_TIMEOUT_S):
            remove_placement_group(group)
            self.close()
            raise DaggerError(self._shortage(total, free, waited=PLACEMENT_TIMEOUT_S))
        self._group = group

    def _shortage(self, total: float, free: float, waited: float | None = None) -> str:
        line = (f"cluster.learner_procs={self.procs}: each learner rank trains on a whole GPU of its own, and the Ray "
                f"cluster has {total:g} GPU{'s' if total != 1 else ''}")
        if waited is not None:
            line += (f", {free:g} free in all but not {self.procs} whole ones (with a CPU each) within {waited:g} s: "
                     "fractions held by the rollout workers or other jobs")
        elif total >= self.procs:
            line += (f", {free:g} free: the others are held by the rollout workers (cluster.num_rollout_workers × "
                     "cluster.rollout_worker_gpus) or by other jobs")
        fix = "lower cluster.learner_procs" + (", or cluster.rollout_worker_gpus" if total >= self.procs else "")
        return f"{line}; {fix}, or train on CPUs (runner.device=cpu)"

    def _start(self) -> None:
        self._connect()
        import ray

        cuda = _on_gpu(self.policy)
        if cuda:
            self.reserve()
        threads = max(1, (os.cpu_count() or 1) // self.procs)
        actor = ray.remote(num_cpus=1 if cuda else 0, num_gpus=1 if cuda else 0)(LearnerRank)
        args = (self.policy, self.cfg, self.run_cfg.seed, self.total_steps, threads, self.weights)
        if self._group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            self.ranks = [actor.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
                self._group, placement_group_bundle_index=i)).remote(*args) for i in range(self.procs)]
        else:
            self.ranks = [actor.remote(*args) for _ in range(self.procs)]
        address = self._get(self.ranks[0].address.remote(), "starting")
        backend = "nccl" if cuda else "gloo"
        self._get([r.join.remote(address, i, self.procs, backend) for i, r in enumerate(self.ranks)], "joining")
        if self._pending is not None:
            self._get([r.load_state_dict.remote(*self._pending) for r in self.ranks], "restoring")
            self._pending = None

    def _get(self, refs, what: str):
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return ray.get(refs)
        except (RayActorError, RayTaskError) as e:
            cause = getattr(e, "cause", None) or e
            line = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
            raise DaggerError(f"a learner rank failed while {what}: {line}") from None

    def train(self, buffer: ReplayBuffer, num_updates: int) -> dict[str, float]:
        """As `Learner.train`: the same global batches, each shared out over the ranks."""
        if not self.ranks:
            self._start()
        losses, norms = [], []
        for _ in range(num_updates):
            batch_size = min(self.cfg.global_batch_size, buffer.size)
            batch = buffer.sample(batch_size, self.rng)
            noise = draw_loss_noise(self.policy, batch_size, self.cfg.micro_batch_size)
            edges = np.linspace(0, batch_size, self.procs + 1).astype(int)
            bounds = list(zip(edges[:-1], edges[1:]))
            shards = [{k: v[a:b] for k, v in batch.items()} for a, b in bounds]
            noises = [None if noise is None else {k: v[a:b] for k, v in noise.items()} for a, b in bounds]
            # with loss weights, every rank divides by the global batch's weight sum
            total = None if self.weights is None else float(
                sample_weights(batch["expert_used"], self.weights).sum(dtype=np.float64))
            results = self._get([r.step.remote(s, batch_size, n, total)
                                 for r, s, n in zip(self.ranks, shards, noises)], "training")
            losses.append(sum(loss for loss, _ in results))
            norms.append(results[0][1])
            self.steps += 1
        self.policy.load_state_dict(self._get(self.ranks[0].weights.remote(), "sending its weights"))
        lr = self._get(self.ranks[0].lr.remote(), "training")
        return {
            "train/dagger/actor_loss": float(np.mean(losses)) if losses else float("nan"),
            "train/actor/grad_norm": float(np.mean(norms)) if norms else float("nan"),
            "train/actor/lr": lr,
        }

    # CHECKPOINT
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Rank 0's optimizer and schedule (every rank's are equal), with this process's sampling RNG."""
        if not self.ranks:
            if self._pending is not None:
                tensors, meta = self._pending
            else:
                tensors, meta = Learner(self.policy, self.cfg, self.run_cfg.seed, self.total_steps).state_dict()
        else:
            tensors, meta = self._get(self.ranks[0].state_dict.remote(), "saving")
        return tensors, {**meta, "steps": self.steps, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.rng.bit_generator.state = meta["rng"]
        self.steps = int(meta["steps"])
        if self.ranks:
            self._get([r.load_state_dict.remote(tensors, meta) for r in self.ranks], "restoring")
        else:
            self._pending = (tensors, meta)

    def close(self) -> None:
        from dagger_cli.core.cluster.ray_cluster import release

        release(self.ranks, False)
        if self._group is not None:  # after the ranks it holds GPUs for (a joined cluster keeps it until removed)
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self._group)
        release([], self._own_ray)
        self.ranks, self._own_ray, self._connected, self._group = [], False, False, None
