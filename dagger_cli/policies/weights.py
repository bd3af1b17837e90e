"""Weight files users point at, for every policy adapter and `dagger fetch`: which files a path names, and reading
them (safetensors, or torch state dicts such as RLinf's `full_weights.pt`, read weights-only, never unpickled).

A path means what `run_dir.locate` says (a run dir: its newest checkpoint's student; a checkpoint: its student);
then a file is itself, and a directory means its top-level `*.safetensors` (sorted and merged: sharded checkpoints,
as openpi and RLinf read them; LeRobot's `policy_{pre,post}processor*` normaliser files are not weights), else
RLinf's `model_state_dict/full_weights.pt` or `actor/model_state_dict/full_weights.pt`.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from dagger_cli.core.errors import CheckpointError

if TYPE_CHECKING:
    import torch

RLINF_WEIGHT_FILES = ("full_weights.pt", "model_state_dict/full_weights.pt", "actor/model_state_dict/full_weights.pt")
"""RLinf's FSDP checkpoint, named by its `model_state_dict/`, `actor/` or `global_step_N/` directory"""
_IGNORED_PREFIXES = ("value_head.",)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.")


NOT_WEIGHTS = ("policy_preprocessor", "policy_postprocessor")
"""safetensors files beside the weights that hold no weights (LeRobot's normalisers)"""


def weight_files_among(names: list[str]) -> list[str]:
    """The weight files among a directory's `/`-separated relative paths, by the module's rule (empty: none)."""
    shards = sorted(n for n in names if "/" not in n and n.endswith(".safetensors") and not n.startswith(NOT_WEIGHTS))
    return shards or [f for f in RLINF_WEIGHT_FILES if f in names][:1]


def weight_files(path: str | Path) -> list[Path]:
    """The weight files `path` names, by the module's rule; none is a CheckpointError naming the path."""
    from dagger_cli.core.io.run_dir import locate

    given = Path(path).expanduser()
    if given.is_file():
        return [given]
    path = locate(given).weights
    if path is None:
        raise CheckpointError(f"{given}: the run has no checkpoint yet")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint file or directory")
    names = [p.name for p in path.glob("*.safetensors")] + [f for f in RLINF_WEIGHT_FILES if (path / f).is_file()]
    found = weight_files_among(names)
    if not found:
        raise CheckpointError(
            f"{path}: no weights file inside (looked for *.safetensors and {', '.join(RLINF_WEIGHT_FILES)})"
        )
    return [path / f for f in found]


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the weight files `path` names, merged."""
    return _merged(weight_files(path))


def _merged(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_state_dict(file))
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of one .safetensors file, or of a torch file holding only tensors (read with weights_only=True)."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from dagger_cli.core.io.files import read_tensors

        return read_tensors(path)
    try:
        with warnings.catch_warnings():  # torch's own advice on unsafe files is not ours to repeat
            warnings.simplefilter("ignore")
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise CheckpointError(
                f"{path}: not a weights-only checkpoint (it holds Python objects besides tensors, which dagger never "
                "unpickles); save the model's state dict with safetensors or torch.save(model.state_dict())"
            ) from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt or not a torch file)") from None
    except Exception as e:  # torch raises many types for corrupt files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({first})") from None
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


def load_into(module: "torch.nn.Module", path: str | Path, what: str) -> None:
    """Loads `path` into `module` strictly (RLinf value-head keys and wrapper prefixes aside)."""
    files = weight_files(path)
    source = files[0] if len(files) == 1 else Path(path)
    state = {}
    for key, value in _merged(files).items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if not key.startswith(_IGNORED_PREFIXES):
            state[key] = value
    check_state_dict(module.state_dict(), state, source, what)
    module.load_state_dict(state)
