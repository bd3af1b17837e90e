"""The run directory: its layout (written down here once), its making and resuming, and what a checkpoint path means.

    runs/<preset>/<YYYYmmdd-HHMMSS>[-N]/   a run dir (`default_run_dir`; `--run-dir` names another)
      config.yaml           the resolved config (`run_config`; a resume's `--set` rewrites it, `record_resume`)
      meta.json             dagger and torch versions, argv, mode (sync or async), host, pid; `resumes`: each
                            resume's time and changed keys
      metrics.jsonl         one JSON row per iteration, step 0 before training (`metrics.MetricsLogger`)
      tb/                   the same rows for TensorBoard (runner.logger.logger_backends: tensorboard)
      wandb.json            the W&B run's id, project, entity and name (backend wandb), which a resume continues
      wandb/                W&B's own files (unless WANDB_DIR is set)
      summary.json          the run so far, written with every checkpoint and at the end (`read_summary`)
      checkpoints/iter_000007/     after 7 iterations, renamed into place whole (`checkpoint`):
        student.safetensors        the student's state dict (a π₀'s with its norm stats)
        learner.safetensors        optimizer, LR schedule, torch RNG
        state.json                 iteration, beta, results, the learner's state, the replay buffer's (the
                                   segments of its log that hold its window)
      checkpoints/replay_buffer/   the buffer's segment log (algorithm.replay_buffer.storage: memory)
      replay_buffer/               the same (storage: disk; or under algorithm.replay_buffer.path)
      videos/<label>/*.mp4         filmed evaluation episodes (label: the iteration, or `expert`)
      export/<format>/             `dagger export`'s default output

Every file here is written whole or not at all (`files.write_*`; checkpoints by their own rename protocol).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagger_cli import __version__
from dagger_cli.core.io import checkpoint, process
from dagger_cli.core.config import Config
from dagger_cli.core.config_loader import drop_other_adapters_keys, load_config, read_yaml
from dagger_cli.core.errors import UsageError
from dagger_cli.core.io.files import write_json, write_text

CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
WANDB_RUN_FILE = "wandb.json"
SUMMARY_FILE = "summary.json"
CHECKPOINTS_DIR = "checkpoints"
REPLAY_BUFFER_DIR = "replay_buffer"
VIDEOS_DIR = "videos"
EXPORT_DIR = "export"
STUDENT, LEARNER = "student", "learner"
"""a checkpoint's tensor groups (`<name>.safetensors`)"""
LEGACY_BUFFER_ROWS = "replay_buffer"
"""the tensor group of a checkpoint from before segment logs, which held the buffer's rows itself"""


# MAKING ONE
def default_run_dir(cfg: Config, root: Path = Path("runs")) -> Path:
    """`runs/<preset>/<YYYYmmdd-HHMMSS>`, made here: a second run started in the same second (or the same
    directory claimed by another process) gets `-2`, `-3`, ..."""
    base = Path(root) / cfg.name / time.strftime("%Y%m%d-%H%M%S")
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()  # atomic: exactly one process claims each name
            return path
        except FileExistsError:
            continue
    raise UsageError(f"{base.parent}: no free run dir name for {base.name}; pass --run-dir")


def ensure_new_run_dir(path: Path) -> None:
    """Refuses a run dir that exists and is not empty (nothing of an earlier run gets overwritten)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{path}: run dir exists and is not empty; pick another --run-dir or --resume it")


def create_run_dir(path: Path, cfg: Config, argv: list[str], mode: str = "sync") -> Path:
    """Makes a new run dir holding the resolved config and meta.json."""
    import torch

    path = Path(path)
    ensure_new_run_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    write_text(path / CONFIG_FILE, cfg.to_yaml())
    meta = {
        "dagger_version": __version__,
        "argv": argv,
        "mode": mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pid": os.getpid(),
    }
    write_json(path / META_FILE, meta)
    return path


# READING ONE
def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def run_config(run_dir: Path, overrides: list[str] = ()) -> Config:
    """The config saved in a run dir, with optional `--set` overrides."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run dir")
    if not is_run_dir(run_dir):
        raise UsageError(f"{run_dir}: not a dagger run dir (no {CONFIG_FILE})")
    return load_config(base=drop_other_adapters_keys(read_yaml(run_dir / CONFIG_FILE)), overrides=list(overrides))


