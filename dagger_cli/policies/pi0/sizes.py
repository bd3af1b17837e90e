"""π₀ and π0.5 model sizes by variant name (pure data: the config checks read them without importing torch)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class GemmaSize:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class SiglipSize:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int
    image_size: int


@dataclass(frozen=True)
class Pi0Size:
    paligemma: GemmaSize
    expert: GemmaSize
    siglip: SiglipSize
    vocab_size: int
    action_dim: int = 32
    action_horizon: int = 50
    pi05: bool = False
    """π0.5: the action expert's RMSNorms adapt to the flow time (adaRMS, fed by a time MLP) and there is no state
    projection (the state, if any, is in the prompt); π₀ otherwise. No parameter depends on the horizon."""


def _size(vlm: tuple, expert: tuple, heads: tuple, siglip: tuple, vocab: int, **more) -> Pi0Size:
    """(width, depth, mlp) of the VLM and the expert, (heads, kv heads, head dim) of both, SigLIP's (width, depth,
    mlp, heads, patch, image)."""
    return Pi0Size(GemmaSize(*vlm, *heads), GemmaSize(*expert, *heads), SiglipSize(*siglip), vocab, **more)


VARIANTS = {
    # openpi's pi0: gemma_2b + gemma_300m, SigLIP So400m/14 at 224 px (256 image tokens per camera)
    "full": _size((2048, 18, 16384), (1024, 18, 4096), (8, 1, 256), (1152, 27, 4304, 16, 14, 224), 257152),
    # same code path and key names, 0.73 M parameters in 4 layers: π₀ runs that learn on a CPU (pick-cube-pi0);
    # 64 state and action dims, so that state observations such as PickCube's 42-D ones fit; horizon 10
    "small": _size((64, 4, 128), (64, 4, 128), (4, 1, 32), (32, 1, 64, 2, 56, 224), 256, action_dim=64,
                   action_horizon=10),
    # same code path and key names with a vision tower a CPU can train: SigLIP-shaped (patch embedding, 2 layers,
    # 64 wide) on 64² images in 16-pixel patches (16 tokens per camera: a learner step 2.5× faster than 8-pixel
    # patches at the same loss per step, docs/libero.md), a 4-layer VLM and action expert; horizon 10
    "small_vision": _size((128, 4, 256), (64, 4, 128), (4, 1, 32), (64, 2, 128, 2, 16, 64), 256, action_horizon=10),
    # same code path and key names, 0.53 M parameters: tests and CPU smoke runs
    "tiny": _size((64, 2, 128), (32, 2, 64), (8, 1, 16), (32, 1, 64, 2, 56, 224), 1024),
}


def model_size(variant: str, pi05: bool = False, action_horizon: int | None = None) -> Pi0Size:
    """The variant's size as π₀ or π0.5, with its own horizon unless one is given."""
    size = VARIANTS[variant]
    return dataclasses.replace(size, pi05=pi05, action_horizon=action_horizon or size.action_horizon)
