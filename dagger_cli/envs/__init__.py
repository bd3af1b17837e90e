"""Simulator adapters behind `dagger_cli.core.protocols.VecEnv`, and each task's built-in expert."""

from __future__ import annotations

from dagger_cli.core.config import EnvConfig
from dagger_cli.core.protocols import Policy, VecEnv


def make_vec_env(cfg: EnvConfig, num_action_chunks: int = 1) -> VecEnv:
    """Starts the configured simulator with `cfg.num_envs` envs."""
    if cfg.type == "maniskill":
        from dagger_cli.envs.maniskill import ManiSkillVecEnv

        return ManiSkillVecEnv(cfg, num_action_chunks)
    if cfg.type == "libero":
        from dagger_cli.envs.libero import LiberoVecEnv

        return LiberoVecEnv(cfg, num_action_chunks)
    if cfg.type == "robotwin":
        from dagger_cli.envs.robotwin import RoboTwinVecEnv

        return RoboTwinVecEnv(cfg, num_action_chunks)
    raise ValueError(f"unknown env type {cfg.type!r}")


def make_scripted_expert(cfg: EnvConfig) -> Policy:
    """The task's built-in scripted expert (a function of the observation alone)."""
    from dagger_cli.core.errors import ConfigError

    if cfg.type == "maniskill" and cfg.task == "PickCube-v1":
        from dagger_cli.envs.pickcube_expert import PickCubeExpert

        return PickCubeExpert(cfg.control_mode)
    raise ConfigError(f"rollout.expert_model.model_type: no scripted expert for {cfg.type} task {cfg.task!r}")
