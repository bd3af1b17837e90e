"""π₀ and π0.5 checkpoints in openpi's PyTorch layout: weights, norm stats, and the key renaming across transformers
versions.

A checkpoint directory holds weights as `dagger_cli.policies.weights` finds them (`*.safetensors`, sorted and
merged; or RLinf's `full_weights.pt`, read weights-only), and `<asset_id>/norm_stats.json` (RLinf) or
`assets/<asset_id>/norm_stats.json` (openpi).

Key spellings accepted: LeRobot's (`pi0/lerobot.py`: every key under `model.`, `time_mlp_*` for `action_time_mlp_*`),
transformers ≤4.51 (`paligemma.language_model.model.*`), 4.52–4.57 as openpi saves them
(`paligemma.model.vision_tower.vision_model.*`), and 5.x (`paligemma.model.vision_tower.*`). The token embedding may
come as `paligemma.lm_head.weight` (what `safetensors.save_model` keeps of the tied pair) or as `embed_tokens`; the
action expert's `lm_head` is never used and may be absent. We save in openpi's own spelling.

π0.5 weights (openpi's `pi05=True`) have `time_mlp_{in,out}` and the action expert's `*layernorm.dense.*` /
`norm.dense.*` instead of `state_proj`, `action_time_mlp_*` and the expert's norm weights; loading one kind into the
other is a one-line error naming the checkpoint, a key that shows its kind, and the `pi0.pi05` key to set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dagger_cli.core.errors import CheckpointError
from dagger_cli.policies.weights import check_state_dict

_PWE = "paligemma_with_expert."
_EMBED = _PWE + "paligemma.model.language_model.embed_tokens.weight"
_LM_HEAD = _PWE + "paligemma.lm_head.weight"
_EXPERT_HEAD = _PWE + "gemma_expert.lm_head.weight"
_VISION = "paligemma.model.vision_tower."


def _rename(key: str, module_keys: set[str]) -> str:
    """One checkpoint key in the module's spelling (LeRobot's: under `model.`, the time MLP maybe `time_mlp_*`)."""
    if key.startswith("model.") and key not in module_keys:
        key = key[len("model."):]
    if key.startswith("time_mlp_") and key not in module_keys:
        key = "action_" + key
    key = key.replace("paligemma.language_model.model.", "paligemma.model.language_model.")
    key = key.replace("paligemma.language_model.lm_head.", "paligemma.lm_head.")
    for part in ("vision_tower.", "multi_modal_projector."):
        key = key.replace(f"paligemma.{part}", f"paligemma.model.{part}")
    if key not in module_keys and _VISION in key:
        nested = key.replace(_VISION + "vision_model.", _VISION)
        flat_to_nested = key.replace(_VISION, _VISION + "vision_model.", 1)
        key = nested if nested in module_keys else flat_to_nested
    return key


def load_weights(model: torch.nn.Module, path: Path, key: str = "pi0.pi05") -> None:
    """Loads an openpi/RLinf checkpoint (directory or file) into `model` strictly, casting to the model's dtypes."""
    from dagger_cli.policies.weights import read_weights

    path = Path(path).expanduser()
    load_state(model, read_weights(path), str(path), key)


def _kind_mismatch(state: dict, pi05: bool, source: str, key: str) -> None:
    """A CheckpointError when `state` is plainly the other kind of model (π₀ vs π0.5); `key`: the switch to name."""
    adaptive = next((k for k in state if ".gemma_expert." in k and "norm.dense." in k), None)
    if pi05 and adaptive is None:
        shows = next((k for k in state if k.endswith("state_proj.weight")), None)
        if shows is not None:
            raise CheckpointError(f"{source}: π₀ weights ({shows}; no adaptive RMSNorm in the action expert), "
                                  f"but {key} is true; set {key}=false")
    if not pi05 and adaptive is not None:
        raise CheckpointError(f"{source}: π0.5 weights ({adaptive}: adaptive RMSNorm in the action expert), but {key} "
                              f"is false; set {key}=true")


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, key: str = "pi0.pi05") -> None:
    """Loads tensors in any accepted spelling into `model`; every problem is a CheckpointError naming `source`
    (`key`: the config key of the π₀ / π0.5 switch, named when the weights are the other kind)."""
    expected = model.state_dict()
    keys = set(expected)
    _kind_mismatch(state, model.size.pi05, source, key)
    state = {_rename(k, keys): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(("value_head.", "critic"))}
    if _LM_HEAD in keys and _LM_HEAD not in state and _EMBED in state:
        state[_LM_HEAD] = state[_EMBED]
    if _EMBED in keys and _EMBED not in state and _LM_HEAD in state:
        state[_EMBED] = state[_LM_HEAD]
    if _EXPERT_HEAD in keys and _EXPERT_HEAD not in state:
        state[_EXPERT_HEAD] = expected[_EXPERT_HEAD]  # unused by π₀; openpi's converter fills it randomly
    check_state_dict(expected, state, source, "π0.5" if model.size.pi05 else "π₀")
    with torch.no_grad():
        for name, param in list(model.named_parameters()) + list(model.named_buffers()):
            if name in state:
                param.copy_(state[name].to(param.dtype))


