"""ManiSkill 3 env adapter (`env.type: maniskill`): CPU physics in worker processes or the batched GPU simulation,
and the built-in scripted PickCube expert. See `env.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dagger_cli.core.config import EnvConfig, check
from dagger_cli.core.registry import EnvAdapter, Probe


@dataclass
class ManiSkillEnvConfig(EnvConfig):
    type: str = "maniskill"
    task: str = "PickCube-v1"
    obs_mode: str = "state"
    """observation mode passed to the simulator"""
    control_mode: str = "pd_joint_delta_pos"
    """controller the actions drive"""
    sim_backend: Literal["cpu", "gpu", "auto"] = "cpu"
    """physics backend; `gpu` needs CUDA (ManiSkill's batched GPU simulation); `auto` picks gpu when CUDA exists"""

    def check(self, key: str, cfg) -> None:
        check(bool(self.task), f"{key}.task", "names no ManiSkill task")


def make(cfg: ManiSkillEnvConfig, num_action_chunks: int):
    from dagger_cli.envs.maniskill.env import ManiSkillVecEnv

    return ManiSkillVecEnv(cfg, num_action_chunks)


def scripted_expert(cfg: ManiSkillEnvConfig, num_action_chunks: int = 1):
    from dagger_cli.core.errors import ConfigError

    if cfg.task == "PickCube-v1":
        from dagger_cli.envs.maniskill.pickcube_expert import PickCubeExpert

        return PickCubeExpert(cfg.control_mode)
    raise ConfigError(f"rollout.expert_model.model_type: no scripted expert for ManiSkill task {cfg.task!r}")


def checks(cfg) -> list[Probe]:
    from dagger_cli.envs.maniskill import probes as probe

    return [Probe("simulator", probe.simulator), Probe("renderer", lambda: probe.renderer(cfg.env), ("simulator",))]


ADAPTER = EnvAdapter("maniskill", ManiSkillEnvConfig, make, scripted_expert, checks,
                     control_hz=20.0)  # ManiSkill's SimConfig.control_freq, which PickCube-v1 keeps
