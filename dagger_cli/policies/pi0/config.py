"""The π₀ / π0.5 model section (`actor.model` / `rollout.expert_model` with `model_type: pi0`)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from dagger_cli.core.config import ModelConfig, check, check_positive
from dagger_cli.policies.pi0.sizes import VARIANTS, model_size
from dagger_cli.policies.pi0.tokenizer import DEFAULT_TOKENIZER_PATH

Variant = Literal["full", "small", "small_vision", "tiny"]
assert set(typing.get_args(Variant)) == set(VARIANTS)


@dataclass
class Pi0Config:
    variant: Variant = "full"
    """`full` = PaliGemma 2B + 300M action expert (openpi's pi0); `small` (state inputs), `small_vision` (a narrow
    vision tower on 64² images), `tiny` = same code and key names, for CPU runs and tests (see
    `dagger_cli.policies.pi0.sizes.VARIANTS`)"""
    pi05: bool = False
    """π0.5 instead of π₀ (same variants): the action expert's RMSNorms adapt to the flow time, no state projection;
    the state goes into the prompt as tokens where `state_tokens` says, norm stats are quantiles by default"""
    state_tokens: bool | None = None
    """π0.5: the normalised state, cut into 256 bins, written into the prompt (`Task: ..., State: 12 200 ...;\nAction:
    `); null = as the checkpoint's maker does: LeRobot's π0.5 always, openpi's and RLinf's as their config for the
    data (pi05_libero: no, the state is not seen; pi05_aloha_robotwin: yes)"""
    state_token_dims: int | None = None
    """π0.5 with state tokens: how many values the prompt's state holds; null = the state's own dims (openpi, LeRobot
    0.5 and later); 32 = padded with zeros (bin 128) as LeRobot 0.4.x wrote it, with which its LIBERO π0.5
    checkpoints (lerobot/pi05_libero_finetuned, _v044) were trained"""
    action_horizon: int | None = None
    """steps the model predicts; null = a LeRobot checkpoint's chunk_size, else the variant's (50; openpi's and
    RLinf's pi05_libero: 10)"""
    data: Literal["libero", "robotwin", "state"] = "libero"
    """input/output transforms: camera slots, delta-action dims (`state`: state observations, no camera)"""
    default_prompt: str | None = None
    """prompt for observations that carry none (openpi's default_prompt), e.g. ManiSkill state observations"""
    tokenizer_path: str = DEFAULT_TOKENIZER_PATH
    """PaliGemma SentencePiece model (`dagger fetch openpi-tokenizer`), or `bundled:instructions.model`"""
    asset_id: str = "physical-intelligence/libero"
    """norm stats are read from <model_path>/<asset_id>/norm_stats.json (or <model_path>/assets/<asset_id>/...)"""
    norm_stats_path: str | None = None
    """explicit norm_stats.json (or its folder), instead of the lookup in model_path"""
    action_convention: Literal["auto", "delta", "absolute"] = "auto"
    """what the checkpoint's actions and action stats mean: `delta` = relative to the state on the data's delta dims
    (openpi's and RLinf's LIBERO and RoboTwin checkpoints), `absolute` = as the env takes them (LeRobot's π₀ has no
    delta step); auto = what a dagger checkpoint recorded, else absolute for LeRobot's layout and delta otherwise"""
    num_steps: int = 10
    """Euler denoising steps per action chunk (RLinf's DAgger configs: 4; openpi: 10)"""
    sample_noise_scale: float = 1.0
    """std of the noise the flow starts from when acting: 1 = π₀'s N(0, I); below 1 a colder sample, 0 one
    deterministic chunk per observation (the flow from the noise's mean); the training loss always draws N(0, I)"""
    loss_draws: int = 1
    """flow-matching (time, noise) draws per sample in each learner step: the prefix (cameras, prompt) runs once and
    every draw's action tokens attend to it; a sample's loss is their mean (1 = openpi's, one joint pass)"""
    compile_loss: bool = False
    """compile the student's training pass with `torch.compile` (TorchInductor; on a CPU it needs a C++ compiler): on
    a 2-core CPU libero-spatial-small's learner step is 10% faster with 1 loss draw and 30% with 4, after 1–1.5
    minutes of compiling in the first steps; acting is never compiled. Not bitwise the eager numbers (other kernels)"""
    uncertainty_samples: int = 4
    """algorithm.dagger.query gated: action chunks sampled per observation (one prefix pass, each its own noise)
    whose spread is the student's uncertainty"""
    max_token_len: int | None = None
    """prompt tokens; null = openpi's: 48 for π₀, 200 for π0.5"""
    normalization: Literal["auto", "mean_std", "quantiles"] = "auto"
    """how state and actions are normalised: z-scores, or the q01..q99 range mapped to [-1, 1]; auto = what a LeRobot
    checkpoint's config.json says, else openpi's choice (π₀ mean_std, π0.5 quantiles)"""
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    """bfloat16: a student trains fp32 master weights under bf16 autocast, an expert is stored in bf16 (openpi's
    fp32 exceptions kept); auto = bfloat16 on CUDA, float32 elsewhere"""
    train_augmentation: bool | None = None
    """augment camera images in the training loss as openpi/RLinf do (95% random crop and ±5° rotation on the base
    camera, brightness/contrast/saturation on all); never when acting; null = on for data `libero` and `robotwin`"""
    gradient_checkpointing: bool = False
    """recompute layer activations in the backward pass (less memory, slower)"""
    train_expert_only: bool = False
    """freeze the PaliGemma VLM; train only the action expert and projections"""


@dataclass
class Pi0ModelConfig(ModelConfig):
    model_type: str = "pi0"
    pi0: Pi0Config = field(default_factory=Pi0Config)
    """π₀ settings"""

    def check(self, key: str, cfg) -> None:
        p = self.pi0
        optional = ("max_token_len", "action_horizon", "state_token_dims")
        check_positive(p, f"{key}.pi0", "num_steps", "loss_draws", *(n for n in optional if getattr(p, n) is not None))
        check(p.sample_noise_scale >= 0, f"{key}.pi0.sample_noise_scale",
              f"a noise std cannot be negative, got {p.sample_noise_scale}")
        check(p.uncertainty_samples >= 2, f"{key}.pi0.uncertainty_samples",
              f"a spread needs at least 2 samples, got {p.uncertainty_samples}")
        check(p.pi05 or not p.state_tokens, f"{key}.pi0.state_tokens",
              "only π0.5 reads the state from the prompt (π₀ projects it); set pi0.pi05=true or leave it null")
        check(p.state_tokens is not False or p.state_token_dims is None, f"{key}.pi0.state_token_dims",
              "the prompt holds no state (state_tokens is false)")
        size = model_size(p.variant, p.pi05, p.action_horizon)
        name = f"{p.variant} {model_name(p.pi05)}"
        check(self.action_dim <= size.action_dim, f"{key}.action_dim",
              f"the {name} handles at most {size.action_dim} action dims, got {self.action_dim}")
        check(self.num_action_chunks <= size.action_horizon, f"{key}.num_action_chunks",
              f"the {name} predicts {size.action_horizon} steps; cannot execute {self.num_action_chunks}")


def model_name(pi05: bool) -> str:
    return "π0.5" if pi05 else "π₀"


def token_len(p: Pi0Config) -> int:
    """Prompt tokens: the key's, else openpi's default (48 for π₀; 200 for π0.5, whose prompt may hold the state)."""
    return p.max_token_len or (200 if p.pi05 else 48)
