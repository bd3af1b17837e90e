"""RLinf's MLP policy: 3×256 tanh backbone, linear mean head, learned log-std; same state-dict key names.

Keys: `backbone.{0,2,4}.{weight,bias}`, `actor_mean.{weight,bias}`, `actor_logstd`. An RLinf `full_weights.pt`
(optionally with a PPO value head, whose `value_head.*` keys are ignored) loads as expert or as student warm start.
DAgger uses the Gaussian mean only: the loss is MSE(mean, expert action) and `actor_logstd` gets no gradient.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _layer_init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class MLPActor(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, num_action_chunks: int = 1, hidden_dim: int = 256):
        super().__init__()
        out = action_dim * num_action_chunks
        gain = math.sqrt(2)
        self.backbone = nn.Sequential(
            _layer_init(nn.Linear(obs_dim, hidden_dim), gain),
            nn.Tanh(),
            _layer_init(nn.Linear(hidden_dim, hidden_dim), gain),
            nn.Tanh(),
            _layer_init(nn.Linear(hidden_dim, hidden_dim), gain),
            nn.Tanh(),
        )
        self.actor_mean = _layer_init(nn.Linear(hidden_dim, out), 0.01 * gain)
        self.actor_logstd = nn.Parameter(torch.full((1, out), -0.5))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor_mean(self.backbone(obs))


class MLPPolicy:
    """`TrainablePolicy` around `MLPActor`: numpy in, (batch, chunks, action_dim) numpy out."""

    def __init__(self, cfg, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.action_shape = (cfg.num_action_chunks, cfg.action_dim)
        self.obs_dim = cfg.obs_dim
        self.module = MLPActor(cfg.obs_dim, cfg.action_dim, cfg.num_action_chunks, cfg.hidden_dim).to(self.device)

    def _obs(self, obs: np.ndarray) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"MLP policy expects observations of shape (batch, {self.obs_dim}), got {tuple(obs.shape)}")
        return obs

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        mean = self.module(self._obs(obs))
        return mean.reshape(len(mean), *self.action_shape).cpu().numpy()

    def _mean_and_target(self, obs: np.ndarray, expert_actions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.module(self._obs(obs))
        target = torch.as_tensor(np.asarray(expert_actions), dtype=torch.float32, device=self.device)
        return mean, target[:, : self.action_shape[0]].reshape(len(target), -1)

    def loss(self, obs: np.ndarray, expert_actions: np.ndarray) -> torch.Tensor:
        return nn.functional.mse_loss(*self._mean_and_target(obs, expert_actions))

    def per_sample_loss(self, obs: np.ndarray, expert_actions: np.ndarray) -> torch.Tensor:
        """Each sample's MSE (batch,): their mean is `loss`."""
        return nn.functional.mse_loss(*self._mean_and_target(obs, expert_actions), reduction="none").mean(dim=1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
