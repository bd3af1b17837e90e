"""Run directories and the glue that turns a Config into live components (used by train, eval and check)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagger_cli import __version__
from dagger_cli.core import checkpoint, process
from dagger_cli.core.config import Config
from dagger_cli.core.config_loader import load_config, read_yaml
from dagger_cli.core.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from dagger_cli.core.run_state import Loaded

CONFIG_FILE = "config.yaml"


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
    path = Path(path)
    ensure_new_run_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(cfg.to_yaml())
    import torch

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
    checkpoint.write_json(path / "meta.json", meta)
    return path


def validate_env(cfg: Config, env) -> None:
    """The env's observation and action sizes must be those the models were configured for."""
    from dagger_cli.core.registry import SCRIPTED, policy_adapter

    for key, model in (("actor.model", cfg.actor.model), ("rollout.expert_model", cfg.rollout.expert_model)):
        if model.model_type == SCRIPTED:
            continue
        if env.action_dim != model.action_dim:
            raise ConfigError(f"{key}.action_dim is {model.action_dim} but {cfg.env.task} actions have {env.action_dim}")
        fits_env = policy_adapter(model.model_type, f"{key}.model_type").fits_env
        if fits_env is not None:
            fits_env(model, env, key)


def build_rollout_components(cfg: Config, worker_id: int = 0):
    """(env, student, expert) for one rollout worker of the async pipeline; the student's weights come later."""
    import torch

    from dagger_cli.envs import make_vec_env
    from dagger_cli.policies import build_expert, build_student, resolve_device

    torch.manual_seed(cfg.seed + worker_id)
    device = resolve_device(cfg.runner.device)
    student, expert = build_student(cfg, device), build_expert(cfg, device)
    env = make_vec_env(cfg.env, cfg.actor.model.num_action_chunks)
    try:
        validate_env(cfg, env)
    except Exception:
        env.close()
        raise
    return env, student, expert


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def run_config(run_dir: Path, overrides: list[str] = ()) -> Config:
    """The config saved in a run dir, with optional `--set` overrides."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run dir")
    if not is_run_dir(run_dir):
        raise UsageError(f"{run_dir}: not a dagger run dir (no {CONFIG_FILE})")
    from dagger_cli.core.config_loader import drop_other_adapters_keys

    return load_config(base=drop_other_adapters_keys(read_yaml(run_dir / CONFIG_FILE)), overrides=list(overrides))


RESUMABLE_KEYS = ("runner.max_epochs", "runner.val_check_interval", "runner.save_interval", "runner.keep_checkpoints",
                  "runner.device", "cluster.")
"""what `--resume RUN --set` may change: how long the run goes on, how often it evaluates and saves, and where it
runs; everything else shaped the state the checkpoint holds (buffer, optimizer, schedules, data)"""


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
        _write_text_atomic(Path(run_dir) / CONFIG_FILE, cfg.to_yaml())
        meta = _read_json(Path(run_dir) / "meta.json")
        meta.setdefault("resumes", []).append({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "set": changed})
        checkpoint.write_json(Path(run_dir) / "meta.json", meta)


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


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoint.list_checkpoints(Path(run_dir) / "checkpoints")
    return found[-1] if found else None


def resume_checkpoint(run_dir: Path, warn) -> "Loaded":
    """The newest kept checkpoint that reads whole; each broken newer one is one `warn` line naming the bad file.
    None intact is one UsageError line."""
    from dagger_cli.core.errors import CheckpointError
    from dagger_cli.core.run_state import RunState

    found = checkpoint.list_checkpoints(Path(run_dir) / "checkpoints")
    if not found:
        raise UsageError(f"--resume {run_dir}: no checkpoint to resume from")
    problems = []
    for ckpt in reversed(found):
        try:
            return RunState.read(ckpt)
        except CheckpointError as e:
            problems.append(str(e))
            warn(f"{e}; trying the checkpoint before it")
    raise UsageError(f"--resume {run_dir}: no intact checkpoint ({len(found)} kept, each broken; newest: {problems[0]})")


def run_mode(run_dir: Path) -> str:
    """'sync' or 'async', as the run was started."""
    try:
        return json.loads((Path(run_dir) / "meta.json").read_text()).get("mode", "sync")
    except (OSError, json.JSONDecodeError):
        return "sync"


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """`summary.json`, or None where there is none (or it is unreadable). A `running` summary whose writer's process
    is gone (killed, crashed) says `died`; `process` says what was found: `alive`, `gone`, or `unknown` (written on
    another host, or before summaries named their writer)."""
    path = Path(run_dir) / checkpoint.SUMMARY_FILE
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


@dataclass
class StudentSource:
    """Where `dagger eval --ckpt` finds the config and the student weights."""

    config: Config
    weights: Path
    checkpoint_dir: Path | None


def resolve_student(ckpt: Path, preset: str | None, overrides: list[str]) -> StudentSource:
    """A run dir, a checkpoint dir (iter_*), or a weights file/dir (with --preset) -> config + weights."""
    ckpt = Path(ckpt).expanduser()
    if not ckpt.exists():
        raise UsageError(f"--ckpt {ckpt}: no such file or directory")
    run_dir = ckpt_dir = None
    if ckpt.is_dir() and is_run_dir(ckpt):
        run_dir, ckpt_dir = ckpt, latest_checkpoint(ckpt)
        if ckpt_dir is None:
            raise UsageError(f"--ckpt {ckpt}: the run has no checkpoint yet")
    elif ckpt.is_dir() and (ckpt / checkpoint.STATE_FILE).is_file():
        ckpt_dir = ckpt
        candidate = ckpt.parent.parent
        run_dir = candidate if is_run_dir(candidate) else None
    if preset is not None:
        cfg = load_config(preset, overrides=list(overrides))
    elif run_dir is not None:
        cfg = run_config(run_dir, overrides)
    else:
        raise UsageError(f"--ckpt {ckpt}: not inside a dagger run dir; say which preset it belongs to with --preset")
    weights = ckpt_dir / "student.safetensors" if ckpt_dir is not None else ckpt
    return StudentSource(cfg, weights, ckpt_dir)
