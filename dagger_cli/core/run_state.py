"""What a DAgger run is, whichever pipeline runs it: the state both runners share and the helpers they both use.

`RunState` holds the config and run dir, the student, the beta schedule, the replay buffer, the learner, the
iteration and the results; it saves and restores all of it, makes the metric rows common to both pipelines and
writes `summary.json` (the file `dagger report` reads) with every checkpoint. `SyncRunner` and `AsyncRunner` each
hold one and differ only in how they collect and evaluate.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dagger_cli.core import checkpoint, process
from dagger_cli.core.beta import BetaSchedule
from dagger_cli.core.config import Config
from dagger_cli.core.learner import Learner
from dagger_cli.core.metrics import MetricsLogger
from dagger_cli.core.protocols import Policy, TrainablePolicy, VecEnv
from dagger_cli.core.errors import CheckpointError, ConfigError, DaggerError
from dagger_cli.core.replay_buffer import METADATA_FIELDS, ReplayBuffer, unflatten_obs
from dagger_cli.core.replay_storage import DiskStorage, MemoryStorage, ReadOnlyStorage, SegmentLog
from dagger_cli.core.rollout import evaluate
from dagger_cli.core.run_dir import (
    CHECKPOINTS_DIR, LEARNER, LEGACY_BUFFER_ROWS, REPLAY_BUFFER_DIR, STUDENT, VIDEOS_DIR, write_summary,
)

NORM_STATS_ROW_BYTES = 64 * 1024
"""`fit_norm_stats` gets the fields with rows up to this size: states and labels, not camera images"""


@contextmanager
def torch_threads(n: int = 1):
    """`n` torch threads inside the block. One while env workers run: batch-of-a-few inference gains nothing from
    more, and idle OpenMP threads spinning on the other cores slow the simulator down."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def evaluate_policy(env: VecEnv, policy: Policy, seeds: list[int], max_episode_steps: int, record: int = 0):
    """`rollout.evaluate` on one torch thread, with sampling policies (a flow-matching student draws its noise from
    torch's global generator) drawing from a generator seeded by the first reset seed: an evaluation repeats
    exactly, and training's random stream is left as it was."""
    with torch_threads(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds[0] if seeds else 0)
        return evaluate(env, policy, seeds, max_episode_steps, record)


def eval_row(prefix: str, result: dict[str, Any]) -> dict[str, float]:
    """Metric names for an evaluation summary: `eval/success_once`, ..., `eval/task/<task>/success_once` for an env
    that names its tasks; durations go under `time/`."""
    row = {f"{prefix}/{k}": v for k, v in result.items() if k not in ("seconds", "success_once_ci95", "tasks")}
    for task, entry in result.get("tasks", {}).items():
        row[f"{prefix}/task/{task}/success_once"] = entry["success_once"]
    row[f"time/{prefix}_s"] = result["seconds"]
    return row


def save_videos(result, folder: Path) -> list[Path]:
    """An evaluation's recorded episodes as mp4 files in `folder` (seed and outcome in the name)."""
    if not result.videos:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for video in result.videos:
        path = folder / video.name
        path.write_bytes(video.mp4)
        paths.append(path)
    return paths


