"""RoboTwin 2.0 env adapter (`env.type: robotwin`) over the runtime's `VectorEnv`. See `env.py`; its `dagger check`
probes are in `probes.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dagger_cli.core.config import EnvConfig
from dagger_cli.core.registry import EnvAdapter

_LAZY = {"RoboTwinVecEnv", "assets_root", "set_environment", "load_seeds", "bundled_seeds", "import_vector_env",
         "task_config", "INSTALL_HINT", "worker_slices", "reset_order"}


@dataclass
class RoboTwinConfig:
    embodiment: str = "aloha-agilex"
    """robot under assets/embodiments/ (RLinf's adjust_bottle: aloha-agilex, dual arm, 14-D)"""
    planner_backend: Literal["mplib", "curobo"] = "mplib"
    """motion planner that time-parametrises every action chunk (RoboTwin's own default would be curobo)"""
    task_config: str = "demo_clean"
    """RoboTwin task config the scene follows (demo_clean: no domain randomisation)"""
    train_seeds_path: str | None = None
    """JSON of training "success seeds" in RLinf's format ({task: {success_seeds: [...]}}); null = bundled (RLinf's
    own); at least 64, picked as RLinf's 4 env workers of 16 envs pick them (env.py)"""
    eval_seeds_path: str | None = None
    """JSON of evaluation seeds, same format and pick (episodes 0..63: RLinf's 64); null = bundled (RLinf's own)"""


@dataclass
class RoboTwinEnvConfig(EnvConfig):
    type: str = "robotwin"
    task: str = "adjust_bottle"
    assets_path: str | None = None
    """folder holding assets/ (sets ROBOTWIN_ASSETS_ROOT and ASSETS_PATH for the runtime)"""
    robotwin: RoboTwinConfig = field(default_factory=RoboTwinConfig)
    """embodiment, planner, seeds"""


def make(cfg: RoboTwinEnvConfig, num_action_chunks: int):
    from dagger_cli.envs.robotwin.env import RoboTwinVecEnv

    return RoboTwinVecEnv(cfg, num_action_chunks)


def checks(cfg):
    from dagger_cli.envs.robotwin.probes import probes

    return probes(cfg)


def __getattr__(name: str):
    if name in _LAZY:
        from dagger_cli.envs.robotwin import env

        return getattr(env, name)
    raise AttributeError(name)


ADAPTER = EnvAdapter(
    "robotwin", RoboTwinEnvConfig, make, probes=checks,
    worker_env=("ROBOTWIN_PATH", "ROBOTWIN_ASSETS_ROOT", "ASSETS_PATH", "ROBOT_PLATFORM"),
)