def openpi_name(key: str) -> str:
    """A module key in openpi's spelling (transformers 4.53: SigLIP under `vision_tower.vision_model.`)."""
    if _VISION in key and _VISION + "vision_model." not in key:
        return key.replace(_VISION, _VISION + "vision_model.", 1)
    return key


def openpi_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under openpi's names, the tied embedding stored once as `paligemma.lm_head.weight`."""
    return {openpi_name(k): v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != _EMBED}


def save_weights(model: torch.nn.Module, directory: Path) -> Path:
    """Writes `<directory>/model.safetensors` atomically in openpi's layout."""
    from dagger_cli.core.io.files import write_tensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / "model.safetensors"
    write_tensors(final, openpi_state_dict(model))
    return final


# NORM STATS
NORM_KEY = "norm_stats/"
"""prefix of the norm-stat tensors a student's state dict carries beside its weights (run checkpoints, Ray)"""
MIN_STD = 1e-2
"""floor of a std computed from data: a dim that barely varied in the first iteration (a held orientation) would
otherwise turn later, larger deviations into huge z-scores"""


class NormStats:
    """Statistics of state and actions per dim: mean and std (π₀'s z-scores) and the 1st and 99th percentiles (π0.5's
    quantile normalisation), each pair None where its source has none; `require` says whether a normalisation can
    use them."""

    FIELDS = ("state_mean", "state_std", "actions_mean", "actions_std")
    QUANTILE_FIELDS = ("state_q01", "state_q99", "actions_q01", "actions_q99")

    def __init__(self, state_mean=None, state_std=None, actions_mean=None, actions_std=None, source: str = "",
                 state_q01=None, state_q99=None, actions_q01=None, actions_q99=None):
        values = (state_mean, state_std, actions_mean, actions_std, state_q01, state_q99, actions_q01, actions_q99)
        for name, value in zip((*self.FIELDS, *self.QUANTILE_FIELDS), values):
            setattr(self, name, None if value is None else np.asarray(value, dtype=np.float64))
        self.source = source

    @property
    def has_quantiles(self) -> bool:
        return all(getattr(self, name) is not None for name in self.QUANTILE_FIELDS)

    def require(self, quantiles: bool, key: str) -> None:
        """A CheckpointError naming the source unless the stats hold what the normalisation needs; `key`: the
        normalisation key to point at."""
        fields = self.QUANTILE_FIELDS if quantiles else self.FIELDS
        missing = [name for name in fields if getattr(self, name) is None]
        if missing:
            how = ("quantiles (q01, q99); set {key}=mean_std to use mean and std" if quantiles
                   else "mean and std; set {key}=quantiles to use q01 and q99")
            raise CheckpointError(f"{self.source}: norm stats lack {missing[0]} (normalising by {how.format(key=key)})")

    def dims(self, which: str) -> int:
        """Dims the stats cover for `state` or `actions`."""
        return min(len(v) for v in (getattr(self, f"{which}_{f}") for f in ("mean", "std", "q01", "q99"))
                   if v is not None)

    @classmethod
    def identity(cls, dim: int) -> "NormStats":
        """Mean 0, std 1 and percentiles ±1 for up to `dim` state and action dims: what a student uses before it has
        stats."""
        zeros, ones = np.zeros(dim), np.ones(dim)
        return cls(zeros, ones, zeros, ones, source="identity (no norm stats yet)", state_q01=-ones, state_q99=ones,
                   actions_q01=-ones, actions_q99=ones)

    @classmethod
    def from_data(cls, state: np.ndarray, actions: np.ndarray, source: str) -> "NormStats":
        """Stats of states (N, S) and model-space actions (N, ..., A): each std floored at MIN_STD, each percentile
        range widened about its middle to at least 2 × MIN_STD."""
        state = np.asarray(state, dtype=np.float64).reshape(len(state), -1)
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, np.shape(actions)[-1])

        def percentiles(x):
            low, high = np.quantile(x, 0.01, axis=0), np.quantile(x, 0.99, axis=0)
            middle, half = (low + high) / 2, np.maximum((high - low) / 2, MIN_STD)
            return middle - half, middle + half

        (state_q01, state_q99), (actions_q01, actions_q99) = percentiles(state), percentiles(actions)
        return cls(state.mean(0), np.maximum(state.std(0), MIN_STD), actions.mean(0),
                   np.maximum(actions.std(0), MIN_STD), source=source, state_q01=state_q01, state_q99=state_q99,
                   actions_q01=actions_q01, actions_q99=actions_q99)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {NORM_KEY + name: torch.from_numpy(getattr(self, name).copy())
                for name in (*self.FIELDS, *self.QUANTILE_FIELDS) if getattr(self, name) is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], source: str) -> "NormStats":
        missing = [name for name in cls.FIELDS if NORM_KEY + name not in tensors]
        if missing:
            raise CheckpointError(f"{source}: norm stats lack {NORM_KEY + missing[0]}")
        return cls(**{name: tensors[NORM_KEY + name].double().numpy() for name in (*cls.FIELDS, *cls.QUANTILE_FIELDS)
                      if NORM_KEY + name in tensors}, source=source)

    def to_json(self) -> dict[str, Any]:
        """openpi's norm_stats.json: per key mean, std and, where known, q01 and q99."""
        def stats(which):
            return {f: getattr(self, f"{which}_{f}").tolist() for f in ("mean", "std", "q01", "q99")
                    if getattr(self, f"{which}_{f}") is not None}

        return {"norm_stats": {"state": stats("state"), "actions": stats("actions")}}


