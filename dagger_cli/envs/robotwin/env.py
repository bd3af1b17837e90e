"""RoboTwin 2.0 adapter over its `VectorEnv` (package `rlinf-robotwin-runtime`, or a checkout at ROBOTWIN_PATH).

- Runtime: `robotwin.envs.vector_env.VectorEnv(task_config, n_envs, env_seeds)`, which builds the scenes itself;
  it needs an NVIDIA GPU with Vulkan (SAPIEN's ray-traced cameras). `env.assets_path` sets ROBOTWIN_ASSETS_ROOT
  and ASSETS_PATH (the runtime package reads the first, RoboTwin's task code the second); ROBOT_PLATFORM defaults to
  ALOHA, as RLinf's scripts export it.
- Seeds: RoboTwin scenes are drawn from a seed; RLinf trains on a list of "success seeds" (seeds whose scripted
  demonstration succeeds) and evaluates on a separate list. The bundled lists are RLinf's own files
  (rlinf/envs/robotwin/seeds/{train,eval}_seeds.json at RLinf a3816b5, Apache-2.0; adjust_bottle: 1,000 train seeds
  within 0-1262, 150 eval seeds within 100100000-100100177). Every list, bundled or `env.robotwin.*_seeds_path`,
  goes through RLinf's pick (`worker_slices`, `reset_order`): RLinf runs its 64 envs as 4 env workers of 16, and
  each worker shuffles the list with `torch.randperm` under a generator seeded with env.seed 0, takes its quarter
  of the shuffled list (worker k: positions k*q .. (k+1)*q, q = len // 4) cut to a multiple of 16, and resets its
  16 envs with the next 16 seeds of that slice (wrapping); its evaluation keeps the first 16 forever. `reset_order`
  lays the slices out as RLinf's workers use them, round by round and worker-major (round r: worker 0's 16 seeds,
  then worker 1's, ...). Engine reset seeds below the engine's EVAL_SEED_LIMIT are evaluation episodes: episode i
  takes `eval_order[i % len(eval_order)]`, so episodes 0..63 are RLinf's 64 evaluation episodes in its order, 64..127
  the second 16 of each worker's slice (the seeds RLinf's workers would reset with next), then it wraps (adjust_bottle:
  128 distinct eval seeds; the other 22 are in no slice). The others are training episodes: reset seed s takes
  `train_order[(s - EVAL_SEED_LIMIT) % len(train_order)]` (adjust_bottle: the 960 seeds of RLinf's training slices,
  4 x 240; RLinf's cut leaves 40 of the 1,000 unused). The engine draws training reset seeds at random, so training
  episodes sample RLinf's training set uniformly, not in its cycle.
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

from dagger_cli.core.config import EVAL_SEED_LIMIT
from dagger_cli.core.errors import ConfigError, EnvUnavailableError

ACTION_DIM = 14
IMAGE_SHAPE = (240, 320, 3)
CAMERAS = {"image": "full_image", "left_wrist_image": "left_wrist_image", "right_wrist_image": "right_wrist_image"}
INSTALL_HINT = (
    "pip install --no-deps rlinf-robotwin-runtime (see docs/robotwin.md), or point ROBOTWIN_PATH at a RoboTwin "
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
RLINF_ENV_WORKERS = 4
"""env worker processes of RLinf's robotwin_adjust_bottle configs (64 envs, component_placement env: 4-7); each
takes its own slice of the seed list"""
RLINF_ENVS_PER_WORKER = 16
"""envs per RLinf env worker (group_size 1: 16 groups), which reset with 16 seeds of the worker's slice at a time"""
RLINF_ENV_SEED = 0
"""RLinf's env.seed, the base seed of the seed-list shuffle (the same in every worker)"""


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
    entry = data.get(task) if isinstance(data, dict) else None
    seeds = entry.get("success_seeds") if isinstance(entry, dict) else None
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise ConfigError(f"{key}: {file} has no {task}.success_seeds list of integers")
    if len(seeds) < RLINF_ENV_WORKERS * RLINF_ENVS_PER_WORKER:
        raise ConfigError(f"{key}: {file} has {len(seeds)} {task} seeds; RLinf's pick ({RLINF_ENV_WORKERS} env "
                          f"workers x {RLINF_ENVS_PER_WORKER} envs) needs at least "
                          f"{RLINF_ENV_WORKERS * RLINF_ENVS_PER_WORKER}")
    return seeds


def worker_slices(seeds: list[int], workers: int = RLINF_ENV_WORKERS, envs_per_worker: int = RLINF_ENVS_PER_WORKER,
                  shuffle_seed: int = RLINF_ENV_SEED) -> list[list[int]]:
    """Each RLinf env worker's share of a seed list: the list permuted by `torch.randperm` under a CPU generator
    seeded with `shuffle_seed` (the same permutation in every worker), cut into `workers` equal consecutive parts
    (the remainder dropped), each cut to a multiple of `envs_per_worker`."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(shuffle_seed)
    order = torch.randperm(len(seeds), generator=generator).tolist()
    part = len(seeds) // workers
    keep = part - part % envs_per_worker
    return [[seeds[i] for i in order[w * part : w * part + keep]] for w in range(workers)]


def reset_order(seeds: list[int], workers: int = RLINF_ENV_WORKERS,
                envs_per_worker: int = RLINF_ENVS_PER_WORKER, shuffle_seed: int = RLINF_ENV_SEED) -> list[int]:
    """The seeds of `worker_slices` in the order RLinf's workers reset with them: reset round r holds worker 0's
    envs 0..15 (its slice's r-th 16 seeds), then worker 1's, ...; every kept seed once (RLinf's workers then wrap).
    Round 0 is RLinf's fixed evaluation set."""
    slices = worker_slices(seeds, workers, envs_per_worker, shuffle_seed)
    n = envs_per_worker
    return [seed for r in range(0, len(slices[0]), n) for part in slices for seed in part[r : r + n]]


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
        self.train_order = reset_order(self.train_seeds)
        self.eval_order = reset_order(self.eval_seeds)
        set_environment(cfg.assets_path)
        vector_env = import_vector_env()
        self._scene_seeds = [self.scene_seed(i) for i in range(self.num_envs)]
        try:
            self._env = vector_env(task_config=task_config(cfg), n_envs=self.num_envs, env_seeds=self._scene_seeds)
        except Exception as e:
            raise EnvUnavailableError(f"RoboTwin {cfg.task}: cannot build the envs: {e}") from None

    def scene_seed(self, seed: int) -> int:
        """The RoboTwin seed an engine reset seed stands for: evaluation episode i (seed i < EVAL_SEED_LIMIT) the i-th
        of RLinf's evaluation pick (wrapping), a training seed s the (s - EVAL_SEED_LIMIT)-th of RLinf's training
        slices in reset order (wrapping); see the module docstring."""
        if seed < EVAL_SEED_LIMIT:
            return self.eval_order[seed % len(self.eval_order)]
        return self.train_order[(seed - EVAL_SEED_LIMIT) % len(self.train_order)]

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
