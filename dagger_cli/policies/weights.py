"""Loading policy weights from files a user points at: safetensors, or RLinf's `full_weights.pt` (weights only)."""

from __future__ import annotations

from pathlib import Path

import torch

from dagger_cli.core.errors import CheckpointError

_DIR_CANDIDATES = (
    "student.safetensors",
    "model.safetensors",
    "model_state_dict/full_weights.pt",
    "actor/model_state_dict/full_weights.pt",
)
_IGNORED_PREFIXES = ("value_head.",)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.")


def resolve_weights_file(path: str | Path) -> Path:
    """A weights file, or the first known weights file inside a directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in _DIR_CANDIDATES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no weights file inside (looked for {', '.join(_DIR_CANDIDATES)})")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads tensors from a .safetensors file or a torch state-dict file (never unpickling arbitrary objects)."""
    path = resolve_weights_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot load as a weights-only torch file ({first})") from None
    if isinstance(state, dict) and "model_state_dict" in state and isinstance(state["model_state_dict"], dict):
        state = state["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return state


def check_state_dict(expected: dict, state: dict, source, what: str) -> None:
    """`state` must hold exactly `expected`'s keys with its shapes; the first difference is a CheckpointError."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(f"{source}: {what} weights lack key {missing[0]!r} ({len(missing)} missing)")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key {unexpected[0]!r} for the {what} model ({len(unexpected)} extra)")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, the {what} model needs {tuple(tensor.shape)}"
            )


def load_into(module: torch.nn.Module, path: str | Path, what: str) -> None:
    """Loads `path` into `module` strictly (RLinf value-head keys and wrapper prefixes aside)."""
    file = resolve_weights_file(path)
    state = {}
    for key, value in read_state_dict(file).items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if not key.startswith(_IGNORED_PREFIXES):
            state[key] = value
    check_state_dict(module.state_dict(), state, file, what)
    module.load_state_dict(state)