def run_mode(run_dir: Path) -> str:
    """'sync' or 'async', as the run was started."""
    return _read_json(Path(run_dir) / META_FILE).get("mode", "sync")


def checkpoints_of(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    return checkpoint.list_checkpoints(Path(run_dir) / CHECKPOINTS_DIR)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(Path(run_dir) / SUMMARY_FILE, summary)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """`summary.json`, or None where there is none (or it is unreadable). A `running` summary whose writer's process
    is gone (killed, crashed) says `died`; `process` says what was found: `alive`, `gone`, or `unknown` (written on
    another host, or before summaries named their writer)."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if summary.get("status") == "running":
        summary["process"] = process.liveness(summary)
        if summary["process"] == "gone":
            summary["status"] = "died"
    return summary


# RESUMING ONE
RESUMABLE_KEYS = ("runner.max_epochs", "runner.val_check_interval", "runner.save_interval", "runner.keep_checkpoints",
                  "runner.device", "runner.logger.", "cluster.")
"""what `--resume RUN --set` may change: how long the run goes on, how often it evaluates and saves, where it runs
and where its metrics go; everything else shaped the state the checkpoint holds (buffer, optimizer, schedules, data)"""


def resume_config(run_dir: Path, overrides: list[str]) -> tuple[Config, dict[str, Any]]:
    """The run's saved config with `--set` overrides that `RESUMABLE_KEYS` allows (any other is a UsageError), and
    the keys they change with their new values (for `record_resume`)."""
    from dagger_cli.core.config import all_keys

    saved = run_config(run_dir)
    cfg = run_config(run_dir, overrides)
    before, after = _flat(saved.to_dict()), _flat(cfg.to_dict())
    changed = [k for k in all_keys(cfg) if before.get(k) != after.get(k)]
    refused = [k for k in changed if not k.startswith(RESUMABLE_KEYS)]
    if refused:
        allowed = ", ".join(k.rstrip(".") + ("*" if k.endswith(".") else "") for k in RESUMABLE_KEYS)
        raise UsageError(f"--set {refused[0]}: cannot change on --resume (the checkpoint was made with "
                         f"{before.get(refused[0])!r}); only {allowed} can")
    return cfg, {k: after.get(k) for k in changed}


def record_resume(run_dir: Path, cfg: Config, changed: dict[str, Any]) -> None:
    """Saves a resume's changes into the run dir (config.yaml, and meta.json's `resumes`), so that the next resume
    and `dagger report` see them."""
    if changed:
        write_text(Path(run_dir) / CONFIG_FILE, cfg.to_yaml())
        meta = _read_json(Path(run_dir) / META_FILE)
        meta.setdefault("resumes", []).append({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "set": changed})
        write_json(Path(run_dir) / META_FILE, meta)


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        out.update(_flat(value, dotted) if isinstance(value, dict) else {dotted: value})
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# WHAT A PATH MEANS
@dataclass(frozen=True)
class Located:
    """What a checkpoint path names."""

    weights: Path | None
    """the student of the checkpoint it names, else the path itself (a weights file or a model's directory, read as
    `policies.weights` says); None: a run dir without a checkpoint yet"""
    checkpoint: Path | None
    """the dagger checkpoint (`iter_*`) it names: itself, or a run dir's newest"""
    run_dir: Path | None
    """the run dir it is, or that holds the checkpoint it is"""


def locate(path: str | Path) -> Located:
    """The one rule for a path that names a checkpoint (`--ckpt`, `dagger export RUN`, `runner.ckpt_path`,
    `runner.expert_ckpt_path`, a model's `model_path`): a run dir means its newest complete checkpoint; a dagger
    checkpoint (`iter_*` with its state.json) means its student; anything else is weights (RLinf's, openpi's,
    LeRobot's, an export), whose reader says what is wrong with them."""
    path = Path(path).expanduser()
    if path.is_dir() and is_run_dir(path):
        found = checkpoints_of(path)
        ckpt = found[-1] if found else None
        return Located(checkpoint.tensors_file(ckpt, STUDENT) if ckpt else None, ckpt, path)
    if path.is_dir() and (path / checkpoint.STATE_FILE).is_file():
        run = path.parent.parent
        return Located(checkpoint.tensors_file(path, STUDENT), path, run if is_run_dir(run) else None)
    return Located(path, None, None)
