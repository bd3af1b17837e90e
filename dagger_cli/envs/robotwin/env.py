"""RoboTwin 2.0 adapter over its `VectorEnv` (package `rlinf-robotwin-runtime`, or a checkout at ROBOTWIN_PATH).

- Runtime: `robotwin.envs.vector_env.VectorEnv(task_config, n_envs, env_seeds)`, which builds the scenes itself;
  it needs an NVIDIA GPU with Vulkan (SAPIEN's ray-traced cameras). `env.assets_path` sets ROBOTWIN_ASSETS_ROOT
  and ASSETS_PATH (the runtime package reads the first, RoboTwin's task code the second); ROBOT_PLATFORM defaults to
  ALOHA, as RLinf's scripts export it.
- Seeds: RoboTwin scenes are drawn from a seed; RLinf trains on a list of "success seeds" (seeds whose scripted
  demonstration succeeds) and evaluates on a separate list. Engine reset seeds below the engine's EVAL_SEED_LIMIT
  are evaluation episodes (episode i takes eval seed i, wrapping), the others training episodes (a training seed
  picked by the reset seed).
- Observation: `image` (head camera), `left_wrist_image`, `right_wrist_image` (uint8 240×320×3), `state` (14-D:
  per arm 6 joints + gripper), `prompt` (the episode's instruction): π₀'s three Aloha camera slots.
- Action: a chunk of `num_action_chunks` 14-D absolute joint targets (gripper 0 closed .. 1 open), executed by one
  `VectorEnv.step` (planned with mplib, success checked after every simulator step). Success is reported per chunk:
  on the chunk's last step.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from dagger_cli.core.errors import ConfigError, EnvUnavailableError
from dagger_cli.core.rollout import EVAL_SEED_LIMIT

ACTION_DIM = 14
IMAGE_SHAPE = (240, 320, 3)
CAMERAS = {"image": "full_image", "left_wrist_image": "left_wrist_image", "right_wrist_image": "right_wrist_image"}
INSTALL_HINT = (
    "pip install --no-deps rlinf-robotwin-runtime (see README: RoboTwin), or point ROBOTWIN_PATH at a RoboTwin "
    "checkout"
)


# RUNTIME
def assets_root(assets_path: str | None) -> Path:
    """The assets folder: env.assets_path, else ROBOTWIN_ASSETS_ROOT; one error line when neither is set."""
    raw = assets_path or os.environ.get("ROBOTWIN_ASSETS_ROOT")
    if not raw:
        raise ConfigError("env.assets_path: RoboTwin needs its assets folder (the parent of assets/; "
                          "`robotwin-download-assets --output DIR` from rlinf-robotwin-runtime fetches it)")
    return Path(raw).expanduser().resolve()


def set_environment(assets_path: str | None) -> dict[str, str]:
    """Exports what the runtime reads, both assets variables from one folder; returns the effective values."""
    root = str(assets_root(assets_path))
    os.environ["ROBOTWIN_ASSETS_ROOT"] = root
    os.environ["ASSETS_PATH"] = root
    os.environ.setdefault("ROBOT_PLATFORM", "ALOHA")
    keys = ("ROBOTWIN_ASSETS_ROOT", "ASSETS_PATH", "ROBOT_PLATFORM", "ROBOTWIN_PATH")
    return {k: os.environ[k] for k in keys if k in os.environ}


def import_vector_env():
    """RoboTwin's VectorEnv class, from ROBOTWIN_PATH if set, else the installed runtime package."""
    checkout = os.environ.get("ROBOTWIN_PATH")
    if checkout:
        if not Path(checkout, "robotwin", "envs", "vector_env.py").is_file():
            raise EnvUnavailableError(f"ROBOTWIN_PATH={checkout} has no robotwin/envs/vector_env.py")
        if checkout not in sys.path:
            sys.path.insert(0, checkout)
    try:
        from robotwin.envs.vector_env import VectorEnv
    except ImportError as e:
        raise EnvUnavailableError(f"RoboTwin is not importable ({e.name or e}); {INSTALL_HINT}") from None
    return VectorEnv


