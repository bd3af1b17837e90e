"""π₀ and π0.5 checkpoints in LeRobot's layout (`PI0Policy` / `PI05Policy.save_pretrained`), read as student or
expert, and written.

A LeRobot π₀ directory holds `config.json` (`type: pi0`, `chunk_size`, `max_state_dim`, `max_action_dim`, the
PaliGemma and expert variants), `model.safetensors` with every key under `model.` and the openpi names below it
(`model.paligemma_with_expert.paligemma...`, `model.action_in_proj`, `model.action_time_mlp_in`, ...; older
exports spell the time MLP `time_mlp_*`), and the normalisers in separate files,
`policy_preprocessor_step_<i>_normalizer_processor.safetensors` (flat keys `observation.state.mean`, `action.std`,
...) and the postprocessor's `unnormalizer` twin, named by the pipelines that load them (`policy_preprocessor.json`,
`policy_postprocessor.json`). The weight-file rule (`dagger_cli.policies.weights`) skips those
processor files; the key renaming lives with the openpi spellings (`checkpoint._rename`); this module reads and
checks `config.json` and the normaliser stats, and writes the layout.

π0.5 (`type: pi05`): openpi's π0.5 names under `model.` (`model.time_mlp_in`, the expert's
`input_layernorm.dense.*`), `chunk_size` its horizon, `tokenizer_max_length` 200, `normalization_mapping` STATE and
ACTION `QUANTILES` by default (some checkpoints, e.g. `lerobot/pi05_libero_finetuned_v044`, use `MEAN_STD`), the
normaliser files then holding `q01` / `q99` beside the other stats; the state always goes into the prompt (LeRobot
0.4.x padded it to `max_state_dim` first; 0.5 and later write the state's own dims, as openpi does, and so do we).
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


def read_config(path: Path) -> dict:
    file = Path(path) / CONFIG_FILE
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: not a JSON object")
    return config


def chunk_size(path: Path) -> int | None:
    """The horizon a LeRobot checkpoint was trained with (config.json's chunk_size), if it says."""
    size = read_config(path).get("chunk_size")
    return int(size) if isinstance(size, int) else None


def normalization(path: Path) -> str | None:
    """`quantiles` or `mean_std`, as config.json's normalization_mapping says for STATE and ACTION; None if it says
    nothing; a CheckpointError for anything else."""
    file = Path(path) / CONFIG_FILE
    mapping = read_config(path).get("normalization_mapping") or {}
    modes = {mapping.get(kind) for kind in ("STATE", "ACTION")} - {None}
    if not modes:
        return None
    names = {"QUANTILES": "quantiles", "MEAN_STD": "mean_std"}
    if len(modes) > 1 or not modes <= set(names):
        raise CheckpointError(f"{file}: normalization_mapping STATE {mapping.get('STATE')!r}, ACTION "
                              f"{mapping.get('ACTION')!r}; dagger reads QUANTILES or MEAN_STD, the same for both")
    return names[modes.pop()]


def check_config(path: Path, size, variant: str, key: str, action_dim: int | None = None) -> None:
    """config.json against the preset's model: a field that contradicts it is a one-line error naming both."""
    file = Path(path) / CONFIG_FILE
    config = read_config(path)
    ours = "pi05" if size.pi05 else "pi0"
    if config.get("type") != ours:
        hint = {"pi05": f"; set {key}.pi0.pi05=true", "pi0": f"; set {key}.pi0.pi05=false"}.get(config.get("type"), "")
        raise ConfigError(f"{key}.model_path: {file} is a LeRobot {config.get('type')!r} policy, not {ours}{hint}")
    pairs = [("chunk_size", size.action_horizon, "action horizon"),
             ("max_state_dim", size.action_dim, "state dims"), ("max_action_dim", size.action_dim, "action dims")]
    for field, value, what in pairs:
        if field in config and int(config[field]) != value:
            raise ConfigError(f"{key}.model_path: {file} has {field} {config[field]}, but {key}.pi0.variant "
                              f"{variant} has {value} {what}")
    action = (config.get("output_features") or {}).get("action") or {}
    if action_dim is not None and action.get("shape") and int(action["shape"][-1]) != action_dim:
        raise ConfigError(f"{key}.model_path: {file} acts in {action['shape'][-1]} dims (output_features.action), but "
                          f"{key}.action_dim is {action_dim}")
    if variant in VARIANTS:
        for field, ours in zip(("paligemma_variant", "action_expert_variant"), VARIANTS[variant]):
            if field in config and config[field] != ours:
                raise ConfigError(f"{key}.model_path: {file} has {field} {config[field]!r}, but {key}.pi0.variant "
                                  f"{variant} is {ours}")


STATS = {f"{ours}_{stat}": f"{theirs}.{stat}" for ours, theirs in (("state", "observation.state"), ("actions", "action"))
         for stat in ("mean", "std", "q01", "q99")}
"""NormStats field -> the normaliser file's key"""


def norm_stats(path: Path):
    """NormStats from the preprocessor's normaliser (state and action mean, std, q01, q99: what it holds), or None
    when there is none. The normalisation in use checks that what it needs is there (`NormStats.require`)."""
    from dagger_cli.core.io.files import read_tensors
    from dagger_cli.policies.pi0.checkpoint import NormStats

    files = sorted(Path(path).glob("policy_preprocessor*normalizer_processor.safetensors"))
    if not files:
        return None
    tensors = read_tensors(files[0])
    if not any(name in tensors for name in STATS.values()):
        raise CheckpointError(f"{files[0]}: no observation.state or action stats (mean, std, q01, q99)")
    return NormStats(**{ours: tensors[theirs].double().numpy() for ours, theirs in STATS.items() if theirs in tensors},
                     source=str(files[0]))


PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"
"""the tokenizer LeRobot's π₀ and π0.5 processors load from the Hub"""


def _processors(pi05: bool, features: dict, mode: str, token_len: int) -> tuple[dict, dict]:
    """LeRobot's policy_preprocessor.json and policy_postprocessor.json as its make_pi0_pre_post_processors /
    make_pi05_pre_post_processors save them: the normaliser (features, mapping, its state file), π₀'s newline step or
    π0.5's state-in-the-prompt step, the PaliGemma tokenizer at the prompt length, the device (the CPU; LeRobot's
    eval overrides it)."""
    from dagger_cli.policies.pi0.transforms import LEROBOT_EPS

    norm_map = {"VISUAL": "IDENTITY", "STATE": mode, "ACTION": mode}
    normalizer = {"registry_name": "normalizer_processor",
                  "config": {"eps": LEROBOT_EPS, "features": features, "norm_map": norm_map}}
    tokenizer = {"registry_name": "tokenizer_processor",
                 "config": {"max_length": token_len, "task_key": "task", "padding_side": "right",
                            "padding": "max_length", "truncation": True, "tokenizer_name": PALIGEMMA_TOKENIZER}}
    device = {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": None}}
    steps = [{"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
             {"registry_name": "to_batch_processor", "config": {}}]
    if pi05:
        steps += [normalizer, {"registry_name": "pi05_prepare_state_tokenizer_processor_step", "config": {}},
                  tokenizer, device]
    else:
        steps += [{"registry_name": "pi0_new_line_processor", "config": {}}, tokenizer, device, normalizer]
    normalizer["state_file"] = f"policy_preprocessor_step_{steps.index(normalizer)}_normalizer_processor.safetensors"
    unnormalizer = {"registry_name": "unnormalizer_processor",
                    "config": {"eps": LEROBOT_EPS, "features": {"action": features["action"]}, "norm_map": norm_map},
                    "state_file": "policy_postprocessor_step_0_unnormalizer_processor.safetensors"}
    return {"name": "policy_preprocessor", "steps": steps}, {"name": "policy_postprocessor",
                                                             "steps": [unnormalizer, device]}


def save(model: torch.nn.Module, norm, size, directory: Path, variant: str, action_dim: int,
         quantiles: bool = False, token_len: int = 48, cameras: tuple[str, ...] = (), num_steps: int = 10,
         action_steps: int | None = None) -> Path:
    """Writes `directory` in LeRobot's layout: config.json (the state, the `cameras` as
    `observation.images.<camera>` at the model's image size, the action; `num_steps` denoising steps, `action_steps`
    executed per chunk), model.safetensors under `model.` in openpi's spelling (SigLIP under
    `vision_tower.vision_model.`, as LeRobot's transformers 4.5x names it; the tied embedding as `embed_tokens`, π₀'s
    time MLP as `action_time_mlp_*`, π0.5's as `time_mlp_*`), the pre/postprocessor normaliser files (every stat the
    norm stats hold; `quantiles`: the mapping says QUANTILES) and the pipelines that use them, policy_preprocessor.json
    and policy_postprocessor.json, so that LeRobot's `make_pre_post_processors` loads them."""
    from dagger_cli.core.io.files import write_json, write_tensors
    from dagger_cli.policies.pi0.checkpoint import _EMBED, _LM_HEAD, openpi_name

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != _LM_HEAD}
    if _EMBED not in state:
        state[_EMBED] = model.state_dict()[_LM_HEAD].detach().cpu().contiguous()
    write_tensors(directory / "model.safetensors", {f"model.{openpi_name(k)}": v for k, v in state.items()})
    mode = "QUANTILES" if quantiles else "MEAN_STD"
    image = size.siglip.image_size
    inputs = {"observation.state": {"type": "STATE", "shape": [norm.dims("state")]},
              **{f"observation.images.{camera}": {"type": "VISUAL", "shape": [3, image, image]} for camera in cameras}}
    outputs = {"action": {"type": "ACTION", "shape": [action_dim]}}
    pre, post = _processors(size.pi05, {**inputs, **outputs}, mode, token_len)
    tensors = {theirs: torch.from_numpy(np.asarray(getattr(norm, ours), dtype=np.float32))
               for ours, theirs in STATS.items() if getattr(norm, ours) is not None}
    pre_file, post_file = (next(step["state_file"] for step in pipeline["steps"] if "state_file" in step)
                           for pipeline in (pre, post))
    write_tensors(directory / pre_file, tensors)
    write_tensors(directory / post_file, {k: v for k, v in tensors.items() if k.startswith("action.")})
    write_json(directory / "policy_preprocessor.json", pre)
    write_json(directory / "policy_postprocessor.json", post)
    config = {"type": "pi05" if size.pi05 else "pi0", "chunk_size": size.action_horizon,
              "n_action_steps": action_steps or size.action_horizon, "max_state_dim": size.action_dim,
              "max_action_dim": size.action_dim, "num_inference_steps": num_steps, "tokenizer_max_length": token_len,
              "input_features": inputs, "output_features": outputs,
              "normalization_mapping": {"VISUAL": "IDENTITY", "STATE": mode, "ACTION": mode}}
    if variant in VARIANTS:
        config["paligemma_variant"], config["action_expert_variant"] = VARIANTS[variant]
    write_json(directory / CONFIG_FILE, config)
    return directory
