"""The π₀ model section (`actor.model` / `rollout.expert_model` with `model_type: pi0`)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from dagger_cli.core.config import ModelConfig, check, check_positive
from dagger_cli.policies.pi0.sizes import VARIANTS
from dagger_cli.policies.pi0.tokenizer import DEFAULT_TOKENIZER_PATH

Variant = Literal["full", "small", "small_vision", "tiny"]
assert set(typing.get_args(Variant)) == set(VARIANTS)


@dataclass
class Pi0Config:
    variant: Variant = "full"
    """`full` = PaliGemma 2B + 300M action expert (openpi's pi0); `small` (state inputs), `small_vision` (a narrow
    vision tower on 64² images), `tiny` = same code and key names, for CPU runs and tests (see
    `dagger_cli.policies.pi0.sizes.VARIANTS`)"""
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
    max_token_len: int = 48
    """prompt tokens"""
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
        check_positive(self.pi0, f"{key}.pi0", "num_steps", "max_token_len")
        size = VARIANTS[self.pi0.variant]
        check(self.action_dim <= size.action_dim, f"{key}.action_dim",
              f"the {self.pi0.variant} π₀ handles at most {size.action_dim} action dims, got {self.action_dim}")
        check(self.num_action_chunks <= size.action_horizon, f"{key}.num_action_chunks",
              f"the {self.pi0.variant} π₀ predicts {size.action_horizon} steps; cannot execute {self.num_action_chunks}")
