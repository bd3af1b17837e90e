"""RLinf's MLP policy adapter (`model_type: mlp`): student, or expert from `runner.expert_ckpt_path`. See `model.py`."""

from __future__ import annotations

from dataclasses import dataclass

from dagger_cli.core.config import ModelConfig, check, check_positive
from dagger_cli.core.registry import PolicyAdapter


@dataclass
class MLPModelConfig(ModelConfig):
    model_type: str = "mlp"
    obs_dim: int = 42
    """state observation size"""
    hidden_dim: int = 256
    """width of the three tanh hidden layers"""
    ensemble_heads: int = 1
    """mean heads on the shared backbone; with 2 or more the student acts with the first (RLinf's `actor_mean`), the
    others train on the same labels, and their disagreement is its uncertainty (algorithm.dagger.query gated)"""

    def check(self, key: str, cfg) -> None:
        check_positive(self, key, "obs_dim", "hidden_dim", "ensemble_heads")
        if key == "rollout.expert_model":
            check(cfg.runner.expert_ckpt_path is not None, "runner.expert_ckpt_path",
                  "is required when rollout.expert_model.model_type is 'mlp'")
            student = cfg.actor.model
            if isinstance(student, MLPModelConfig):
                check(self.obs_dim == student.obs_dim, f"{key}.obs_dim", "differs from actor.model.obs_dim")


def student(cfg, device: str, weights):
    from dagger_cli.policies.mlp.model import MLPPolicy
    from dagger_cli.policies.weights import load_into

    policy = MLPPolicy(cfg.actor.model, device)
    if weights:
        load_into(policy.module, weights, "student")
    return policy


def expert(cfg, device: str):
    from dagger_cli.policies.mlp.model import MLPPolicy
    from dagger_cli.policies.weights import load_into

    policy = MLPPolicy(cfg.rollout.expert_model, device)
    load_into(policy.module, cfg.runner.expert_ckpt_path, "expert")
    policy.module.eval()
    return policy


def fits_env(model: MLPModelConfig, env, key: str) -> None:
    from dagger_cli.core.errors import ConfigError

    if tuple(env.obs_shape) != (model.obs_dim,):
        raise ConfigError(f"{key}.obs_dim is {model.obs_dim} but the env's observations are {tuple(env.obs_shape)}")


def __getattr__(name: str):
    if name in ("MLPPolicy", "MLPActor"):
        from dagger_cli.policies.mlp import model

        return getattr(model, name)
    raise AttributeError(name)


def weight_bytes(model: MLPModelConfig) -> int:
    import torch

    from dagger_cli.policies.mlp.model import MLPActor

    with torch.device("meta"):
        actor = MLPActor(model.obs_dim, model.action_dim, model.num_action_chunks, model.hidden_dim)
    return sum(p.numel() * p.element_size() for p in actor.parameters())


def export(policy, model: MLPModelConfig, directory, fmt: str):
    """`model.safetensors` (RLinf's MLP names) and `config.json` with the sizes: loadable by `--ckpt` with `--preset`,
    or `runner.ckpt_path`."""
    from pathlib import Path

    from dagger_cli.core.io.files import write_json, write_tensors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_tensors(directory / "model.safetensors", policy.module.state_dict())
    m = model
    write_json(directory / "config.json", {"model_type": "mlp", "obs_dim": m.obs_dim, "action_dim": m.action_dim,
                                           "num_action_chunks": m.num_action_chunks, "hidden_dim": m.hidden_dim})
    return directory


ADAPTER = PolicyAdapter("mlp", MLPModelConfig, student, expert, fits_env=fits_env, weight_bytes=weight_bytes,
                        export=export, export_formats=("checkpoint",))
