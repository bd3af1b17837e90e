"""Files written whole or not at all, and tensor files read with one message for one problem.

Every file dagger writes outside a checkpoint's temp directory (config.yaml, meta.json, summary.json, a truncated
metrics.jsonl, an export's weights and JSON) goes through `write_text`, `write_json` or `write_tensors`: a temp file
in the same directory (`.<name>.tmp-<pid>`), flushed and fsynced, then `os.replace`d over the target, so a reader
sees the old file or the new one, never half of one. Every `.safetensors` file dagger reads (a checkpoint's
student, learner and legacy buffer rows, a weights file, LeRobot's normalisers) goes through `read_tensors`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from dagger_cli.core.errors import CheckpointError


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temp)` fills a temp file beside `path`, which then replaces `path` once it is on the disk."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2))


def write_tensors(path: Path, tensors: dict[str, Any]) -> None:
    """Torch tensors as one safetensors file (contiguous, on the CPU), marked `format: pt` as transformers' and
    LeRobot's loaders expect of torch weights."""
    from safetensors.torch import save_file

    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _write_atomic(path, lambda tmp: save_file(cpu, str(tmp), metadata={"format": "pt"}))


def read_tensors(path: Path, framework: str = "pt") -> dict[str, Any]:
    """Every tensor of a `.safetensors` file, as torch tensors ("pt") or numpy arrays ("np"); a file that does not
    read is one CheckpointError line naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework=framework) as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