def norm_stats_candidates(model_path: Path | None, asset_id: str, override: str | None) -> list[Path]:
    """Where the norm stats may be: the override alone when one is given, else the checkpoint's two layouts, in the
    checkpoint directory and, for an RLinf runner checkpoint, in each directory up to its step directory (where
    RLinf's own loader and deploy docs expect `<asset_id>/norm_stats.json`)."""
    if override:
        o = Path(override).expanduser()
        return [o if o.suffix == ".json" else o / "norm_stats.json"]
    if model_path is None:
        return []
    m = Path(model_path).expanduser()
    return [path for d in [m, *rlinf_checkpoint_dirs(m)[1:]] for path in _layouts(d, asset_id)]


def _layouts(directory: Path, asset_id: str) -> list[Path]:
    """RLinf's and openpi's places for an asset's norm stats in a checkpoint directory."""
    return [directory / asset_id / "norm_stats.json", directory / "assets" / asset_id / "norm_stats.json"]


RLINF_RUN_CONFIGS = ("tensorboard/config.yaml", "tensorboard/all/config.yaml", "config.yaml")
"""where an RLinf run saves its resolved config, relative to `runner.logger.log_path` (rlinf/utils/metric_logger.py;
`all/` with per-worker logs); its checkpoints are `<log_path>/<experiment_name>/checkpoints/global_step_N/actor`"""


def rlinf_checkpoint_dirs(model_path: Path) -> list[Path]:
    """For an RLinf runner checkpoint (RLinf's FSDP save: `.../checkpoints/global_step_N/actor/model_state_dict/
    full_weights.pt`, named by the step directory, `actor/` or `model_state_dict/`): the directories from
    `model_path` up to the step directory. Empty for anything else."""
    m = Path(model_path)
    if (m / "actor" / "model_state_dict" / "full_weights.pt").is_file():
        return [m]
    if (m / "model_state_dict" / "full_weights.pt").is_file():
        return [m, m.parent] if m.name == "actor" else [m]
    if m.name == "model_state_dict" and (m / "full_weights.pt").is_file():
        return [m, m.parent, m.parent.parent] if m.parent.name == "actor" else [m, m.parent]
    return []