def buffer_meta(state: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A checkpoint's replay buffer state with its log's path resolved (saved relative to the run dir when inside)."""
    meta = dict(state.get("replay_buffer", {}))
    if meta.get("storage"):
        meta["storage"] = {**meta["storage"], "log": str(Path(run_dir) / meta["storage"]["log"])}
    return meta


@contextmanager
def checkpoint_buffer(ckpt: Path):
    """The replay buffer a checkpoint holds, read in place and read-only (`ReadOnlyStorage`: nothing in the run is
    checked for write access, made or written), for `stored` or `chunks`; a checkpoint from before segment logs
    holds its rows itself, and is read whole."""
    meta = buffer_meta(checkpoint.read_state(ckpt), Path(ckpt).parent.parent)
    if "storage" not in meta:
        buffer = ReplayBuffer(meta["capacity"])
        buffer.load_state_dict(meta, checkpoint.read_tensors(ckpt, LEGACY_BUFFER_ROWS, "np"))
    else:
        buffer = ReplayBuffer(meta["capacity"], ReadOnlyStorage(meta["capacity"]))
        try:
            if meta["storage"]:
                buffer.load_state_dict(meta)
        except DaggerError as e:
            buffer.close()
            raise CheckpointError(f"{Path(ckpt) / checkpoint.STATE_FILE}: {e}") from None
    try:
        yield buffer
    finally:
        buffer.close()


def checkpoint_samples(ckpt: Path, fields: list[str] | None = None) -> dict[str, np.ndarray]:
    """The replay buffer samples a checkpoint holds (its window, oldest first), read in place, read-only, from the
    segment log that either storage wrote (or from a checkpoint from before segment logs)."""
    with checkpoint_buffer(ckpt) as buffer:
        return buffer.stored(fields) if buffer.fields else {}


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


class RunnerHooks:
    """What a front end wants to hear about; the default hears nothing."""

    def phase(self, text: str) -> None:
        """A new phase started (collect, train, eval, save)."""

    def evaluated(self, label: str, result: dict[str, Any]) -> None:
        """An evaluation before training finished (`label`: "initial student" or "expert")."""

    def note(self, text: str) -> None:
        """Something the user should know once (e.g. no video: the env renders no frames)."""

    def iteration_done(self, iteration: int, total: int, metrics: dict[str, float]) -> None:
        """Iteration `iteration` (1-based) of `total` finished with `metrics`."""


@dataclass
class RunResults:
    """What the run has measured so far; checkpointed with everything else."""

    student_init: dict[str, Any] | None = None
    expert: dict[str, Any] | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    env_steps: int = 0
    collections: int = 0
    """async: rollout collections started (each seeds its own episodes)"""


@dataclass
class SeedSamples:
    """A seed dataset as read for a new run (`assembly.seed_samples`), before it enters the buffer."""

    source: Path
    samples: dict[str, np.ndarray]
    """fields as the buffer stores them, one row a sample, episode after episode"""
    episodes: list[tuple[int, int]]
    """each episode's (first row, row after its last)"""


@dataclass
class Loaded:
    """A checkpoint read whole, before any of it is applied (a broken file leaves the run untouched)."""

    path: Path
    state: dict[str, Any]
    student: dict[str, Any]
    learner: dict[str, Any]
    buffer: dict[str, Any] | None
    """rows of a checkpoint from before segment logs (now the rows live in the log its state names)"""


class RunState:
    def __init__(self, cfg: Config, run_dir: Path, student: TrainablePolicy, hooks: RunnerHooks | None = None,
                 seed: SeedSamples | None = None):
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
            from dagger_cli.core.distributed_learner import DistributedLearner

            self.learner = DistributedLearner(student, cfg, total_steps)
        else:
            self.learner = Learner(student, cfg.actor, cfg.seed, total_steps)
        self.iteration = 0
        """iterations completed (= the version of the student's weights)"""
        self.results = RunResults()
        self.stop_requested = False
        """set (e.g. by a Ctrl-C handler) to stop cleanly after the current iteration"""
        self.resumed_from: int | None = None
        self.last_saved: int | None = None
        self.saved_evals = 0
        self.wall_start = time.perf_counter()
        self._said_no_video = False
        self.seed = seed
        """a new run's seed dataset, added to the buffer when the run starts"""
        self.seeded_from: Path | None = None
        """the seed dataset the buffer started from (its samples fixed the fields)"""
        self.sample_shapes: Callable[[], dict[str, tuple[int, ...]]] | None = None
        """the runner's: the shape of one sample of each field its collections store (`rollout.sample_shapes`), which
        a seed dataset must match before any warm-up step"""

    def _storage(self):
        """The buffer's storage as algorithm.replay_buffer says: RAM (checkpointed to `checkpoints/replay_buffer/`) or
        files under `RUN_DIR/replay_buffer/` or `path/<run>-<hash>/`."""
        rb = self.cfg.algorithm.replay_buffer
        if rb.storage == "memory":
            return MemoryStorage(rb.sample_window_size, self.checkpoint_root / REPLAY_BUFFER_DIR)
        if rb.path:
            tag = hashlib.sha1(str(self.run_dir.resolve()).encode()).hexdigest()[:8]
            return DiskStorage(rb.sample_window_size, Path(rb.path).expanduser() / f"{self.run_dir.name}-{tag}")
        return DiskStorage(rb.sample_window_size, self.run_dir / REPLAY_BUFFER_DIR)

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / CHECKPOINTS_DIR

    @property
    def finished(self) -> bool:
        return self.iteration >= self.cfg.runner.max_epochs

    # DATA AND TRAINING
    def add(self, trajectories: list[dict], fit: bool = True) -> None:
        """Labelled trajectories into the buffer; a student without normalisation stats (a new task) takes them
        from the expert-labelled data stored so far, i.e. the first iteration's (`TrainablePolicy.fit_norm_stats`).
        `fit=False`: not yet (async mode fits once the whole first iteration is in, `fit_norm_stats`)."""
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
        return self.buffer.size >= self.cfg.algorithm.replay_buffer.min_buffer_size

    def train(self) -> dict[str, float]:
        """One learner iteration: `actor.update_epoch` optimizer steps."""
        return self.learner.train(self.buffer, self.cfg.actor.update_epoch)

    def buffer_metrics(self) -> dict[str, float]:
        return {
            "train/replay_buffer/num_trajectories": self.buffer.num_trajectories,
            "train/replay_buffer/total_samples": self.buffer.total_samples,
            "train/replay_buffer/cache_size": self.buffer.size,
        }

    # EVALUATION
    def eval_due(self) -> bool:
        """Student-only evaluation is due every runner.val_check_interval iterations and after the last."""
        interval = self.cfg.runner.val_check_interval
        return self.finished or (interval > 0 and self.iteration % interval == 0)

    def keep_videos(self, result, label: str) -> None:
        """The evaluation's videos under `RUN_DIR/videos/<label>/` (label: the iteration, or `expert`); an env that
        renders nothing is said once."""
        if result.no_video and not self._said_no_video:
            self.hooks.note("runner.eval_video_episodes: this env renders no frames; no video is recorded")
            self._said_no_video = True
        save_videos(result, self.run_dir / VIDEOS_DIR / label)

    def record_eval(self, iteration: int, result: dict[str, Any]) -> dict[str, float]:
        """The student's evaluation after `iteration`; returns its metrics."""
        self.results.evals.append({"iteration": iteration, **result})
        return eval_row("eval", result)

    def start(self, tensorboard: bool) -> MetricsLogger:
        """Makes the buffer's directory (a disk that cannot be written fails here, before any episode) and holds the
        GPUs of data-parallel learner ranks (too few is one line here), then opens the run's metrics sinks, cut back
        to the checkpoint on resume; a new run logs its config first."""
        self.buffer.storage.prepare()
        reserve = getattr(self.learner, "reserve", None)
        if reserve is not None:  # data-parallel ranks on GPUs: enough free ones, before any step
            reserve()
        if self.resumed_from is None and self.seed is not None:
            self.load_seed_dataset(self.seed)
        metrics = MetricsLogger(self.run_dir, resume_step=self.resumed_from, tensorboard=tensorboard)
        if self.resumed_from is None:
            metrics.add_text("config", "```\n" + self.cfg.to_yaml() + "\n```")
        return metrics

    # CHECKPOINT
    def save(self) -> Path:
        """A checkpoint of everything (atomic), then the summary of what it holds."""
        self.hooks.phase("saving checkpoint")
        learner_tensors, learner_meta = self.learner.state_dict()
        learner_tensors["rng/torch"] = torch.get_rng_state()
        buffer_meta = self.buffer.state_dict()
        if buffer_meta["storage"]:
            buffer_meta["storage"]["log"] = self._relative(buffer_meta["storage"]["log"])
        state = {
            "beta": self.beta(max(0, self.iteration - 1)),
            "next_beta": self.beta(self.iteration),
            "policy_version": self.iteration,
            "learner": learner_meta,
            "replay_buffer": buffer_meta,
            "results": self.results.__dict__,
        }
        path = checkpoint.save_checkpoint(
            self.checkpoint_root,
            self.iteration,
            torch_tensors={STUDENT: self.student.state_dict(), LEARNER: learner_tensors},
            numpy_arrays={},
            state=state,
            keep=self.cfg.runner.keep_checkpoints,
        )
        self.buffer.prune(self._kept_segments())
        self.last_saved = self.iteration
        self.saved_evals = len(self.results.evals)
        self.write_summary("finished" if self.finished else "running")
        return path

    def _relative(self, path: str) -> str:
        """A log path inside the run dir is saved relative to it, so that a moved run dir still resumes."""
        try:
            return str(Path(path).resolve().relative_to(self.run_dir.resolve()))
        except ValueError:
            return str(Path(path).resolve())

    def _kept_segments(self) -> set[str]:
        """Segments of the buffer's log that a kept checkpoint names (the others may be deleted)."""
        names: set[str] = set()
        for ckpt in checkpoint.list_checkpoints(self.checkpoint_root):
            try:
                storage = checkpoint.read_state(ckpt).get("replay_buffer", {}).get("storage") or {}
            except CheckpointError:
                continue
            names.update(m["name"] for m in storage.get("segments", []))
        return names

    @staticmethod
    def read(ckpt: Path) -> Loaded:
        """Reads every file of a checkpoint (the buffer's rows are read by `restore`); any broken one is a
        CheckpointError naming it."""
        state = checkpoint.read_state(ckpt)
        legacy, buffer = None, buffer_meta(state, Path(ckpt).parent.parent)
        if "storage" not in buffer:  # before segment logs: the rows in the checkpoint
            legacy = checkpoint.read_tensors(ckpt, LEGACY_BUFFER_ROWS, "np")
        elif buffer["storage"]:
            log = SegmentLog(Path(buffer["storage"]["log"]), ReplayBuffer.specs_of(buffer))
            try:
                log.verify(buffer["storage"]["segments"])
            except DaggerError as e:
                raise CheckpointError(f"{Path(ckpt) / checkpoint.STATE_FILE}: {e}") from None
        return Loaded(
            Path(ckpt),
            state,
            checkpoint.read_tensors(ckpt, STUDENT),
            checkpoint.read_tensors(ckpt, LEARNER),
            legacy,
        )

    def restore(self, loaded: Loaded | Path) -> None:
        """Continues from a checkpoint: the next iteration is its iteration, with its beta."""
        if not isinstance(loaded, Loaded):
            loaded = self.read(loaded)
        state = loaded.state
        self.student.load_state_dict(loaded.student)
        learner = dict(loaded.learner)
        torch.set_rng_state(learner.pop("rng/torch"))
        self.learner.load_state_dict(learner, state["learner"])
        try:
            self.buffer.load_state_dict(buffer_meta(state, self.run_dir), loaded.buffer)
        except (DaggerError, OSError, ValueError) as e:
            raise CheckpointError(f"{loaded.path}: its replay buffer cannot be restored ({e})") from None
        self.buffer.prune(self._kept_segments())
        if isinstance(self.buffer.storage, DiskStorage) and self.buffer.fields:
            self.buffer.storage.check_space(resuming=True)  # a new window on top of the kept checkpoints' rows
        self.results = RunResults(**state["results"])
        self.iteration = int(state["iteration"])
        self.resumed_from = self.last_saved = self.iteration
        self.saved_evals = len(self.results.evals)

    def close(self) -> None:
        """Ends what the run holds open: learner ranks, the buffer's files."""
        self.learner.close()
        self.buffer.close()

    # SUMMARY
    def summary(self, status: str | None = None) -> dict[str, Any]:
        res = self.results
        final = res.evals[-1] if res.evals else None
        if status is None:
            status = "finished" if self.finished else "stopped"
        return {
            "preset": self.cfg.name,
            "seed": self.cfg.seed,
            "run_dir": str(self.run_dir),
            "status": status,
            "iterations": self.iteration,
            "max_epochs": self.cfg.runner.max_epochs,
            "student_init_sr": res.student_init["success_once"] if res.student_init else None,
            "expert_sr": res.expert["success_once"] if res.expert else None,
            "student_final_sr": final["success_once"] if final else None,
            "student_final_success_at_end": final["success_at_end"] if final else None,
            "student_final_ci95": final["success_once_ci95"] if final else None,
            "student_final_iteration": final["iteration"] if final else None,
            "student_final_tasks": final.get("tasks") if final else None,
            "eval_episodes": final["episodes"] if final else None,
            "train_time_s": res.train_time_s,
            "wall_time_s": time.perf_counter() - self.wall_start,
            "env_steps": res.env_steps,
            **process.identity(),  # the writer: a reader tells a killed run (`running`, its process gone) by it
        }

    def write_summary(self, status: str | None = None) -> dict[str, Any]:
        """`summary.json`: `running` with each checkpoint of a run under way (or killed: `run_dir.read_summary` says
        `died` when the writer's process is gone), `stopped` after a clean stop, `finished` after the last
        iteration."""
        summary = self.summary(status)
        write_summary(self.run_dir, summary)
        return summary
