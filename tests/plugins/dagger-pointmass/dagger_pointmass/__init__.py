"""Example third-party adapters for dagger, registered through entry points (see pyproject.toml).

- `env.type: point-mass`: a gymnasium task, a point in the plane pushed by velocity commands towards a goal; a
  scripted expert that heads straight for the goal; one `dagger check` probe.
- `model_type: linear`: a linear student (obs -> action), trained on the MSE to the expert's labels.
- a preset, `point-mass`, shipped in the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dagger_cli.core.config import EnvConfig, ModelConfig, check, check_positive
from dagger_cli.core.registry import EnvAdapter, PolicyAdapter, Probe


# ENV
@dataclass
class PointMassConfig(EnvConfig):
    """The `env` section of point-mass: the generic keys and these two."""

    type: str = "point-mass"
    task: str = "reach"
    goal_radius: float = 0.05
    """success when the point is this close to the goal (from the farthest start the scripted expert needs about
    20 steps)"""
    speed: float = 0.1
    """distance one action of norm 1 moves the point"""

    def check(self, key: str, cfg) -> None:
        check(self.task == "reach", f"{key}.task", f"point-mass has one task, 'reach', not {self.task!r}")
        check_positive(self, key, "goal_radius", "speed")


class PointMass:
    """A gymnasium env: observation [x, y, goal_x, goal_y], action a 2-D velocity in [-1, 1]²."""

    def __new__(cls, goal_radius: float, speed: float):
        import gymnasium as gym

        class _PointMass(gym.Env):
            observation_space = gym.spaces.Box(-2.0, 2.0, (4,), np.float32)
            action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.state = self.np_random.uniform(-1, 1, 4).astype(np.float32)
                return self.state.copy(), {}

            def step(self, action):
                self.state[:2] += speed * np.clip(action, -1, 1)
                success = bool(np.linalg.norm(self.state[:2] - self.state[2:]) < goal_radius)
                return self.state.copy(), 0.0, False, False, {"success": success}

        return _PointMass()


class PointMassVecEnv:
    """`VecEnv` over gymnasium's SyncVectorEnv (no auto-reset: the engine starts and ends the episodes)."""

    obs_shape = (4,)
    action_dim = 2

    def __init__(self, cfg: PointMassConfig, num_action_chunks: int):
        import gymnasium as gym

        self.num_envs, self.num_action_chunks = cfg.num_envs, num_action_chunks
        make = lambda: PointMass(cfg.goal_radius, cfg.speed)  # noqa: E731
        self._env = gym.vector.SyncVectorEnv([make] * cfg.num_envs, autoreset_mode=gym.vector.AutoresetMode.DISABLED)

    def reset(self, seeds, mask=None):
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        obs, _ = self._env.reset(seed=[int(s) for s in seeds], options={"reset_mask": mask})
        return obs

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1, self.action_dim)
        success = np.zeros((self.num_envs, self.num_action_chunks), dtype=bool)
        for c in range(self.num_action_chunks):
            obs, _, _, _, info = self._env.step(actions[:, c])
            success[:, c] = info["success"]
        return obs, success

    def close(self):
        self._env.close()


class HeadForTheGoal:
    """The scripted expert: a velocity proportional to the way left (the env clips it to [-1, 1])."""

    action_shape = (1, 2)
    gain = 2.0

    def act(self, obs):
        obs = np.asarray(obs)
        return (self.gain * (obs[:, 2:] - obs[:, :2]))[:, None, :].astype(np.float32)


def _gymnasium_probe() -> str:
    from importlib.metadata import version

    return f"gymnasium {version('gymnasium')}: point-mass needs nothing else"


ENV = EnvAdapter(
    "point-mass",
    PointMassConfig,
    make=lambda cfg, chunks: PointMassVecEnv(cfg, chunks),
    scripted_expert=lambda cfg, num_action_chunks: HeadForTheGoal(),
    probes=lambda cfg: [Probe("gymnasium", _gymnasium_probe)],
    presets=lambda: Path(__file__).parent / "presets",
)


# POLICY
@dataclass
class LinearConfig(ModelConfig):
    model_type: str = "linear"
    obs_dim: int = 4
    """observation size"""

    def check(self, key: str, cfg) -> None:
        check_positive(self, key, "obs_dim")


class LinearPolicy:
    """`TrainablePolicy`: one linear layer, observation -> action, MSE to the expert's first labelled step."""

    def __init__(self, cfg: LinearConfig, device: str):
        import torch

        self.device = torch.device(device)
        self.action_shape = (cfg.num_action_chunks, cfg.action_dim)
        self.module = torch.nn.Linear(cfg.obs_dim, cfg.action_dim * cfg.num_action_chunks).to(self.device)

    def _forward(self, obs):
        import torch

        return self.module(torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device))

    def act(self, obs):
        import torch

        with torch.no_grad():
            return self._forward(obs).reshape(len(obs), *self.action_shape).cpu().numpy()

    def loss(self, obs, expert_actions):
        import torch

        target = torch.as_tensor(np.asarray(expert_actions)[:, : self.action_shape[0]], device=self.device)
        return torch.nn.functional.mse_loss(self._forward(obs), target.reshape(len(target), -1))

    def state_dict(self):
        return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state):
        self.module.load_state_dict(state)


def _student(cfg, device, weights):
    policy = LinearPolicy(cfg.actor.model, device)
    if weights:
        from dagger_cli.policies.weights import load_into

        load_into(policy.module, weights, "linear student")
    return policy


POLICY = PolicyAdapter("linear", LinearConfig, student=_student, expert=None)