def rlinf_run_config(step_dir: Path) -> tuple[Path, dict] | None:
    """The config an RLinf run saved (`<log_path>/tensorboard/config.yaml`, three levels above
    `<log_path>/<experiment_name>/checkpoints/global_step_N`), searched from the step directory upwards as RLinf's
    own checkpoint convertor does; only one with `actor.model` that names this experiment (when it names one)."""
    import yaml

    step_dir = Path(os.path.abspath(step_dir))
    for directory in [step_dir, *step_dir.parents][:5]:
        for name in RLINF_RUN_CONFIGS:
            path = directory / name
            if not path.is_file():
                continue
            try:
                config = yaml.safe_load(path.read_text())
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            model = _get(config, "actor", "model")
            experiment = _get(config, "runner", "logger", "experiment_name")
            if isinstance(model, dict) and (experiment is None or str(experiment) in step_dir.parts):
                return path, config
    return None


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _rlinf_start_candidates(config: dict, asset_id: str) -> list[Path]:
    """Where the norm stats of an RLinf run were read from: its `actor.model.openpi_data.norm_stats_path` (a file,
    or the folder holding norm_stats.json), else `<actor.model.model_path>/<asset_id>/norm_stats.json` (openpi's
    `load_norm_stats(model_path, asset_id)`, rlinf/models/embodiment/openpi/__init__.py), `assets/` too."""
    explicit = _get(config, "actor", "model", "openpi_data", "norm_stats_path")
    if explicit:
        e = Path(str(explicit)).expanduser()
        return [e if e.suffix == ".json" else e / "norm_stats.json"]
    paths: list[Path] = []
    for key in (("actor", "model", "model_path"), ("rollout", "model", "model_path")):
        start = _get(config, *key)
        if start:
            paths += [p for p in _layouts(Path(str(start)).expanduser(), asset_id) if p not in paths]
    return paths


def find_norm_stats(model_path: Path | None, asset_id: str, override: str | None = None,
                    required: bool = True, key: str | None = None) -> NormStats | None:
    """The norm stats at the first candidate path that exists (else, for an RLinf runner checkpoint, those of the
    checkpoint its run started from, as the run's saved config names it; else in LeRobot's normaliser files); None
    when there are none and not `required`.
    An override that does not exist, or a file that exists but is broken, is always an error; the error names
    `key` (default: the expert's `rollout.expert_model.pi0.norm_stats_path` when `required`, as only an expert must
    bring its stats, else the student's)."""
    key = key or f"{'rollout.expert_model' if required else 'actor.model'}.pi0.norm_stats_path"
    candidates = norm_stats_candidates(model_path, asset_id, override)
    path = next((p for p in candidates if p.is_file()), None)
    rlinf = rlinf_checkpoint_dirs(Path(model_path).expanduser()) if model_path is not None and not override else []
    run = rlinf_run_config(rlinf[-1]) if rlinf and path is None else None
    started = _rlinf_start_candidates(run[1], asset_id) if run else []
    if path is None and started:
        path = next((p for p in started if p.is_file()), None)
    if path is None and not override and model_path is not None:
        from dagger_cli.policies.pi0 import lerobot

        found = lerobot.norm_stats(Path(model_path).expanduser())  # LeRobot's normaliser files
        if found is not None:
            return found
    if path is None and (required or override):
        if override or model_path is None:
            looked = f"looked at {candidates[0]}" if candidates else "no model_path"
            raise CheckpointError(f"norm_stats.json not found ({looked}); set {key}")
        dirs = [Path(model_path).expanduser(), *rlinf[1:]]
        looked = (f"looked for {asset_id}/norm_stats.json and assets/{asset_id}/norm_stats.json in "
                  f"{', '.join(str(d) for d in dirs)}")
        if not rlinf:
            raise CheckpointError(f"norm_stats.json not found ({looked}); set {key}")
        where = f"{rlinf[0]} is an RLinf runner checkpoint, which RLinf saves without norm stats"
        here = f"{rlinf[-1]}/{asset_id}/norm_stats.json"
        if started:
            raise CheckpointError(
                f"norm_stats.json not found ({looked}, and at {', '.join(map(str, started))}): {where}; set {key} to "
                f"{started[0]}, the norm stats its run read (actor.model in {run[0]}; from that run's machine), or "
                f"copy that file to {here}")
        raise CheckpointError(
            f"norm_stats.json not found ({looked}; no RLinf run config.yaml above it): {where}; set {key} to "
            f"<model_path the RLinf run started from>/{asset_id}/norm_stats.json (actor.model.model_path in the "
            f"run's <runner.logger.log_path>/tensorboard/config.yaml), or copy that file to {here}")
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())["norm_stats"]
        state, actions = data["state"], data["actions"]
        quantiles = {f"{which}_{q}": part.get(q) for which, part in (("state", state), ("actions", actions))
                     for q in ("q01", "q99")}
        return NormStats(state["mean"], state["std"], actions["mean"], actions["std"], source=str(path), **quantiles)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: missing norm_stats.{{state,actions}}.{{mean,std}} ({e})") from None


def load_norm_stats(model_path: Path | None, asset_id: str, override: str | None = None) -> NormStats:
    return find_norm_stats(model_path, asset_id, override, required=True)