def load_task_config(name: str) -> dict:
    """A RoboTwin task config (e.g. demo_clean) as the runtime packages it, or from a checkout's task_config/."""
    try:
        from robotwin.config import load_task_config as packaged
    except ImportError:
        packaged = None
    if packaged is not None:
        try:
            return packaged(name)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"env.robotwin.task_config: {e}") from None
    import yaml

    path = Path(os.environ.get("ROBOTWIN_PATH", "."), "task_config", f"{name}.yml")
    if not path.is_file():
        raise ConfigError(f"env.robotwin.task_config: RoboTwin has no {name!r} ({path} does not exist)")
    return yaml.safe_load(path.read_text())


def task_config(cfg) -> dict:
    """What RoboTwin's VectorEnv takes: the named task config with RLinf's adjust_bottle settings on top."""
    r = cfg.robotwin
    config = load_task_config(r.task_config)
    config.update({
        "task_name": cfg.task,
        "step_lim": cfg.max_episode_steps,
        "planner_backend": r.planner_backend,  # set always: the runtime falls back to curobo
        "embodiment": [r.embodiment],
        "render_freq": 0,
        "collect_data": False,
        "eval_video_log": False,
    })
    return config


# SEEDS
def bundled_seeds(kind: str) -> Path:
    return Path(str(resources.files("dagger_cli.envs.robotwin") / "seeds" / f"{kind}_seeds.json"))


def load_seeds(path: str | None, kind: str, task: str) -> list[int]:
    """`task`'s seed list from a JSON in RLinf's format ({task: {"success_seeds": [...]}}); the bundled one if None."""
    key = f"env.robotwin.{kind}_seeds_path"
    file = Path(path).expanduser() if path else bundled_seeds(kind)
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{key}: {file} does not exist") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key}: {file} is not readable JSON ({e})") from None
    seeds = data.get(task, {}).get("success_seeds") if isinstance(data, dict) else None
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{key}: {file} has no {task}.success_seeds list of integers")
    return seeds


# ADAPTER
class RoboTwinVecEnv:
    """`VecEnv` over one RoboTwin VectorEnv; episodes are started and ended by the engine (no auto-reset)."""

    def __init__(self, cfg, num_action_chunks: int):
        self.num_envs = cfg.num_envs
        self.num_action_chunks = num_action_chunks
        self.action_dim = ACTION_DIM
        self.obs_shape = (ACTION_DIM,)
        self.train_seeds = load_seeds(cfg.robotwin.train_seeds_path, "train", cfg.task)
        self.eval_seeds = load_seeds(cfg.robotwin.eval_seeds_path, "eval", cfg.task)
        set_environment(cfg.assets_path)
        vector_env = import_vector_env()
        self._scene_seeds = [self.scene_seed(i) for i in range(self.num_envs)]
        try:
            self._env = vector_env(task_config=task_config(cfg), n_envs=self.num_envs, env_seeds=self._scene_seeds)
        except Exception as e:
            raise EnvUnavailableError(f"RoboTwin {cfg.task}: cannot build the envs: {e}") from None

    def scene_seed(self, seed: int) -> int:
        """The RoboTwin seed an engine reset seed stands for."""
        if seed < EVAL_SEED_LIMIT:
            return self.eval_seeds[seed % len(self.eval_seeds)]
        return self.train_seeds[seed % len(self.train_seeds)]

    def _obs(self) -> dict[str, np.ndarray]:
        raw = self._env.get_obs()
        obs = {}
        for slot, key in CAMERAS.items():
            frames = [r.get(key) for r in raw]
            obs[slot] = np.stack([np.zeros(IMAGE_SHAPE, np.uint8) if f is None else np.asarray(f, np.uint8)
                                  for f in frames])
        obs["state"] = np.stack([np.asarray(r["state"], np.float32) for r in raw])
        obs["prompt"] = np.array([r["instruction"] for r in raw])
        return obs

    def reset(self, seeds: list[int], mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        index = [int(i) for i in np.flatnonzero(mask)]
        for i in index:
            self._scene_seeds[i] = self.scene_seed(int(seeds[i]))
        self._env.reset(env_idx=index, env_seeds=[self._scene_seeds[i] for i in index])  # one seed per index
        return self._obs()

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, self.num_action_chunks, ACTION_DIM)
        _, _, _, _, infos = self._env.step(actions)
        success = np.zeros((self.num_envs, self.num_action_chunks), dtype=bool)
        success[:, -1] = [bool(np.asarray(info.get("success", False)).any()) for info in infos]
        return self._obs(), success

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            env.close(clear_cache=True)
