"""Run checkpoints: tensors in safetensors, state in JSON, each checkpoint a directory renamed into place atomically.

What a checkpoint holds is in the run directory's layout (`run_dir`): `iter_000007/` (7 = completed iterations) with
one `<name>.safetensors` per tensor group and `state.json`, whose presence makes the checkpoint complete. A crash
mid-write leaves only a hidden `.iter_000007.tmp-*` directory, which is ignored and cleaned up by the next save.

Saving an iteration again (async's end-of-run save) swaps the directories in two renames, each after the new copy is
complete and on the disk: `iter_000007` -> `.iter_000007.old-<pid>`, then the temp dir -> `iter_000007`. A crash
between them leaves the old copy aside; `list_checkpoints` lists an aside copy whose `iter_*` is missing in its
place, and the next save renames it back. So a complete checkpoint of the iteration is on the disk at every instant.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dagger_cli.core.errors import CheckpointError
from dagger_cli.core.io.files import read_tensors as read_tensor_file
from dagger_cli.core.io.files import write_json

STATE_FILE = "state.json"
FORMAT_VERSION = 1


def checkpoint_dir(root: Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:06d}"


def _complete(path: Path) -> bool:
    return path.is_dir() and (path / STATE_FILE).is_file()


def _set_aside(root: Path) -> dict[str, Path]:
    """`iter_*` name -> its copy set aside by a re-save that did not finish (`.iter_*.old-*`; the newest if several)
    whose `iter_*` is not there complete."""
    aside: dict[str, Path] = {}
    for path in sorted(root.glob(".iter_*.old-*"), key=lambda p: p.stat().st_mtime_ns):
        name = path.name[1:].split(".old-")[0]
        if _complete(path) and not _complete(root / name):
            aside[name] = path
    return aside


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (with a copy set aside by an unfinished re-save in place of
    its missing `iter_*`)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = {p.name: p for p in root.glob("iter_*") if _complete(p)}
    found.update(_set_aside(root))
    return [found[name] for name in sorted(found)]


def _fsync_dir(path: Path, strict: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    root: Path,
    iteration: int,
    torch_tensors: dict[str, dict[str, Any]],
    numpy_arrays: dict[str, dict[str, np.ndarray]],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Writes one checkpoint: `torch_tensors[name]` -> `name.safetensors` (torch), `numpy_arrays[name]` likewise."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file as save_numpy
    from safetensors.torch import save_file as save_torch

    root = Path(root)
    if root.is_dir():
        for name, path in _set_aside(root).items():  # a re-save cut short: its old copy goes back in place
            if not (root / name).exists():
                os.replace(path, root / name)
    for stale in [*root.glob(".iter_*.tmp-*"), *root.glob(".iter_*.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    final = checkpoint_dir(root, iteration)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    try:
        if not root.is_dir():
            root.mkdir(parents=True)
            _fsync_dir(root.parent, strict=True)
        tmp.mkdir()
        for name, tensors in torch_tensors.items():
            save_torch({k: v.contiguous() for k, v in tensors.items()}, str(tensors_file(tmp, name)))
        for name, arrays in numpy_arrays.items():
            save_numpy({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tensors_file(tmp, name)))
        write_json(tmp / STATE_FILE, {"format": FORMAT_VERSION, "iteration": iteration, **state})
        for file in tmp.iterdir():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp, strict=True)  # its entries, before the rename makes it the checkpoint
    except (OSError, SafetensorError) as e:  # disk full, no permission: the kept checkpoints stay as they were
        shutil.rmtree(tmp, ignore_errors=True)
        kept = list_checkpoints(root)
        last = f"; the last checkpoint, {kept[-1]}, is intact" if kept else ""
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise CheckpointError(f"{final}: cannot write the checkpoint ({reason}){last}") from None
    replaced = root / f".{final.name}.old-{os.getpid()}"
    if final.exists():  # saved again (same iteration, newer results): see the module docstring
        os.replace(final, replaced)
    os.replace(tmp, final)
    _fsync_dir(root)
    shutil.rmtree(replaced, ignore_errors=True)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(ckpt: Path) -> dict[str, Any]:
    path = Path(ckpt) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; {ckpt} is not a dagger checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt JSON ({e})") from None
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {state.get('format')!r}")
    return state


def tensors_file(ckpt: Path, name: str) -> Path:
    return Path(ckpt) / f"{name}.safetensors"


def read_tensors(ckpt: Path, name: str, framework: str = "pt") -> dict[str, Any]:
    """Tensors of `<ckpt>/<name>.safetensors` as torch tensors ("pt") or numpy arrays ("np")."""
    path = tensors_file(ckpt, name)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the checkpoint")
    return read_tensor_file(path, framework)
