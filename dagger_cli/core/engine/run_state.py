"""What a DAgger run is, whichever pipeline runs it: the state both runners share, in rooms of their own.

`RunState` holds the config and run dir, the student, the beta schedule, the replay buffer and the learner, and
adds data to the buffer and trains on it. Three rooms hold the rest, each behind the methods the runners call:
`progress` (`RunProgress`: iteration, counts, stop request, wall clock, the summary), `evaluation`
(`RunEvaluation`: the evaluations' results, videos and metric rows) and `checkpoint` (`RunCheckpoint`: save, read,
restore, the buffer segments kept checkpoints name). `SyncRunner` and `AsyncRunner` each hold one `RunState` and
differ only in how they collect and evaluate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dagger_cli.core.engine.beta import BetaSchedule
from dagger_cli.core.config import Config
from dagger_cli.core.errors import ConfigError
from dagger_cli.core.engine.learner import Learner, loss_weights
from dagger_cli.core.io.metrics import MetricsLogger
from dagger_cli.core.protocols import RunnerHooks, TrainablePolicy
from dagger_cli.core.engine.replay_buffer import METADATA_FIELDS, ReplayBuffer, unflatten_obs
from dagger_cli.core.engine.replay_storage import DiskStorage, MemoryStorage
from dagger_cli.core.engine.run_checkpoint import Loaded, RunCheckpoint
from dagger_cli.core.io.run_dir import CHECKPOINTS_DIR, REPLAY_BUFFER_DIR
from dagger_cli.core.engine.run_evaluation import RunEvaluation
from dagger_cli.core.engine.run_progress import RunProgress

NORM_STATS_ROW_BYTES = 64 * 1024
"""`fit_norm_stats` gets the fields with rows up to this size: states and labels, not camera images"""


def fits_run(samples: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], what: str) -> None:
    """`samples` hold the fields a run's samples hold (`shapes`: one sample's shape of each, the metadata aside), of
    the same shapes; else a ConfigError, `what` and the first difference."""
    theirs = {k: tuple(np.shape(v)[1:]) for k, v in samples.items() if k not in METADATA_FIELDS}
    for field, shape in shapes.items():
        if field not in theirs:
            raise ConfigError(f"{what} (no field {field!r} there; this run's is {shape} a sample)")
        if theirs[field] != shape:
            raise ConfigError(f"{what} (field {field!r} is {theirs[field]} a sample there, {shape} in this run)")
    extra = sorted(set(theirs) - set(shapes))
    if extra:
        raise ConfigError(f"{what} (field {extra[0]!r} is there, not in this run)")


@dataclass
class SeedSamples:
    """A seed dataset as read for a new run (`assembly.seed_samples`), before it enters the buffer."""

    source: Path
    samples: dict[str, np.ndarray]
    """fields as the buffer stores them, one row a sample, episode after episode"""
    episodes: list[tuple[int, int]]
    """each episode's (first row, row after its last)"""


