"""A run's checkpoints: everything a resume needs (the student, the learner with the torch RNG, the replay buffer's
state, beta, the progress and the evaluations) saved through the crash-safe `checkpoint` protocol, read back whole
before any of it is applied, and restored; the buffer's log segments that kept checkpoints name; and a checkpoint's
replay buffer read in place (`dagger export`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dagger_cli.core.io import checkpoint
from dagger_cli.core.engine.beta import BetaSchedule
from dagger_cli.core.config import Config
from dagger_cli.core.errors import CheckpointError, DaggerError
from dagger_cli.core.protocols import RunnerHooks, TrainablePolicy
from dagger_cli.core.engine.replay_buffer import ReplayBuffer
from dagger_cli.core.engine.replay_storage import DiskStorage, ReadOnlyStorage, SegmentLog
from dagger_cli.core.io.run_dir import CHECKPOINTS_DIR, LEARNER, LEGACY_BUFFER_ROWS, STUDENT
from dagger_cli.core.engine.run_evaluation import RunEvaluation
from dagger_cli.core.engine.run_progress import RunProgress


@dataclass
class Loaded:
    """A checkpoint read whole, before any of it is applied (a broken file leaves the run untouched)."""

    path: Path
    state: dict[str, Any]
    student: dict[str, Any]
    learner: dict[str, Any]
    buffer: dict[str, Any] | None
    """rows of a checkpoint from before segment logs (now the rows live in the log its state names)"""


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


class RunCheckpoint:
    def __init__(self, cfg: Config, run_dir: Path, student: TrainablePolicy, learner, buffer: ReplayBuffer,
                 beta: BetaSchedule, progress: RunProgress, evaluation: RunEvaluation, hooks: RunnerHooks):
        self.cfg, self.run_dir, self.hooks = cfg, Path(run_dir), hooks
        self.student, self.learner, self.buffer, self.beta = student, learner, buffer, beta
        self.progress, self.evaluation = progress, evaluation
        self.last_saved: int | None = None
        """the iteration of the newest checkpoint this run saved or resumed from"""
        self.saved_evals = 0
        """the student evaluations that checkpoint holds"""

    @property
    def root(self) -> Path:
        return self.run_dir / CHECKPOINTS_DIR

    @property
    def holds_everything(self) -> bool:
        """The newest checkpoint holds the current iteration and every evaluation recorded so far."""
        return (self.last_saved, self.saved_evals) == (self.progress.iteration, len(self.evaluation.evals))

    def save(self) -> Path:
        """A checkpoint of everything, renamed into place whole; the buffer's segments no kept checkpoint names are
        then deleted."""
        self.hooks.phase("saving checkpoint")
        iteration = self.progress.iteration
        learner_tensors, learner_meta = self.learner.state_dict()
        learner_tensors["rng/torch"] = torch.get_rng_state()
        buffer_state = self.buffer.state_dict()
        if buffer_state["storage"]:
            buffer_state["storage"]["log"] = self._relative(buffer_state["storage"]["log"])
        state = {
            "beta": self.beta(max(0, iteration - 1)),
            "next_beta": self.beta(iteration),
            "policy_version": iteration,
            "learner": learner_meta,
            "replay_buffer": buffer_state,
            "results": {**self.evaluation.state_dict(), **self.progress.state_dict()},
        }
        path = checkpoint.save_checkpoint(
            self.root,
            iteration,
            torch_tensors={STUDENT: self.student.state_dict(), LEARNER: learner_tensors},
            numpy_arrays={},
            state=state,
            keep=self.cfg.runner.keep_checkpoints,
        )
        self.buffer.prune(self._kept_segments())
        self.last_saved = iteration
        self.saved_evals = len(self.evaluation.evals)
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
        for ckpt in checkpoint.list_checkpoints(self.root):
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
        self.evaluation.restore(state["results"])
        self.progress.restore(state["iteration"], state["results"])
        self.last_saved = self.progress.iteration
        self.saved_evals = len(self.evaluation.evals)
