"""ManiSkill 3 adapter: CPU physics in gymnasium AsyncVectorEnv workers (one env: in this process), or ManiSkill's
batched GPU simulation.

Works without Vulkan: rendering is off (`render_backend="none"`) and, where no render device exists, SAPIEN's
`RenderMaterial` (which ManiSkill builds eagerly for cubes and spheres) is replaced by an inert stand-in before the
first env is made, in every worker process. No visual is ever attached while `scene.can_render()` is False.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from dagger_cli.core.errors import EnvUnavailableError
from dagger_cli.envs._workers import WorkerEnvMixin, start_forkserver, start_workers

_PRELOAD = "dagger_cli.envs.maniskill._preload"

# Observation fix-ups on reset, per task. PickCube's state obs[18] (is_grasped) is stale right after a reset: it
# still reports the previous episode's last contacts because no physics step has run yet.
_RESET_OBS_FIXES = {"PickCube-v1": ((18, 0.0),)}


class _InertRenderMaterial:
    """Accepts any constructor arguments; every attribute is a no-op callable."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def ensure_physics_only_sapien() -> str:
    """Imports SAPIEN and, if it has no render device, swaps in the inert material. Returns 'render' or 'none'."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*libvulkan.*")
        import sapien

    if getattr(sapien.render.RenderMaterial, "__name__", "") == _InertRenderMaterial.__name__:
        return "none"
    try:
        sapien.pysapien.render.RenderMaterial(base_color=[1, 0, 0, 1])
        return "render"
    except RuntimeError:
        sapien.render.RenderMaterial = _InertRenderMaterial
        sapien.pysapien.render.RenderMaterial = _InertRenderMaterial
        return "none"


def import_maniskill():
    """Imports ManiSkill's envs; a missing install is a one-line error."""
    try:
        ensure_physics_only_sapien()
        import gymnasium
        import mani_skill.envs  # noqa: F401  (registers the tasks)
    except ImportError as e:
        raise EnvUnavailableError(
            f"ManiSkill is not installed ({e.name or e}); install it with: pip install 'dagger-cli[maniskill]'"
        ) from None
    return gymnasium


def _make_cpu_env(task: str, obs_mode: str, control_mode: str, max_episode_steps: int):
    """Runs in a worker process (and once in the parent, where gymnasium reads the spaces): one physx_cpu env."""
    gym = import_maniskill()
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

    env = gym.make(
        task,
        obs_mode=obs_mode,
        control_mode=control_mode,
        render_mode=None,
        sim_backend="physx_cpu",
        render_backend="none",
        reward_mode="none",  # DAgger reads success only; PickCube's dense reward is ~8% of a step
        num_envs=1,
        max_episode_steps=max_episode_steps,
    )
    return CPUGymWrapper(env, ignore_terminations=True)  # episodes end where the engine says


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class ManiSkillVecEnv(WorkerEnvMixin):
    """`VecEnv` over ManiSkill; episodes are started and ended by the engine (no auto-reset)."""

    def __init__(self, cfg, num_action_chunks: int = 1):
        self.num_envs = cfg.num_envs
        self.num_action_chunks = num_action_chunks
        self._fixes = _RESET_OBS_FIXES.get(cfg.task, ())
        self._in_process = cfg.num_envs == 1  # a worker process would only add a pipe round trip per step
        if cfg.sim_backend != "gpu" and not self._in_process:
            start_forkserver(_PRELOAD)  # imports ManiSkill there while this process imports it too
        gym = import_maniskill()
        if cfg.task not in gym.registry:
            raise EnvUnavailableError(f"env.task: ManiSkill has no task {cfg.task!r}")
        backend = cfg.sim_backend
        if backend == "auto":
            backend = "gpu" if _cuda_available() else "cpu"
        if backend == "gpu" and not _cuda_available():
            raise EnvUnavailableError("env.sim_backend is 'gpu' but CUDA is not available; use 'cpu'")
        self.backend = backend
        if backend == "gpu":
            self._env = self._make_gpu(gym, cfg)
        else:
            self._env = self._make_cpu(gym, cfg)
        low, high = self._action_bounds
        self._low, self._high = low.astype(np.float32), high.astype(np.float32)
        self.action_dim = int(self._low.shape[0])

    def _make_cpu(self, gym, cfg):
        make = partial(_make_cpu_env, cfg.task, cfg.obs_mode, cfg.control_mode, cfg.max_episode_steps)
        env = start_workers([make] * cfg.num_envs, _PRELOAD, f"ManiSkill {cfg.task}", in_process=self._in_process)
        self._action_bounds = (env.single_action_space.low, env.single_action_space.high)
        self.obs_shape = tuple(env.single_observation_space.shape)
        return env

    def _make_gpu(self, gym, cfg):
        from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv

        env = gym.make(
            cfg.task,
            obs_mode=cfg.obs_mode,
            control_mode=cfg.control_mode,
            render_mode=None,
            sim_backend="physx_cuda",
            reward_mode="none",
            num_envs=cfg.num_envs,
            max_episode_steps=cfg.max_episode_steps,
        )
        env = ManiSkillVectorEnv(env, auto_reset=False, ignore_terminations=True)
        self._action_bounds = (env.single_action_space.low, env.single_action_space.high)
        self.obs_shape = tuple(env.single_observation_space.shape)
        return env

    def _to_numpy(self, obs) -> np.ndarray:
        if self.backend == "gpu":
            obs = obs.detach().cpu().numpy()
        return np.asarray(obs, dtype=np.float32)

    def reset(self, seeds: list[int], mask: np.ndarray | None = None) -> np.ndarray:
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if self.backend == "gpu":
            import torch

            idx = torch.as_tensor(np.flatnonzero(mask), device=self._env.base_env.device)
            obs, _ = self._env.reset(seed=[int(s) for s in seeds], options={"env_idx": idx})
        else:
            obs, _ = self._env.reset(seed=[int(s) for s in seeds], options={"reset_mask": mask})
        obs = self._to_numpy(obs).copy()
        for index, value in self._fixes:
            obs[mask, index] = value
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1, self.action_dim)
        success = np.zeros((self.num_envs, self.num_action_chunks), dtype=bool)
        obs = None
        for c in range(self.num_action_chunks):
            action = np.clip(actions[:, c], self._low, self._high)
            if self.backend == "gpu":
                import torch

                action = torch.as_tensor(action, device="cuda")
            obs, _, _, _, info = self._env.step(action)
            s = info["success"]
            success[:, c] = s.cpu().numpy() if hasattr(s, "cpu") else np.asarray(s, dtype=bool)
        return self._to_numpy(obs), success

