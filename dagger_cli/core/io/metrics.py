"""Metrics to `<run>/metrics.jsonl` (one JSON object per line), and as `runner.logger.logger_backends` says to
TensorBoard (`<run>/tb`) and Weights & Biases (`WandbSink`).

The x-axis is the DAgger iteration (1-based: metrics of iteration k are logged at step k+1; step 0 holds the
evaluations before training). On resume, entries past the checkpoint are dropped from metrics.jsonl and TensorBoard,
so the curves stay monotonic and carry no duplicate points; W&B cannot drop points (see `WandbSink`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from dagger_cli.core.errors import DaggerError
from dagger_cli.core.io.files import write_json, write_text
from dagger_cli.core.io.run_dir import METRICS_FILE, TENSORBOARD_DIR, WANDB_RUN_FILE

WANDB_MISSING = "runner.logger.logger_backends: wandb is not installed; pip install 'dagger-cli[wandb]'"


def require_backends(backends: list[str]) -> None:
    """The packages the selected backends need import (a run calls this before it builds anything: a missing one is
    one line, not a traceback after the simulator started)."""
    if "wandb" in backends:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise DaggerError(WANDB_MISSING) from None


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics row, NaN left out (what TensorBoard and W&B get of it)."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}


class MetricsLogger:
    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True,
                 wandb: WandbSink | None = None):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(run_dir) / METRICS_FILE
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        self._file = open(self.path, "a")
        self._writer = None
        self._wandb = wandb
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge)

    def _truncate(self, resume_step: int) -> None:
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= resume_step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a kill
        write_text(self.path, "".join(line + "\n" for line in kept))

    def log(self, step: int, metrics: dict[str, float], videos: dict[str, list[Path]] | None = None) -> None:
        """A row of metrics at `step`; `videos` (metric name -> mp4 files: an evaluation's filmed episodes) go to
        W&B only (metrics.jsonl and TensorBoard leave them in RUN_DIR/videos/)."""
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **clean}) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in scalars(metrics).items():
                self._writer.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(step, metrics, videos or {})

    def add_text(self, tag: str, text: str) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        if self._wandb is not None:
            self._wandb.close()


def new_run_id() -> str:
    """A W&B run id: 8 random lower-case letters and digits (as W&B makes its own)."""
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class WandbSink:
    """The run's Weights & Biases run: the rows' numbers under their metrics.jsonl names at their steps, evaluation
    videos as `wandb.Video`s, the resolved config as the W&B config.

    The W&B run id is kept in `RUN_DIR/wandb.json`, so `--resume` continues the same W&B run (`resume="allow"`).
    W&B cannot delete logged points, and its steps only go forward: where the run was killed after its checkpoint,
    W&B already holds the steps the resumed run repeats, and keeps them as first logged (it would drop the repeats
    itself, with a warning each); the resumed run sends from W&B's next step on and says so once. metrics.jsonl and
    TensorBoard hold the resumed run's values of those steps (bitwise the same where the env is deterministic). An
    offline run (WANDB_MODE=offline) does not know what the server holds: it logs every step past the checkpoint
    (`wandb sync` then applies W&B's own rule). W&B's files go to WANDB_DIR if set, else RUN_DIR/wandb/."""

    def __init__(self, run_dir: Path, cfg, resume_step: int | None = None,
                 note: Callable[[str], None] = lambda text: None):
        try:
            import wandb
        except ImportError:
            raise DaggerError(WANDB_MISSING) from None
        self._wandb = wandb
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = cfg.runner.logger
        path = run_dir / WANDB_RUN_FILE
        saved = json.loads(path.read_text()) if path.exists() else None
        name = settings.experiment_name or f"{cfg.name}/{run_dir.name}"
        run_id = saved["id"] if saved else new_run_id()
        if not saved:  # before the run starts: a kill from here on still resumes this id
            write_json(path, {"id": run_id, "project": settings.project_name, "entity": settings.wandb_entity,
                              "name": name})
        where = os.environ.get("WANDB_DIR") or str(run_dir)  # read here: W&B reads its environment once a process
        try:
            self.run = wandb.init(id=run_id, resume="allow", project=settings.project_name,
                                  entity=settings.wandb_entity, name=name, config=cfg.to_dict(), dir=where)
        except Exception as e:  # no account logged in, no network, a project it may not write to
            line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DaggerError(f"runner.logger.logger_backends: wandb could not start run {run_id} ({line}); "
                              "`wandb login`, or WANDB_MODE=offline and `wandb sync` later") from None
        self.next_step = int(self.run.step)
        """the first step W&B does not hold yet (0 for a new run, and offline)"""
        if resume_step is not None and self.next_step > resume_step + 1:
            note(f"W&B run {run_id} already holds steps {resume_step + 1}-{self.next_step - 1}, logged after the "
                 f"checkpoint before the run stopped; W&B cannot delete points, so they stay as they were and this "
                 f"run sends steps from {self.next_step} on (metrics.jsonl and TensorBoard hold its own)")

    def log(self, step: int, metrics: dict[str, Any], videos: dict[str, list[Path]]) -> None:
        if step < self.next_step:
            return
        data: dict[str, Any] = dict(scalars(metrics))
        for key, paths in videos.items():
            if paths:
                data[key] = [self._wandb.Video(str(p), caption=Path(p).stem) for p in paths]
        if data:
            self.run.log(data, step=step)

    def close(self) -> None:
        self.run.finish()
