"""Fake `robotwin.envs.vector_env.VectorEnv` with the real contract, for tests (no SAPIEN, no GPU, no assets).

Contract (rlinf-robotwin-runtime 0.1.3): `VectorEnv(task_config, n_envs, env_seeds)` needs ROBOTWIN_ASSETS_ROOT
(a folder with assets/); `reset(env_idx=None, env_seeds=None)` takes one seed per index (else keeps the old seeds)
and returns nothing; `get_obs()` returns one dict per env
with `full_image`, `left_wrist_image`, `right_wrist_image` (uint8 240x320x3), `state` (float64[14]) and
`instruction`; `step(actions[n, chunk, 14])` returns (obs list, rewards, terminated, truncated, infos with
`success`); a successful env ignores later actions; `close(clear_cache=True)`.

Dynamics: joints move halfway to their targets each step. A scene's seed picks the arm (even: left, odd: right); the
bottle is raised once that arm's second joint is above 0.8 with its gripper closed (< 0.2).
"""

from __future__ import annotations

import os

import numpy as np

H, W = 240, 320
ARMS = ("left", "right")


def raise_bottle_action(seed: int, chunk: int) -> np.ndarray:
    """The action chunk that solves a scene (for tests' scripted experts)."""
    arm = seed % 2
    target = np.full(14, 0.5)
    target[[6, 13]] = 1.0
    target[arm * 7 + 1], target[arm * 7 + 6] = 1.0, 0.0
    return np.tile(target, (chunk, 1))


class VectorEnv:
    def __init__(self, task_config: dict, n_envs: int, env_seeds: list[int]):
        root = os.environ.get("ROBOTWIN_ASSETS_ROOT")
        if not root:
            raise ValueError("ROBOTWIN_ASSETS_ROOT must point to the root containing assets/")
        if not os.path.isdir(os.path.join(root, "assets")):
            raise FileNotFoundError(f"{root} has no assets/")
        for key in ("task_name", "planner_backend", "embodiment", "step_lim", "save_path", "camera"):
            if key not in task_config:
                raise KeyError(f"task_config lacks {key!r}")
        if task_config["task_name"] != "adjust_bottle":
            raise ValueError(f"fake RoboTwin knows only adjust_bottle, not {task_config['task_name']!r}")
        self.task_config, self.n_envs = task_config, n_envs
        self.step_lim = int(task_config["step_lim"])
        self.seeds = list(env_seeds)
        self.state = np.zeros((n_envs, 14))
        self.elapsed = np.zeros(n_envs, dtype=np.int64)
        self.success = np.zeros(n_envs, dtype=bool)
        self.reset_calls: list[tuple[list[int], list[int]]] = []
        self.actions_seen: list[tuple[int, ...]] = []
        self.closed = False
        self.reset()

    def reset(self, env_idx=None, env_seeds=None) -> None:
        idx = list(range(self.n_envs)) if env_idx is None else [int(i) for i in env_idx]
        if env_seeds is not None and len(env_seeds) == len(idx):  # as the runtime: one seed per index, else kept
            for i, seed in zip(idx, env_seeds):
                self.seeds[i] = int(seed)
        self.reset_calls.append((idx, list(self.seeds)))
        for i in idx:
            self.state[i] = 0.5
            self.state[i, [6, 13]] = 1.0  # grippers open
            self.elapsed[i] = 0
            self.success[i] = False

    def _camera(self, i: int, part: slice, channel: int) -> np.ndarray:
        image = np.full((H, W, 3), self.seeds[i] % 200, dtype=np.uint8)
        image[..., channel] += 50  # each camera has its own tint
        bars = np.clip(self.state[i, part], 0, 1) * (W - 1)
        for row, length in enumerate(bars):
            image[row * 30 : row * 30 + 20, : int(length)] = 255
        return image

    def get_obs(self) -> list[dict]:
        return [
            {
                "full_image": self._camera(i, slice(0, 14, 2), 0),
                "left_wrist_image": self._camera(i, slice(0, 7), 1),
                "right_wrist_image": self._camera(i, slice(7, 14), 2),
                "state": self.state[i].copy(),
                "instruction": "Raise the plastic drink bottle from the table using the correct arm, "
                f"the {ARMS[self.seeds[i] % 2]} arm.",
            }
            for i in range(self.n_envs)
        ]

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 3 or actions.shape[0] != self.n_envs or actions.shape[2] != 14:
            raise ValueError(f"actions must be [n_envs, chunk, 14], got {actions.shape}")
        self.actions_seen.append(actions.shape)
        for i in range(self.n_envs):
            for target in actions[i]:
                if self.success[i] or self.elapsed[i] >= self.step_lim:
                    break  # a finished episode returns at once
                self.state[i] += 0.5 * (target - self.state[i])
                self.elapsed[i] += 1
                arm = self.seeds[i] % 2
                self.success[i] = self.state[i, arm * 7 + 1] > 0.8 and self.state[i, arm * 7 + 6] < 0.2
        rewards = [np.array([float(s)], np.float32) for s in self.success]
        terminated = [np.array([int(s)], np.int32) for s in self.success]
        truncated = [np.array([int(e >= self.step_lim)], np.int32) for e in self.elapsed]
        infos = [{"success": bool(s)} for s in self.success]
        return self.get_obs(), rewards, terminated, truncated, infos

    def check_seeds(self, seeds):
        return list(seeds)

    def close(self, clear_cache: bool = True) -> None:
        self.closed = True
