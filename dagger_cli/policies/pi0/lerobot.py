"""π₀ checkpoints in LeRobot's layout (`PI0Policy.save_pretrained`), read as student or expert, and written.

A LeRobot π₀ directory holds `config.json` (`type: pi0`, `chunk_size`, `max_state_dim`, `max_action_dim`, the
PaliGemma and expert variants), `model.safetensors` with every key under `model.` and the openpi names below it
(`model.paligemma_with_expert.paligemma...`, `model.action_in_proj`, `model.action_time_mlp_in`, ...; older
exports spell the time MLP `time_mlp_*`), and the normalisers in separate files,
`policy_preprocessor_step_<i>_normalizer_processor.safetensors` (flat keys `observation.state.mean`, `action.std`,
...) and the postprocessor's `unnormalizer` twin. The weight-file rule (`dagger_cli.policies.weights`) skips those
processor files; the key renaming lives with the openpi spellings (`checkpoint._rename`); this module reads and
checks `config.json` and the normaliser stats, and writes the layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dagger_cli.core.errors import CheckpointError, ConfigError

CONFIG_FILE = "config.json"
VARIANTS = {"full": ("gemma_2b", "gemma_300m")}
"""our variant -> LeRobot's (paligemma_variant, action_expert_variant); the small test variants have none"""


def is_lerobot(path: Path) -> bool:
    """A directory written by LeRobot's `save_pretrained` for π₀ (its config.json names the policy type)."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True  # check_config names the broken file
    return isinstance(data, dict) and "type" in data


def check_config(path: Path, size, variant: str, key: str, action_dim: int | None = None) -> None:
    """config.json against the preset's model: a field that contradicts it is a one-line error naming both."""
    file = Path(path) / CONFIG_FILE
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if config.get("type") != "pi0":
        raise ConfigError(f"{key}.model_path: {file} is a LeRobot {config.get('type')!r} policy, not pi0")
    pairs = [("chunk_size", size.action_horizon, "action horizon"),
             ("max_state_dim", size.action_dim, "state dims"), ("max_action_dim", size.action_dim, "action dims")]
    for field, ours, what in pairs:
        if field in config and int(config[field]) != ours:
            raise ConfigError(f"{key}.model_path: {file} has {field} {config[field]}, but {key}.pi0.variant "
                              f"{variant} has {ours} {what}")
    action = (config.get("output_features") or {}).get("action") or {}
    if action_dim is not None and action.get("shape") and int(action["shape"][-1]) != action_dim:
        raise ConfigError(f"{key}.model_path: {file} acts in {action['shape'][-1]} dims (output_features.action), but "
                          f"{key}.action_dim is {action_dim}")
    if variant in VARIANTS:
        for field, ours in zip(("paligemma_variant", "action_expert_variant"), VARIANTS[variant]):
            if field in config and config[field] != ours:
                raise ConfigError(f"{key}.model_path: {file} has {field} {config[field]!r}, but {key}.pi0.variant "
                                  f"{variant} is {ours}")


def norm_stats(path: Path):
    """NormStats from the preprocessor's normaliser (state and action mean/std), or None when there is none."""
    from dagger_cli.core.files import read_tensors
    from dagger_cli.policies.pi0.checkpoint import NormStats

    files = sorted(Path(path).glob("policy_preprocessor*normalizer_processor.safetensors"))
    if not files:
        return None
    tensors = read_tensors(files[0])
    names = ("observation.state.mean", "observation.state.std", "action.mean", "action.std")
    missing = [n for n in names if n not in tensors]
    if missing:
        raise CheckpointError(f"{files[0]}: no {missing[0]} (π₀ normalises state and action by mean and std)")
    return NormStats(*(tensors[n].double().numpy() for n in names), source=str(files[0]))


def save(model: torch.nn.Module, norm, size, directory: Path, variant: str, action_dim: int) -> Path:
    """Writes `directory` in LeRobot's layout: config.json, model.safetensors under `model.` (the tied embedding
    as `embed_tokens`, the time MLP as `action_time_mlp_*`) and the pre/postprocessor normaliser files."""
    from dagger_cli.core.files import write_json, write_tensors
    from dagger_cli.policies.pi0.checkpoint import _EMBED, _LM_HEAD

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != _LM_HEAD}
    if _EMBED not in state:
        state[_EMBED] = model.state_dict()[_LM_HEAD].detach().cpu().contiguous()
    write_tensors(directory / "model.safetensors", {f"model.{k}": v for k, v in state.items()})
    stats = {"observation.state.mean": norm.state_mean, "observation.state.std": norm.state_std,
             "action.mean": norm.actions_mean, "action.std": norm.actions_std}
    tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in stats.items()}
    write_tensors(directory / "policy_preprocessor_step_2_normalizer_processor.safetensors", tensors)
    write_tensors(directory / "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
                  {k: v for k, v in tensors.items() if k.startswith("action.")})
    config = {"type": "pi0", "chunk_size": size.action_horizon, "n_action_steps": size.action_horizon,
              "max_state_dim": size.action_dim, "max_action_dim": size.action_dim,
              "input_features": {"observation.state": {"type": "STATE", "shape": [len(norm.state_mean)]}},
              "output_features": {"action": {"type": "ACTION", "shape": [action_dim]}}}
    if variant in VARIANTS:
        config["paligemma_variant"], config["action_expert_variant"] = VARIANTS[variant]
    write_json(directory / CONFIG_FILE, config)
    return directory
