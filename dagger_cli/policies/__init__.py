"""Policy adapters behind `dagger_cli.core.protocols.Policy`, found by `model_type` in the registry
(`dagger_cli.core.registry`): the MLP and π₀ here, others from packages' entry points; `scripted` experts come
from the env adapter."""

from __future__ import annotations

from pathlib import Path

from dagger_cli.core.protocols import Policy, TrainablePolicy
from dagger_cli.core.registry import SCRIPTED, policy_adapter


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from dagger_cli.core.errors import ConfigError

        raise ConfigError("runner.device: 'cuda' requested but CUDA is not available")
    return name


def build_student(cfg, device: str, weights: str | Path | None = None) -> TrainablePolicy:
    """The student: loaded from `weights` (default `runner.ckpt_path`), else randomly initialised (torch RNG)."""
    from dagger_cli.core.errors import ConfigError

    adapter = policy_adapter(cfg.actor.model.model_type)
    if adapter.student is None:
        raise ConfigError(f"actor.model.model_type: {adapter.name} cannot be trained as a student")
    return adapter.student(cfg, device, weights if weights is not None else cfg.runner.ckpt_path)


def build_expert(cfg, device: str) -> Policy:
    """The task's scripted expert, or the expert model `rollout.expert_model` names."""
    from dagger_cli.core.errors import ConfigError

    model_type = cfg.rollout.expert_model.model_type
    if model_type == SCRIPTED:
        from dagger_cli.envs import make_scripted_expert

        return make_scripted_expert(cfg.env, cfg.actor.model.num_action_chunks)
    adapter = policy_adapter(model_type, "rollout.expert_model.model_type")
    if adapter.expert is None:
        raise ConfigError(f"rollout.expert_model.model_type: {adapter.name} cannot serve as an expert")
    return adapter.expert(cfg, device)
