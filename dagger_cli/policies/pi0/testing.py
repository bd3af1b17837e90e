"""Tiny π₀ and π0.5 artefacts for tests, benchmarks and CPU smoke runs: a random checkpoint laid out as RLinf's and a
SentencePiece tokenizer trained on a few prompts (the real ones come from the Hub, which tests cannot reach)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def train_tokenizer(folder: Path, prompts: list[str], vocab_size: int = 64) -> Path:
    import sentencepiece

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(prompts) * 20), model_prefix=str(folder / "tok"), vocab_size=vocab_size,
        hard_vocab_limit=False, minloglevel=2,
    )
    return folder / "tok.model"


INSTRUCTIONS = [
    "pick up the cube and move it to the goal position",
    "pick up the red cube and lift it to the green goal",
    "grasp the cube, carry it to the target and hold still",
    "push the cube to the goal region", "pull the cube towards the robot",
    "stack the red cube on top of the green cube", "roll the ball to the goal",
    "open the drawer", "close the door", "turn the faucet", "place the peg in the hole", "lift the object",
    "insert the peg into the box", "plug the charger into the receptacle", "pick up the sphere and place it in the bin",
    "pick up the black bowl and place it on the plate", "put the bowl on the stove", "adjust the bottle",
]
"""the corpus of the bundled instruction tokenizer (`bundled:instructions.model`)"""


def train_instruction_tokenizer(folder: Path) -> Path:
    """Remakes the bundled tokenizer: BPE, 160 pieces, on INSTRUCTIONS (`python -m dagger_cli.policies.pi0.testing
    DIR`). Words outside the corpus fall back to their characters."""
    import sentencepiece

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(INSTRUCTIONS * 50), model_prefix=str(folder / "instructions"), vocab_size=160,
        hard_vocab_limit=False, minloglevel=2, normalization_rule_name="identity", model_type="bpe",
        character_coverage=1.0,
    )
    (folder / "instructions.vocab").unlink()
    return folder / "instructions.model"


def write_norm_stats(folder: Path, asset: str = "physical-intelligence/libero", state_dim: int = 8,
                     action_dim: int = 7, scale: float = 1.0) -> Path:
    """Random but fixed stats at <folder>/<asset>/norm_stats.json: mean and std, and q01 / q99 two stds about the
    mean (openpi's file holds all four)."""
    path = Path(folder) / asset / "norm_stats.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def stats(dim):
        mean, std = rng.normal(size=dim), scale * rng.uniform(0.5, 2, dim)
        return {"mean": mean.tolist(), "std": std.tolist(), "q01": (mean - 2 * std).tolist(),
                "q99": (mean + 2 * std).tolist()}

    path.write_text(json.dumps({"norm_stats": {"state": stats(state_dim), "actions": stats(action_dim)}}))
    return path


def make_tiny_checkpoint(folder: Path, seed: int = 0, pi05: bool = False, **stats) -> Path:
    """A random tiny π₀ or π0.5 (non-trivial norm weights; π0.5's adaptive ones too) as model.safetensors + norm
    stats."""
    import torch

    from dagger_cli.policies.pi0.checkpoint import save_weights
    from dagger_cli.policies.pi0.model import Pi0Model
    from dagger_cli.policies.pi0.sizes import model_size

    torch.manual_seed(seed)
    model = Pi0Model(model_size("tiny", pi05))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    save_weights(model, folder)
    write_norm_stats(folder, **stats)
    return Path(folder)


if __name__ == "__main__":
    import sys

    print(train_instruction_tokenizer(Path(sys.argv[1])))
