"""Simulator adapters behind `dagger_cli.core.protocols.VecEnv`, found by `env.type` in the registry
(`dagger_cli.core.registry`): ManiSkill, LIBERO and RoboTwin here, others from packages' entry points."""

from __future__ import annotations

from dagger_cli.core.protocols import Policy, VecEnv
from dagger_cli.core.registry import env_adapter


def make_vec_env(cfg, num_action_chunks: int = 1) -> VecEnv:
    """Starts the configured simulator with `cfg.num_envs` envs (`cfg`: the `env` section)."""
    return env_adapter(cfg.type).make(cfg, num_action_chunks)


def make_scripted_expert(cfg, num_action_chunks: int = 1) -> Policy:
    """The task's built-in scripted expert (a function of the observation alone) for an env that executes
    `num_action_chunks` actions per step."""
    from dagger_cli.core.errors import ConfigError

    adapter = env_adapter(cfg.type)
    if adapter.scripted_expert is None:
        raise ConfigError(f"rollout.expert_model.model_type: the {cfg.type} env has no scripted expert")
    return adapter.scripted_expert(cfg, num_action_chunks)
