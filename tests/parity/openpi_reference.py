"""Reference outputs from openpi's own PI0Pytorch, π₀ or π0.5 (`pi05=True`), for tests/test_pi0_parity.py.

Runs where openpi's source and its patched transformers 4.53 import (openpi's `transformers_replace` copied over
transformers 4.53.2); JAX is not needed: the two openpi modules that would pull it in (`openpi.models.gemma`, for the
layer sizes, and `openpi.shared.image_tools`, for resizing images that are already 224²) are replaced by stand-ins.
    PYTHONPATH=<openpi src>:<that transformers> python tests/parity/openpi_reference.py OUT_DIR float32|bfloat16 pi0|pi05
Writes OUT_DIR/model/model.safetensors (openpi's own save_model) and OUT_DIR/io.safetensors (inputs, outputs).
The language models are cut to 2 layers so that it runs on a CPU; widths, heads and SigLIP are full size.
"""

import dataclasses
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file, save_model

SIZES = {"parity_vlm": (2048, 2, 2048), "parity_expert": (1024, 2, 1024)}


@dataclasses.dataclass(frozen=True)
class GemmaSize:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int = 8
    num_kv_heads: int = 1
    head_dim: int = 256


def stand_in(name: str, **attributes) -> None:
    """`name` as a module holding `attributes`, in sys.modules and on its (real) parent package."""
    import importlib

    parent, _, child = name.rpartition(".")
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    setattr(importlib.import_module(parent), child, module)


stand_in("openpi.models.gemma", get_config=lambda variant: GemmaSize(*SIZES[variant]))
stand_in("openpi.shared.image_tools")

from openpi.models_pytorch.pi0_pytorch import PI0Pytorch  # noqa: E402


@dataclasses.dataclass
class Config:
    pi05: bool = False
    paligemma_variant: str = "parity_vlm"
    action_expert_variant: str = "parity_expert"
    dtype: str = "float32"
    action_dim: int = 32
    action_horizon: int = 50
    pytorch_compile_mode: str = None


def main() -> None:
    out, dtype, pi05 = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "pi05"
    # π0.5 at openpi's pi05_libero horizon with a 200-token prompt (task and state tokens); π₀ at 50 steps, 48 tokens
    horizon, tokens, lengths = (10, 200, (30, 57)) if pi05 else (50, 48, (10, 20))
    torch.manual_seed(0)
    model = PI0Pytorch(Config(pi05=pi05, dtype=dtype, action_horizon=horizon)).eval()
    with torch.no_grad():  # non-trivial norms, the adaptive ones' projections too (openpi zero-initialises those)
        for name, p in model.named_parameters():
            if "layernorm" in name or name.endswith("norm.weight") or "norm.dense." in name:
                p.copy_((torch.randn_like(p.float()) * 0.1).to(p.dtype))
    (out / "model").mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model" / "model.safetensors"))

    batch, slots = 2, ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    obs = types.SimpleNamespace()
    obs.images = {k: torch.rand(batch, 3, 224, 224) * 2 - 1 for k in slots}
    obs.image_masks = dict(zip(slots, (torch.tensor([True, True]), torch.tensor([True, False]),
                                       torch.tensor([False, False]))))
    obs.state = torch.randn(batch, 32)
    mask = torch.zeros(batch, tokens, dtype=torch.bool)
    mask[0, :lengths[0]], mask[1, :lengths[1]] = True, True
    obs.tokenized_prompt = torch.randint(1, 1000, (batch, tokens)) * mask
    obs.tokenized_prompt_mask = mask
    obs.token_ar_mask = obs.token_loss_mask = None
    noise, actions, time = torch.randn(batch, horizon, 32), torch.randn(batch, horizon, 32), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        sample = model.sample_actions("cpu", obs, noise=noise.clone(), num_steps=10)
        preprocess = model._preprocess_observation
        model._preprocess_observation = lambda o, train=True: preprocess(o, train=False)  # no augmentation
        loss = model.forward(obs, actions, noise=noise.clone(), time=time.clone())
    save_file({
        "images": torch.stack([obs.images[k] for k in slots], 1).contiguous(),
        "image_masks": torch.stack([obs.image_masks[k] for k in slots], 1).contiguous(),
        "tokens": obs.tokenized_prompt, "token_masks": mask, "state": obs.state, "noise": noise,
        "actions": actions, "time": time, "sample": sample.float(), "loss": loss.float(),
    }, str(out / "io.safetensors"))


if __name__ == "__main__":
    main()
