"""Reference outputs from openpi's own PI0Pytorch, for tests/test_pi0_parity.py.

Runs in a separate environment that has openpi (or rlinf-openpi) and its patched transformers 4.53:
    PYTHONPATH=<that env> python tests/parity/openpi_reference.py OUT_DIR float32|bfloat16
Writes OUT_DIR/model/model.safetensors (openpi's own save_model) and OUT_DIR/io.safetensors (inputs, outputs).
The language models are cut to 2 layers so that it runs on a CPU; the projector fixes the VLM width at 2048.
"""

import dataclasses
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file, save_model

import openpi.models.gemma as gemma
from openpi.models_pytorch.pi0_pytorch import PI0Pytorch

SIZES = {"parity_vlm": (2048, 2, 2048), "parity_expert": (1024, 2, 1024)}
_get_config = gemma.get_config


def get_config(variant):
    if variant in SIZES:
        width, depth, mlp = SIZES[variant]
        return gemma.Config(width=width, depth=depth, mlp_dim=mlp, num_heads=8, num_kv_heads=1, head_dim=256)
    return _get_config(variant)


gemma.get_config = get_config


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
    out, dtype = Path(sys.argv[1]), sys.argv[2]
    torch.manual_seed(0)
    model = PI0Pytorch(Config(dtype=dtype)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or name.endswith("norm.weight"):
                p.copy_((torch.randn_like(p.float()) * 0.1).to(p.dtype))
    (out / "model").mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model" / "model.safetensors"))

    batch, slots = 2, ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")

    class Observation:
        pass

    obs = Observation()
    obs.images = {k: torch.rand(batch, 3, 224, 224) * 2 - 1 for k in slots}
    obs.image_masks = dict(zip(slots, (torch.tensor([True, True]), torch.tensor([True, False]), torch.tensor([False, False]))))
    obs.state = torch.randn(batch, 32)
    mask = torch.zeros(batch, 48, dtype=torch.bool)
    mask[0, :10], mask[1, :20] = True, True
    obs.tokenized_prompt = torch.randint(1, 1000, (batch, 48)) * mask
    obs.tokenized_prompt_mask = mask
    obs.token_ar_mask = obs.token_loss_mask = None
    noise, actions, time = torch.randn(batch, 50, 32), torch.randn(batch, 50, 32), torch.tensor([0.3, 0.8])
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