class RunState:
    def __init__(self, cfg: Config, run_dir: Path, student: TrainablePolicy, hooks: RunnerHooks | None = None,
                 seed_samples: SeedSamples | None = None,
                 sample_shapes: Callable[[], dict[str, tuple[int, ...]]] | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.student = student
        self.hooks = hooks or RunnerHooks()
        self.beta = BetaSchedule.from_config(cfg.algorithm.dagger)
        self.buffer = ReplayBuffer(cfg.algorithm.replay_buffer.sample_window_size, self._storage())
        # one LR schedule over every optimizer step of the run, the BC warm-up's first: its warm-up and decay are
        # those of the whole training, as a researcher reading lr_warmup_steps and min_lr expects (a schedule of its
        # own would warm up and decay twice; one that did not count it would end its decay early)
        total_steps = cfg.algorithm.dagger.bc_warmup_updates + cfg.runner.max_epochs * cfg.actor.update_epoch
        if cfg.cluster.learner_procs > 1:
            from dagger_cli.core.cluster.distributed_learner import DistributedLearner

            self.learner = DistributedLearner(student, cfg, total_steps)
        else:
            self.learner = Learner(student, cfg.actor, cfg.seed, total_steps, loss_weights(cfg.algorithm.dagger))
        self.progress = RunProgress(cfg, self.run_dir)
        self.evaluation = RunEvaluation(cfg, self.run_dir, self.hooks)
        self.checkpoint = RunCheckpoint(cfg, self.run_dir, student, self.learner, self.buffer, self.beta,
                                        self.progress, self.evaluation, self.hooks)
        self.seed_samples = seed_samples
        """a new run's seed dataset, added to the buffer when the run starts"""
        self.seeded_from: Path | None = None
        """the seed dataset the buffer started from (its samples fixed the fields)"""
        self.sample_shapes = sample_shapes
        """the runner's: the shape of one sample of each field its collections store (`rollout.sample_shapes`), which
        a seed dataset must match before any warm-up step"""

    def _storage(self):
        """The buffer's storage as algorithm.replay_buffer says: RAM (checkpointed to `checkpoints/replay_buffer/`) or
        files under `RUN_DIR/replay_buffer/` or `path/<run>-<hash>/`."""
        rb = self.cfg.algorithm.replay_buffer
        if rb.storage == "memory":
            return MemoryStorage(rb.sample_window_size, self.run_dir / CHECKPOINTS_DIR / REPLAY_BUFFER_DIR)
        if rb.path:
            tag = hashlib.sha1(str(self.run_dir.resolve()).encode()).hexdigest()[:8]
            return DiskStorage(rb.sample_window_size, Path(rb.path).expanduser() / f"{self.run_dir.name}-{tag}")
        return DiskStorage(rb.sample_window_size, self.run_dir / REPLAY_BUFFER_DIR)

    # DATA AND TRAINING
    def add(self, trajectories: list[dict], fit: bool = True) -> None:
        """Labelled trajectories into the buffer; a student without normalisation stats (a new task) takes them
        from the expert-labelled data stored so far (`TrainablePolicy.fit_norm_stats`). `fit=False`: not yet (sync
        mode fits after actor.norm_stats_iterations iterations; async mode once all their collections are in)."""
        try:
            for trajectory in trajectories:
                self.buffer.add(trajectory)
        except ValueError as e:
            if not self.seeded_from:
                raise
            raise ConfigError(f"algorithm.replay_buffer.seed_dataset: the samples of {self.seeded_from} and of this "
                              f"run differ ({e})") from None
        if fit and self.needs_norm_stats and self.buffer.size:
            self.fit_norm_stats()

    @property
    def needs_norm_stats(self) -> bool:
        return bool(getattr(self.student, "needs_norm_stats", False))

    def fit_norm_stats(self, collections: range | None = None) -> None:
        """The student's norm stats from the samples stored, or (async mode) from those of the collections
        numbered `collections` (the samples' `iteration` field), in collection order: iteration 0's collections,
        one per worker, whichever finished first."""
        small = [k for k in self.buffer.fields if self.buffer.row_bytes(k) <= NORM_STATS_ROW_BYTES]
        stored = self.buffer.stored(small)
        if collections is not None:
            index = stored["iteration"]
            rows = np.flatnonzero((index >= collections.start) & (index < collections.stop))
            rows = rows[np.argsort(index[rows], kind="stable")]
            stored = {k: v[rows] for k, v in stored.items()}
        if len(stored["expert_action"]):
            self.student.fit_norm_stats(unflatten_obs(stored), stored["expert_action"])
            self.hooks.phase("student norm stats computed from the expert's labels")

    def load_seed_dataset(self, seed: SeedSamples) -> None:
        """The seed dataset's samples into the buffer (iteration and policy version -1), then
        algorithm.dagger.bc_warmup_updates behaviour-cloning steps on them."""
        path, samples = seed.source, dict(seed.samples)
        samples["iteration"] = np.full(len(samples["expert_action"]), -1, np.int32)
        samples["policy_version"] = np.full(len(samples["expert_action"]), -1, np.int32)
        if self.sample_shapes is not None:  # before the warm-up spends its steps on data the run cannot add to
            fits_run(samples, self.sample_shapes(),
                     f"algorithm.replay_buffer.seed_dataset: the samples of {path} and of this run differ")
        self.add([{k: v[a:b] for k, v in samples.items()} for a, b in seed.episodes])
        self.seeded_from = path
        line = f"seed dataset: {self.buffer.size} samples from {path}"
        updates = self.cfg.algorithm.dagger.bc_warmup_updates
        if updates:
            self.hooks.phase("behaviour cloning on the seed dataset")
            row = self.learner.train(self.buffer, updates)
            line += f"; BC warm-up: {updates} updates, loss {row['train/dagger/actor_loss']:.4f}"
        self.hooks.note(line)

    def ready_to_train(self) -> bool:
        return self.buffer.size >= self.cfg.algorithm.replay_buffer.min_buffer_size and not self.needs_norm_stats

    def train(self) -> dict[str, float]:
        """One learner iteration: `actor.update_epoch` optimizer steps."""
        return self.learner.train(self.buffer, self.cfg.actor.update_epoch)

    def buffer_metrics(self) -> dict[str, float]:
        return {
            "train/replay_buffer/num_trajectories": self.buffer.num_trajectories,
            "train/replay_buffer/total_samples": self.buffer.total_samples,
            "train/replay_buffer/cache_size": self.buffer.size,
        }

    # THE RUN
    def start(self, tensorboard: bool, started_at: float | None = None) -> MetricsLogger:
        """Starts the wall clock (at `started_at`, a perf_counter, default now), makes the buffer's directory (a disk
        that cannot be written fails here, before any episode) and holds the GPUs of data-parallel learner ranks (too
        few is one line here), seeds a new run's buffer, then opens the run's metrics sinks (runner.logger's
        backends; `tensorboard` False leaves TensorBoard out whatever they say), cut back to the checkpoint on
        resume; a new run logs its config first."""
        self.progress.start_clock(started_at)
        self.buffer.storage.prepare()
        reserve = getattr(self.learner, "reserve", None)
        if reserve is not None:  # data-parallel ranks on GPUs: enough free ones, before any step
            reserve()
        resumed_from = self.progress.resumed_from
        if resumed_from is None and self.seed_samples is not None:
            self.load_seed_dataset(self.seed_samples)
        backends = self.cfg.runner.logger.logger_backends
        wandb = None
        if "wandb" in backends:
            from dagger_cli.core.io.metrics import WandbSink

            wandb = WandbSink(self.run_dir, self.cfg, resumed_from, note=self.hooks.note)
        metrics = MetricsLogger(self.run_dir, resume_step=resumed_from,
                                tensorboard=tensorboard and "tensorboard" in backends, wandb=wandb)
        if resumed_from is None:
            metrics.add_text("config", "```\n" + self.cfg.to_yaml() + "\n```")
        return metrics

    def save(self) -> Path:
        """A checkpoint of everything (atomic), then the summary of what it holds."""
        path = self.checkpoint.save()
        self.write_summary("finished" if self.progress.finished else "running")
        return path

    def restore(self, loaded: Loaded | Path) -> None:
        """Continues from a checkpoint (read whole, or its path): the next iteration is its iteration, with its
        beta."""
        self.checkpoint.restore(loaded)

    def summary(self, status: str | None = None) -> dict[str, Any]:
        return self.progress.summary(self.evaluation, status)

    def write_summary(self, status: str | None = None) -> dict[str, Any]:
        return self.progress.write_summary(self.evaluation, status)

    def close(self) -> None:
        """Ends what the run holds open: learner ranks, the buffer's files."""
        self.learner.close()
        self.buffer.close()
