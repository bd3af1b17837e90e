"""What `dagger fetch` brings for π₀, and how it checks it: a checkpoint (weights and `<asset_id>/norm_stats.json`)
and the PaliGemma tokenizer (placed where `pi0.tokenizer_path`'s default looks). No torch here: `dagger fetch --list`
reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagger_cli.core.registry import DownloadKind, Layout
from dagger_cli.policies.pi0.tokenizer import (
    DEFAULT_TOKENIZER_PATH, TOKENIZER_FILE, openpi_home, resolve_tokenizer_path,
)
from dagger_cli.policies.weights import RLINF_WEIGHT_FILES, weight_files_among

MODEL_KEY, EXPERT_KEY = "actor.model.model_path", "rollout.expert_model.model_path"
TOKENIZER_KEY = "actor.model.pi0.tokenizer_path"
NORM_STATS = "norm_stats.json"


def _found(files: list[str]) -> dict[str, Any]:
    """Weights, norm stats (asset id -> file) and a tokenizer among relative paths."""
    norm_stats: dict[str, str] = {}
    for f in sorted(files):
        if f.endswith(f"/{NORM_STATS}"):
            norm_stats.setdefault(f[: -len(f"/{NORM_STATS}")].removeprefix("assets/"), f)
        elif f.startswith("policy_preprocessor") and f.endswith("normalizer_processor.safetensors"):
            norm_stats.setdefault("LeRobot's normaliser", f)  # LeRobot's π₀ / π0.5 layout
    models = sorted(f for f in files if f.endswith(".model"))
    tokenizer = TOKENIZER_FILE if TOKENIZER_FILE in models else (models[0] if models else None)
    return {"weights": weight_files_among(files), "norm_stats": norm_stats, "tokenizer": tokenizer}


def _summary(found: dict[str, Any], tokenizer_kind: bool) -> list[str]:
    parts = []
    weights = found["weights"]
    if weights:
        n = len(weights)
        parts.append(f"weights: {weights[0]}{' …' if n > 1 else ''} ({n} file{'s' if n > 1 else ''})")
    if found["norm_stats"]:
        parts.append(f"norm stats: {', '.join(found['norm_stats'])}")
    if found["tokenizer"] and (tokenizer_kind or not weights):
        parts.append(f"tokenizer: {found['tokenizer']}")
    return parts or ["no π₀ weights, norm stats or tokenizer recognised"]


def _checkpoint(files: list[str], folder: Path) -> Layout:
    found = _found(files)
    missing = {}
    if not found["weights"]:
        missing["weights"] = (f"no π₀ weights in {folder} (expected *.safetensors at the top level or "
                              f"{' or '.join(RLINF_WEIGHT_FILES)})")
    if not found["norm_stats"]:
        missing[NORM_STATS] = (f"no {NORM_STATS} in {folder} (expected <asset_id>/{NORM_STATS} or "
                               f"assets/<asset_id>/{NORM_STATS}); set actor.model.pi0.norm_stats_path")
    return Layout("model", found, missing, _summary(found, False))


def _tokenizer(files: list[str], folder: Path) -> Layout:
    found = _found(files)
    missing = {} if found["tokenizer"] else {"tokenizer": f"no tokenizer (*.model) in {folder}"}
    return Layout("tokenizer", found, missing, _summary(found, True))


CHECKPOINT = DownloadKind(
    "model", MODEL_KEY, _checkpoint,
    claims=lambda files: bool(weight_files_among(files)),
    setting=lambda layout, folder: folder,
)
TOKENIZER = DownloadKind(
    "tokenizer", TOKENIZER_KEY, _tokenizer,
    claims=lambda files: any(f.endswith(".model") for f in files),
    setting=lambda layout, folder: (folder / layout.found["tokenizer"]).resolve() if layout.found["tokenizer"]
    else None,
    default_setting=lambda: resolve_tokenizer_path(DEFAULT_TOKENIZER_PATH).resolve(),
    home=openpi_home,
    downloaded=lambda folder: (folder / TOKENIZER_FILE).is_file(),
)
