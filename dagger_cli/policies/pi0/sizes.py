"""π₀ model sizes by variant name (pure data: the config checks read them without importing torch)."""

from __future__ import annotations

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


VARIANTS = {
    # openpi's pi0: gemma_2b + gemma_300m, SigLIP So400m/14 at 224 px (256 image tokens per camera)
    "full": Pi0Size(
        paligemma=GemmaSize(2048, 18, 16384, 8, 1, 256),
        expert=GemmaSize(1024, 18, 4096, 8, 1, 256),
        siglip=SiglipSize(1152, 27, 4304, 16, 14, 224),
        vocab_size=257152,
    ),
    # same code path and key names, a few M parameters: π₀ runs that learn on a CPU (pick-cube-pi0); 64 state
    # and action dims, so that state observations such as PickCube's 42-D ones fit
    "small": Pi0Size(
        paligemma=GemmaSize(64, 4, 128, 4, 1, 32),
        expert=GemmaSize(64, 4, 128, 4, 1, 32),
        siglip=SiglipSize(32, 1, 64, 2, 56, 224),
        vocab_size=256,
        action_dim=64,
        action_horizon=10,
    ),
    # same code path and key names, ~0.5 M parameters: tests and CPU smoke runs
    "tiny": Pi0Size(
        paligemma=GemmaSize(64, 2, 128, 8, 1, 16),
        expert=GemmaSize(32, 2, 64, 8, 1, 16),
        siglip=SiglipSize(32, 1, 64, 2, 56, 224),
        vocab_size=1024,
    ),
}
