"""π0.5 parity with openpi's own PI0Pytorch (`pi05=True`), run in a separate environment: openpi's source and its
patched transformers 4.53 (tests/parity/openpi_pi05_reference.py needs no JAX).

Set DAGGER_OPENPI_PYTHONPATH to a PYTHONPATH under which `import openpi.models_pytorch.pi0_pytorch` works with that
transformers; skipped otherwise. Reduced depth (2 layers per language model), full SigLIP and widths, openpi's
pi05_libero horizon of 10, a 200-token prompt.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

OPENPI = os.environ.get("DAGGER_OPENPI_PYTHONPATH")
pytestmark = pytest.mark.skipif(not OPENPI, reason="set DAGGER_OPENPI_PYTHONPATH to an openpi environment")


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("bfloat16", 1e-2)])
def test_pi05_sample_and_loss_match_openpi(tmp_path, dtype, tolerance):
    pytest.importorskip("transformers")
    from safetensors.torch import load_file

    from dagger_cli.policies.pi0.checkpoint import load_weights
    from dagger_cli.policies.pi0.model import Pi0Model
    from dagger_cli.policies.pi0.sizes import VARIANTS, GemmaSize, Pi0Size

    script = Path(__file__).parent / "parity" / "openpi_pi05_reference.py"
    env = {**os.environ, "PYTHONPATH": OPENPI}
    subprocess.run([sys.executable, str(script), str(tmp_path), dtype], check=True, env=env, timeout=1200)
    size = Pi0Size(GemmaSize(2048, 2, 2048, 8, 1, 256), GemmaSize(1024, 2, 1024, 8, 1, 256), VARIANTS["full"].siglip,
                   257152, action_horizon=10, pi05=True)
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
    print(f"π0.5 parity {dtype}: sampled actions max |Δ| {sample_diff:.3g}, per-element loss max |Δ| {loss_diff:.3g}")
    assert sample_diff <= tolerance and loss_diff <= tolerance
