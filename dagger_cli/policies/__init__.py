"""Policy adapters behind `dagger_cli.core.protocols.Policy`: the student and expert models."""

from __future__ import annotations

from pathlib import Path

from dagger_cli.core.config import Config
from dagger_cli.core.protocols import Policy, TrainablePolicy


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from dagger_cli.core.errors import ConfigError

        raise ConfigError("runner.device: 'cuda' requested but CUDA is not available")
    return name


def build_student(cfg: Config, device: str, weights: str | Path | None = None) -> TrainablePolicy:
    """The student: loaded from `weights` (default `runner.ckpt_path`), else randomly initialised (torch RNG)."""
    weights = weights if weights is not None else cfg.runner.ckpt_path
    if cfg.actor.model.model_type == "pi0":
        from dagger_cli.policies.pi0 import Pi0Policy

        policy = Pi0Policy(cfg.actor.model, device)
        if weights:
            policy.load_weights(weights)
        return policy
    from dagger_cli.policies.mlp import MLPPolicy
    from dagger_cli.policies.weights import load_into

    policy = MLPPolicy(cfg.actor.model, device)
    if weights:
        load_into(policy.module, weights, "student")
    return policy


def build_expert(cfg: Config, device: str) -> Policy:
    """The task's scripted expert, π₀ from `rollout.expert_model.model_path`, or an MLP from
    `runner.expert_ckpt_path`."""
    if cfg.rollout.expert_model.model_type == "scripted":
        from dagger_cli.envs import make_scripted_expert

        return make_scripted_expert(cfg.env)
    if cfg.rollout.expert_model.model_type == "pi0":
        from dagger_cli.policies.pi0 import Pi0Policy

        return Pi0Policy(cfg.rollout.expert_model, device, trainable=False)
    from dagger_cli.policies.mlp import MLPPolicy
    from dagger_cli.policies.weights import load_into

    policy = MLPPolicy(cfg.rollout.expert_model, device)
    load_into(policy.module, cfg.runner.expert_ckpt_path, "expert")
    policy.module.eval()
    return policy
