"""RLinf's MLP policy: 3×256 tanh backbone, linear mean head, learned log-std; same state-dict key names.

Keys: `backbone.{0,2,4}.{weight,bias}`, `actor_mean.{weight,bias}`, `actor_logstd`. An RLinf `full_weights.pt`
(optionally with a PPO value head, whose `value_head.*` keys are ignored) loads as expert or as student warm start.
DAgger uses the Gaussian mean only: the loss is MSE(mean, expert action) and `actor_logstd` gets no gradient.
With `ensemble_heads` K ≥ 2, K − 1 more mean heads (`ensemble.{i}`, orthogonal with the backbone's gain √2, not the
mean head's 0.01·√2) share the backbone: the loss is the mean of the K heads' MSEs, the policy acts with
`actor_mean`, and the heads' disagreement scores its uncertainty. Trained on the same labels, the heads agree where
the data was and keep their initial differences along the backbone features the data never reached, which their
larger initial weights make large (on the point env, 300 steps: 0.007 on the data, 0.08 at 4× its range; with the
mean head's gain, 0.0004 and 0.0008).
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
    def __init__(self, obs_dim: int, action_dim: int, num_action_chunks: int = 1, hidden_dim: int = 256,
                 ensemble_heads: int = 1):
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
        if ensemble_heads > 1:
            self.ensemble = nn.ModuleList(
                _layer_init(nn.Linear(hidden_dim, out), gain) for _ in range(ensemble_heads - 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor_mean(self.backbone(obs))

    def heads(self, obs: torch.Tensor) -> torch.Tensor:
        """Every mean head's output, (K, batch, out); `actor_mean`'s first."""
        features = self.backbone(obs)
        return torch.stack([self.actor_mean(features), *(head(features) for head in self.ensemble)])


class MLPPolicy:
    """`TrainablePolicy` around `MLPActor`: numpy in, (batch, chunks, action_dim) numpy out."""

    def __init__(self, cfg, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.action_shape = (cfg.num_action_chunks, cfg.action_dim)
        self.obs_dim = cfg.obs_dim
        self.ensemble_heads = cfg.ensemble_heads
        self.module = MLPActor(cfg.obs_dim, cfg.action_dim, cfg.num_action_chunks, cfg.hidden_dim,
                               cfg.ensemble_heads).to(self.device)
        if cfg.ensemble_heads > 1:
            self.act_with_uncertainty = self._act_with_uncertainty

    def _obs(self, obs: np.ndarray) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"MLP policy expects observations of shape (batch, {self.obs_dim}), got {tuple(obs.shape)}")
        return obs

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        mean = self.module(self._obs(obs))
        return mean.reshape(len(mean), *self.action_shape).cpu().numpy()

    @torch.inference_mode()
    def _act_with_uncertainty(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`act`'s actions and, per observation, the heads' disagreement: the standard deviation across heads,
        averaged over the action's elements."""
        heads = self.module.heads(self._obs(obs))
        actions = heads[0].reshape(heads.shape[1], *self.action_shape)
        return actions.cpu().numpy(), heads.std(dim=0, correction=0).mean(dim=1).cpu().numpy()

    def _outputs_and_target(self, obs: np.ndarray, expert_actions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean head's output (batch, out), or with ensemble heads every head's (K, batch, out), and the labels
        shaped alike."""
        target = torch.as_tensor(np.asarray(expert_actions), dtype=torch.float32, device=self.device)
        target = target[:, : self.action_shape[0]].reshape(len(target), -1)
        if self.ensemble_heads > 1:
            heads = self.module.heads(self._obs(obs))
            return heads, target.expand_as(heads)
        return self.module(self._obs(obs)), target

    def loss(self, obs: np.ndarray, expert_actions: np.ndarray) -> torch.Tensor:
        return nn.functional.mse_loss(*self._outputs_and_target(obs, expert_actions))

    def per_sample_loss(self, obs: np.ndarray, expert_actions: np.ndarray) -> torch.Tensor:
        """Each sample's MSE (batch,), over its heads too: their mean is `loss`."""
        errors = nn.functional.mse_loss(*self._outputs_and_target(obs, expert_actions), reduction="none")
        return errors.mean(dim=1) if errors.dim() == 2 else errors.mean(dim=(0, 2))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
