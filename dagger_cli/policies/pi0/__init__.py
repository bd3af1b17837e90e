"""π₀ policy adapter (`model_type: pi0`, extra `pi0`): openpi-compatible model, transforms, tokenizer and
checkpoints. The policy is `policy.Pi0Policy`; this module stays light (no torch) for the registry."""

from __future__ import annotations

from dagger_cli.core.registry import Alias, PolicyAdapter
from dagger_cli.policies.pi0.config import Pi0Config, Pi0ModelConfig  # noqa: F401

MODEL_KEY, EXPERT_KEY = "actor.model.model_path", "rollout.expert_model.model_path"
TOKENIZER_KEY = "actor.model.pi0.tokenizer_path"
FETCH_ALIASES = (
    Alias("pi0-libero", "RLinf/RLinf-Pi0-LIBERO-Spatial-Object-Goal-SFT", "π₀ student for libero-spatial", MODEL_KEY),
    Alias("pi0-robotwin", "RLinf/RLinf-Pi0-RoboTwin-SFT-adjust_bottle", "π₀ student for robotwin-adjust-bottle",
          MODEL_KEY),
    Alias("pi0-robotwin-expert", "RLinf/RLinf-Pi0-RoboTwin-PPO-adjust_bottle", "π₀ expert for robotwin-adjust-bottle",
          EXPERT_KEY),
    Alias("openpi-tokenizer", "RLinf/openpi_tokenizer", "PaliGemma SentencePiece tokenizer", TOKENIZER_KEY,
          "tokenizer"),
)


def student(cfg, device: str, weights):
    from dagger_cli.policies.pi0.policy import Pi0Policy

    policy = Pi0Policy(cfg.actor.model, device)
    if weights:
        policy.load_weights(weights)
    return policy


def expert(cfg, device: str):
    from dagger_cli.policies.pi0.policy import Pi0Policy

    return Pi0Policy(cfg.rollout.expert_model, device, trainable=False)


def describe(model: Pi0ModelConfig, policy, device: str, is_student: bool) -> str:
    """The memory the model takes as `apply_precision` stores it (what `dagger check` prints)."""
    from dagger_cli.policies.pi0.model import memory_estimate_gib
    from dagger_cli.policies.pi0.sizes import VARIANTS

    p = model.pi0
    precision = p.precision if p.precision != "auto" else ("bfloat16" if device == "cuda" else "float32")
    weights, total = memory_estimate_gib(VARIANTS[p.variant], precision, p.train_expert_only, trainable=is_student)
    how = ""
    if precision == "bfloat16":
        how = " (fp32 master weights, bf16 autocast)" if is_student else " (stored in bf16)"
    text = f"{p.variant} π₀ in {precision}{how}: weights {_size(weights)}"
    if is_student:
        part = "action expert" if p.train_expert_only else "all"
        text += f", training ({part}) ≈{_size(total)} + activations"
    if getattr(policy, "needs_norm_stats", False):
        text += "; no norm stats: computed from the first iteration's expert labels"
    return text


def _size(gib: float) -> str:
    return f"{gib:.1f} GiB" if gib >= 1 else f"{gib * 1024:.0f} MiB"


def __getattr__(name: str):
    if name in ("Pi0Policy", "resolve_precision"):
        from dagger_cli.policies.pi0 import policy

        return getattr(policy, name)
    raise AttributeError(name)


def weight_bytes(model: Pi0ModelConfig) -> int:
    """The student's state dict at most (fp32, as a student keeps its master weights)."""
    from dagger_cli.policies.pi0.model import memory_estimate_gib
    from dagger_cli.policies.pi0.sizes import VARIANTS

    weights, _ = memory_estimate_gib(VARIANTS[model.pi0.variant], "float32", model.pi0.train_expert_only, True)
    return int(weights * 2**30)


def export(policy, model: Pi0ModelConfig, directory, fmt: str):
    """`checkpoint`: openpi's layout (model.safetensors + <asset_id>/norm_stats.json); `lerobot-checkpoint`:
    LeRobot's `save_pretrained` layout (config.json, weights under `model.`, normaliser files)."""
    return policy.save_lerobot(directory) if fmt == "lerobot-checkpoint" else policy.save(directory).parent


ADAPTER = PolicyAdapter("pi0", Pi0ModelConfig, student, expert, describe=describe, weight_bytes=weight_bytes,
                        export=export, export_formats=("checkpoint", "lerobot-checkpoint"),
                        worker_env=("OPENPI_DATA_HOME",), fetch_aliases=FETCH_ALIASES)
