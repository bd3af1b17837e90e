"""π₀ as a dagger policy: openpi-compatible model, transforms, tokenizer and checkpoints (extra `pi0`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dagger_cli.core.config import ModelConfig
from dagger_cli.core.errors import CheckpointError, EnvUnavailableError


def _require_transformers():
    try:
        import sentencepiece  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise EnvUnavailableError(
            f"π₀ needs {e.name}; install it with: pip install 'dagger-cli[pi0]'"
        ) from None


class Pi0Policy:
    """`TrainablePolicy` around `Pi0Model`: raw observations in, env-unit action chunks (full horizon) out.

    Observations: a dict with the cameras named by the data spec (uint8 (B, H, W, 3)), `state` (B, S) and
    `prompt` (B,) strings. `act` returns (B, 50, action_dim); the env executes the first `num_action_chunks`.
    """

    def __init__(self, cfg: ModelConfig, device: str | torch.device = "cpu"):
        _require_transformers()
        from dagger_cli.policies.pi0.checkpoint import load_norm_stats, load_weights
        from dagger_cli.policies.pi0.model import VARIANTS, Pi0Model
        from dagger_cli.policies.pi0.tokenizer import PromptTokenizer
        from dagger_cli.policies.pi0.transforms import DATA_SPECS, Pi0Transforms

        p = cfg.pi0
        self.cfg = cfg
        self.device = torch.device(device)
        size = VARIANTS[p.variant]
        model_path = Path(cfg.model_path).expanduser() if cfg.model_path else None
        if model_path is not None and not model_path.exists():
            raise CheckpointError(f"{model_path}: no such π₀ checkpoint directory")
        # weights before the tokenizer and norm stats: the largest, likeliest problem is reported first
        self.model = Pi0Model(size)
        if model_path is not None:
            load_weights(self.model, model_path)
        precision = p.precision
        if precision == "auto":
            precision = "bfloat16" if self.device.type == "cuda" else "float32"
        if precision == "bfloat16":
            self.model.to_bfloat16_except_fp32_parts()
        self.model.to(self.device).eval()
        self.model.gradient_checkpointing = p.gradient_checkpointing
        if p.train_expert_only:
            for param in self.model.paligemma_with_expert.paligemma.parameters():
                param.requires_grad_(False)
        self.module = self.model
        self.num_steps = p.num_steps
        self.chunk = cfg.num_action_chunks
        self.action_shape = (size.action_horizon, cfg.action_dim)
        self.tokenizer = PromptTokenizer(p.tokenizer_path, p.max_token_len)
        if self.tokenizer.vocab_size > size.vocab_size:
            raise CheckpointError(
                f"{self.tokenizer.path}: tokenizer has {self.tokenizer.vocab_size} pieces, "
                f"the {p.variant} π₀ embeds {size.vocab_size}"
            )
        norm = load_norm_stats(model_path, p.asset_id, p.norm_stats_path)
        self.transforms = Pi0Transforms(DATA_SPECS[p.data], norm, cfg.action_dim, size.action_dim)

    # INPUTS
    def inputs(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        if not isinstance(obs, dict) or "state" not in obs or "prompt" not in obs:
            got = sorted(obs) if isinstance(obs, dict) else type(obs).__name__
            raise ValueError(f"π₀ expects observations with 'state', 'prompt' and cameras, got {got}")
        images, image_masks = self.transforms.images(obs)
        tokens, token_masks = self.tokenizer.encode_batch(obs["prompt"])
        state = self.transforms.state(obs["state"])
        as_tensor = lambda x: torch.as_tensor(x, device=self.device)  # noqa: E731
        return {
            "images": as_tensor(images),
            "image_masks": as_tensor(image_masks),
            "tokens": as_tensor(tokens),
            "token_masks": as_tensor(token_masks),
            "state": as_tensor(state),
        }

    # POLICY
    def sample_noise(self, batch: int) -> torch.Tensor:
        """Drawn from torch's global CPU generator, whose state every run checkpoint holds (exact resume)."""
        shape = (batch, self.model.size.action_horizon, self.model.size.action_dim)
        return torch.randn(shape, dtype=torch.float32).to(self.device)

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], noise: torch.Tensor | None = None) -> np.ndarray:
        """(B, 50, action_dim) env-unit actions; deterministic given `noise` (else drawn by `sample_noise`)."""
        x = self.inputs(obs)
        if noise is None:
            noise = self.sample_noise(len(obs["state"]))
        out = self.model.sample_actions(**x, noise=noise.to(self.device), num_steps=self.num_steps)
        return self.transforms.actions_from_model(out.float().cpu().numpy(), obs["state"])

    def loss(self, obs: dict[str, np.ndarray], expert_actions: np.ndarray) -> torch.Tensor:
        """Flow-matching loss on env-unit expert chunks, normalised with this policy's stats, cropped to the
        executed chunk and the env's action dims."""
        x = self.inputs(obs)
        actions = torch.as_tensor(self.transforms.actions_to_model(expert_actions, obs["state"]), device=self.device)
        batch = len(actions)
        time = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0)).sample((batch,)) * 0.999 + 0.001
        noise = self.sample_noise(batch)
        per_element = self.model.loss(**x, actions=actions, noise=noise, time=time.to(self.device))
        return per_element[:, : self.chunk, : self.cfg.action_dim].mean()

    # CHECKPOINT
    def state_dict(self) -> dict[str, torch.Tensor]:
        from dagger_cli.policies.pi0.checkpoint import openpi_state_dict

        return openpi_state_dict(self.model)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from dagger_cli.policies.pi0.checkpoint import load_state

        load_state(self.model, state, "checkpoint")

    def save(self, directory: Path) -> Path:
        """`<directory>/model.safetensors` in openpi's layout plus this policy's norm stats (a loadable model_path)."""
        from dagger_cli.core.checkpoint import write_json
        from dagger_cli.policies.pi0.checkpoint import save_weights

        path = save_weights(self.model, directory)
        stats_dir = Path(directory) / self.cfg.pi0.asset_id
        stats_dir.mkdir(parents=True, exist_ok=True)
        write_json(stats_dir / "norm_stats.json", self.transforms.norm.to_json())
        return path
