"""LIBERO env adapter (`env.type: libero`): the `libero.libero` API in forkserver workers, rendered with EGL or
OSMesa. See `env.py`."""

from __future__ import annotations

from dataclasses import dataclass

from dagger_cli.core.config import EnvConfig, check, check_positive
from dagger_cli.core.registry import EnvAdapter, Probe

_LAZY = {"LiberoTaskEnv", "LiberoVecEnv", "import_libero", "load_suite", "choose_renderer", "task_of"}


@dataclass
class LiberoEnvConfig(EnvConfig):
    type: str = "libero"
    task: str = "libero_spatial"
    image_size: int = 256
    """camera render size (the policy resizes to its own)"""
    settle_steps: int = 15
    """steps of no motion with the gripper open after each reset"""
    hard_reset: bool = True
    """rebuild the MuJoCo model at every reset, as LIBERO and RLinf do (≈3 s); false resets the data only (≈0.3 s
    with settling), measured to keep the scripted expert's success (docs/libero.md, bench/libero_expert.py --soft-reset)"""
    task_sims: int = 1
    """task simulations each env worker keeps built: a reset to a kept task skips building its env (≈4 s on a 2-core
    CPU), at ≈0.8 GB of RAM each under OSMesa; 1 builds one at every change of task, as LIBERO and RLinf do"""
    task_affinity: bool = False
    """training episodes: env i runs only its contiguous share of the suite's tasks (2 envs, 10 tasks: 0–4 and 5–9),
    init states as before, so with task_sims at least that share its resets never build a simulation; evaluation
    keeps RLinf's protocol"""
    fast_render: bool = False
    """cameras without multisampling and reflections: ≈2× cheaper renders on a CPU, pixels slightly different from
    LIBERO's (a policy trained on one should be evaluated on the same)"""
    scripted_expert: bool = False
    """the env workers compute the scripted expert's label chunk from the simulator at every policy step (for
    rollout.expert_model.model_type: scripted; libero_spatial)"""

    def check(self, key: str, cfg) -> None:
        check_positive(self, key, "image_size")
        check_positive(self, key, "task_sims")
        check(self.settle_steps >= 0, f"{key}.settle_steps", f"must not be negative, got {self.settle_steps}")
        check(not self.scripted_expert or self.task == "libero_spatial", f"{key}.scripted_expert",
              f"the scripted expert knows libero_spatial's tasks, not {self.task}'s")


def make(cfg: LiberoEnvConfig, num_action_chunks: int):
    from dagger_cli.envs.libero.env import LiberoVecEnv

    return LiberoVecEnv(cfg, num_action_chunks)


def scripted_expert(cfg: LiberoEnvConfig, num_action_chunks: int = 1):
    """The libero_spatial expert that reads the simulator; its labels come from the env workers."""
    from dagger_cli.core.errors import ConfigError

    if not cfg.scripted_expert:
        raise ConfigError("rollout.expert_model.model_type: scripted: the LIBERO expert reads the simulator in the "
                          "env workers; set env.scripted_expert: true")
    from dagger_cli.envs.libero.env import ScriptedExpertLabels

    return ScriptedExpertLabels(num_action_chunks)


def checks(cfg) -> list[Probe]:
    from dagger_cli.envs.libero import probes as probe

    return [Probe("simulator", probe.simulator), Probe("renderer", probe.renderer, ("simulator",))]


def __getattr__(name: str):  # the env module's names, imported (with gymnasium) only when asked for
    if name in _LAZY:
        from dagger_cli.envs.libero import env

        return getattr(env, name)
    raise AttributeError(name)


ADAPTER = EnvAdapter("libero", LiberoEnvConfig, make, scripted_expert, probes=checks,
                     worker_env=("MUJOCO_GL", "PYOPENGL_PLATFORM"), control_hz=20.0)  # robosuite's control_freq
