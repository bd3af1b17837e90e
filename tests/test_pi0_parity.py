"""Parity with openpi's own PI0Pytorch, π₀ and π0.5 (`pi05=True`), run in a separate environment: openpi's source and
its patched transformers 4.53 (the reference scripts in tests/parity/ need no JAX).

Set DAGGER_OPENPI_PYTHONPATH to a PYTHONPATH under which `import openpi.models_pytorch.pi0_pytorch` works with that
transformers; skipped otherwise. Reduced depth (2 layers per language model), full SigLIP and widths; π0.5 at openpi's
pi05_libero horizon of 10 with a 200-token prompt.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

OPENPI = os.environ.get("DAGGER_OPENPI_PYTHONPATH")
pytestmark = pytest.mark.skipif(not OPENPI, reason="set DAGGER_OPENPI_PYTHONPATH to an openpi environment")

MODELS = {"pi0": {}, "pi05": {"action_horizon": 10, "pi05": True}}
"""model -> how its Pi0Size differs from π₀'s (tests/parity/openpi_reference.py builds openpi's the same way)"""


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("bfloat16", 1e-2)])
def test_sample_and_loss_match_openpi(tmp_path, model_name, dtype, tolerance):
    pytest.importorskip("transformers")
    from safetensors.torch import load_file

    from dagger_cli.policies.pi0.checkpoint import load_weights
    from dagger_cli.policies.pi0.model import Pi0Model
    from dagger_cli.policies.pi0.sizes import VARIANTS, GemmaSize, Pi0Size

    script = Path(__file__).parent / "parity" / "openpi_reference.py"
    env = {**os.environ, "PYTHONPATH": OPENPI}
    subprocess.run([sys.executable, str(script), str(tmp_path), dtype, model_name], check=True, env=env, timeout=1200)
    size = Pi0Size(GemmaSize(2048, 2, 2048, 8, 1, 256), GemmaSize(1024, 2, 1024, 8, 1, 256), VARIANTS["full"].siglip,
                   257152, **MODELS[model_name])
    model = Pi0Model(size).eval()
    if dtype == "bfloat16":
        model.to_bfloat16_except_fp32_parts()
    load_weights(model, tmp_path / "model")
    io = load_file(str(tmp_path / "io.safetensors"))
    obs = {k: io[k] for k in ("images", "image_masks", "tokens", "token_masks", "state")}
    sample = model.sample_actions(**obs, noise=io["noise"], num_steps=10)
    with torch.no_grad():
        loss = model.loss(**obs, actions=io["actions"], noise=io["noise"], time=io["time"])
    sample_diff, loss_diff = (sample - io["sample"]).abs().max().item(), (loss - io["loss"]).abs().max().item()
    print(f"{model_name} parity {dtype}: sampled actions max |Δ| {sample_diff:.3g}, per-element loss max |Δ| "
          f"{loss_diff:.3g}")
    assert sample_diff <= tolerance
    assert loss_diff <= tolerance
