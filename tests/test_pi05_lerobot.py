"""π0.5 against LeRobot's own PI05Policy (DAGGER_LEROBOT_PYTHON: a Python with lerobot 0.4.x; skipped otherwise).

LeRobot builds a π0.5 and writes it with its own save_pretrained and the pre/postprocessors its factory makes
(quantile normalisers; tests/parity/lerobot_pi05_reference.py). dagger reads that directory as an expert (bf16, and
fp32) and as a student (fp32); on one LIBERO observation (two cameras, the 8-D state, a prompt) and one noise, both
sides' prompt tokens, model-ready images, normalised state and actions, sampled actions (normalised and in env
units) and the per-element flow-matching loss are compared; in LeRobot's Python (its torch), our bf16 model is compared
bit for bit. Then dagger's LeRobot export of the bf16 expert is read by LeRobot's PI05Policy.from_pretrained with the
processors its factory loads from it, and computes what LeRobot computed from its own checkpoint. LeRobot's
processors alone are checked on tiny π₀ and π0.5 exports.

LeRobot's π0.5 has one size (PaliGemma gemma_2b, expert gemma_300m: its config names no depth), so this is full
size, 3.6 B parameters. To stay near 15 GiB, both sides build the model with bf16 as the default dtype and load the
bf16 weights LeRobot saved into it, then put each tensor in the dtype its precision policy keeps (fp32: all); for
that to lose nothing, the random RMSNorm weights and adaptive projections LeRobot writes are bf16 values too.
The tokenizer is a PaliGemma-shaped SentencePiece model of our own (BPE, PaliGemma's special ids, byte fallback,
digits split, no normalisation), given to LeRobot as the Hub's `google/paligemma-3b-pt-224` through an offline
Hub cache (the real one cannot be downloaded here).
"""

import gc
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import requires_pi0
from test_pi0 import pi0_config

LEROBOT_PYTHON = os.environ.get("DAGGER_LEROBOT_PYTHON")
REFERENCE = Path(__file__).parent / "parity" / "lerobot_pi05_reference.py"
PROMPT = "pick up the black bowl on the ramekin and place it on the plate"


def _physical_memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


pytestmark = [
    requires_pi0,
    pytest.mark.skipif(not LEROBOT_PYTHON, reason="DAGGER_LEROBOT_PYTHON (a Python with lerobot) is not set"),
]
full_size = pytest.mark.skipif(_physical_memory_gib() < 20, reason="a full-size π0.5 in fp32 needs about 15 GiB")


def paligemma_shaped_tokenizer(folder: Path) -> tuple[Path, Path]:
    """A SentencePiece model with PaliGemma's settings (BPE; <pad> 0, <eos> 1, <bos> 2, <unk> 3; byte fallback,
    split digits, no normalisation or added whitespace) trained on π0.5 prompts, and a Hub cache holding it as
    `google/paligemma-3b-pt-224` (its fast tokenizer as transformers converts it). -> (model file, cache)."""
    import sentencepiece
    from transformers import GemmaTokenizerFast

    from dagger_cli.policies.pi0.tokenizer import state_prompt

    rng = np.random.default_rng(0)
    prompts = [state_prompt(PROMPT, rng.uniform(-1, 1, 32)) for _ in range(20)] + ["open the drawer"]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(prompts * 20), model_prefix=str(folder / "tokenizer"), vocab_size=400, model_type="bpe",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    model = folder / "tokenizer.model"
    revision = "0" * 40
    repo = folder / "hub" / "models--google--paligemma-3b-pt-224"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    GemmaTokenizerFast.from_pretrained(str(folder)).backend_tokenizer.save(str(snapshot / "tokenizer.json"))
    (snapshot / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>",
        "pad_token": "<pad>", "add_bos_token": True, "add_eos_token": False}))
    return model, folder / "hub"


def run_lerobot(hub: Path, *args) -> None:
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([LEROBOT_PYTHON, str(REFERENCE), *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    return paligemma_shaped_tokenizer(tmp_path_factory.mktemp("paligemma-shaped"))


@pytest.fixture(scope="module")
def made(tmp_path_factory, tokenizer_files):
    """LeRobot's checkpoint (DIR/checkpoint) and its outputs on one observation (DIR/lerobot.*), the observation
    (DIR/observation.*), and the tokenizer (model file, Hub cache)."""
    directory = tmp_path_factory.mktemp("lerobot-pi05")
    tokenizer, hub = tokenizer_files
    rng = np.random.default_rng(1)
    observation = {k: torch.from_numpy(rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8))
                   for k in ("image", "wrist_image")}
    mean, std = rng.normal(size=8), rng.uniform(0.5, 2, 8)
    state = mean + std * rng.normal(size=(1, 8))
    action_mean, action_std = rng.normal(size=7), rng.uniform(0.5, 2, 7)
    observation.update(state=torch.tensor(state, dtype=torch.float32),
                       actions=torch.tensor(action_mean + action_std * rng.normal(size=(1, 10, 7)), dtype=torch.float32),
                       noise=torch.from_numpy(rng.normal(size=(1, 10, 32)).astype(np.float32)),
                       time=torch.tensor([0.37]))
    save_file(observation, str(directory / "observation.safetensors"))

    def stats(m, s):
        return {"mean": m.tolist(), "std": s.tolist(), "q01": (m - 2.3 * s).tolist(), "q99": (m + 2.1 * s).tolist()}

    given = {"prompt": PROMPT, "stats": {"observation.state": stats(mean, std), "action": stats(action_mean, action_std)}}
    (directory / "observation.json").write_text(json.dumps(given))
    run_lerobot(hub, "make", directory)
    return directory, tokenizer, hub


def observed(directory: Path) -> tuple[dict, dict]:
    """(dagger's observation, the raw tensors)."""
    raw = load_file(str(directory / "observation.safetensors"))
    obs = {"image": raw["image"].numpy(), "wrist_image": raw["wrist_image"].numpy(), "state": raw["state"].numpy(),
           "prompt": np.array([PROMPT])}
    return obs, raw


def load(made, trainable: bool, precision: str):
    """LeRobot's checkpoint as a dagger π0.5 (LeRobot 0.4's 32-value state prompt, its 10 denoising steps), built
    with bf16 as the default dtype, each tensor then in the dtype of `precision`'s policy (see the module doc)."""
    from dagger_cli.policies.pi0 import Pi0Policy
    from dagger_cli.policies.pi0.model import KEEP_FP32

    directory, tokenizer, _ = made
    cfg = pi0_config(tokenizer, directory / "checkpoint", variant="full", pi05=True, state_token_dims=32,
                     num_steps=10, train_augmentation=False, precision=precision)
    torch.set_default_dtype(torch.bfloat16)
    try:
        policy = Pi0Policy(cfg, "cpu", trainable=trainable)
    finally:
        torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            kept_bf16 = precision == "bfloat16" and name.startswith("paligemma_with_expert.") and not any(
                keep in name for keep in KEEP_FP32)
            param.data = param.data.to(torch.bfloat16 if kept_bf16 else torch.float32)
    return policy


def compare(policy, directory: Path, dtype: str) -> dict[str, tuple[float, float]]:
    """(max |Δ|, LeRobot's max |value|) of each output, dagger's against LeRobot's in `dtype`, asserting that both
    sides built the same prompt and tokens."""
    lerobot = {k.split("/", 1)[1]: v for k, v in load_file(str(directory / "lerobot.safetensors")).items()
               if k.startswith(dtype + "/")}
    prompts = json.loads((directory / "lerobot.json").read_text())[dtype]
    obs, raw = observed(directory)
    x = policy.inputs(obs)
    # the same prompt (the quantile-normalised state padded to 32 values, in 256 bins) and tokens
    from dagger_cli.policies.pi0.tokenizer import state_prompt

    ours = policy.transforms.normalised_state(obs["state"])
    assert prompts == [state_prompt(PROMPT, np.concatenate([ours[0], np.zeros(24)]))]
    assert torch.equal(x["tokens"], lerobot["tokens"]) and torch.equal(x["token_masks"], lerobot["token_mask"].bool())
    pairs = {"images": (x["images"], lerobot["images"]), "state": (ours, lerobot["state"]),
             "normalised actions": (policy.transforms.actions_to_model(raw["actions"].numpy(), obs["state"])[..., :7],
                                    lerobot["normalised_actions"])}
    # on LeRobot's own model inputs: the sampled chunk and the per-element loss
    model_inputs = {"images": lerobot["images"], "image_masks": lerobot["image_masks"].bool(),
                    "tokens": lerobot["tokens"], "token_masks": lerobot["token_mask"].bool(),
                    "state": torch.zeros(1, 32)}
    sample = policy.model.sample_actions(**model_inputs, noise=raw["noise"], num_steps=10, rounded_times=True)
    actions = torch.nn.functional.pad(lerobot["normalised_actions"], (0, 25))
    with torch.no_grad():
        loss = policy.model.loss(**model_inputs, actions=actions, noise=raw["noise"], time=raw["time"])
    pairs["sampled chunk"] = (sample[..., :7], lerobot["chunk"])
    pairs["per-element loss"] = (loss, lerobot["loss"])
    # end to end: env actions from the raw observation, and the mean loss on env-unit labels
    pairs["env actions"] = (policy.act(obs, noise=raw["noise"]), lerobot["env_actions"])
    with torch.no_grad():
        mean_loss = policy.loss(obs, raw["actions"].numpy(), noise={"noise": raw["noise"], "time": raw["time"]})
    pairs["mean loss"] = (mean_loss, lerobot["loss"][..., :7].mean())
    as_numpy = lambda v: np.asarray(torch.as_tensor(v).double())  # noqa: E731
    return {k: (float(np.abs(as_numpy(a) - as_numpy(b)).max()), float(np.abs(as_numpy(b)).max()))
            for k, (a, b) in pairs.items()}


@full_size
@pytest.mark.parametrize("role, precision, tolerance", [
    ("student", "float32", 1e-6), ("expert", "float32", 1e-6), ("expert", "bfloat16", 2e-2)])
def test_lerobots_pi05_checkpoint_acts_and_learns_as_lerobot_computes(made, role, precision, tolerance):
    """fp32: equal but for the normaliser's arithmetic (LeRobot's fp32, our fp64). bf16: the two torch builds' bf16
    kernels differ (the next test takes ours into LeRobot's Python); `tolerance` is relative to the largest value."""
    directory = made[0]
    policy = load(made, trainable=role == "student", precision=precision)
    assert policy.quantiles and policy.state_tokens and policy.action_convention == "absolute"
    assert policy.model.size.action_horizon == 10  # LeRobot's chunk_size
    figures = compare(policy, directory, precision)
    print(f"π0.5 vs LeRobot's PI05Policy, {precision} {role}: "
          + ", ".join(f"{k} max |Δ| {d:.3g} (of {m:.3g})" for k, (d, m) in figures.items()))
    assert all(d <= tolerance * max(1.0, m) for d, m in figures.values()), figures
    if precision == "float32":  # on the same model inputs, bit for bit
        assert figures["sampled chunk"][0] == figures["per-element loss"][0] == figures["mean loss"][0] == 0.0


OURS_IN_LEROBOTS_PYTHON = """
import sys
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
from dagger_cli.policies.pi0.checkpoint import load_weights
from dagger_cli.policies.pi0.model import Pi0Model
from dagger_cli.policies.pi0.sizes import model_size
directory = Path(sys.argv[1])
torch.set_default_dtype(torch.bfloat16)  # as the test's load: bf16 values, then openpi's bf16 policy
model = Pi0Model(model_size("full", pi05=True, action_horizon=10))
torch.set_default_dtype(torch.float32)
load_weights(model, directory / "checkpoint")
model.to_bfloat16_except_fp32_parts()
for name in ("action_in_proj", "action_out_proj", "time_mlp_in", "time_mlp_out"):
    getattr(model, name).float()
lerobot = {k.split("/", 1)[1]: v for k, v in load_file(str(directory / "lerobot.safetensors")).items()
           if k.startswith("bfloat16/")}
raw = load_file(str(directory / "observation.safetensors"))
x = {"images": lerobot["images"], "image_masks": lerobot["image_masks"].bool(), "tokens": lerobot["tokens"],
     "token_masks": lerobot["token_mask"].bool(), "state": torch.zeros(1, 32)}
actions = torch.nn.functional.pad(lerobot["normalised_actions"], (0, 25))
with torch.no_grad():
    loss = model.eval().loss(**x, actions=actions, noise=raw["noise"], time=raw["time"])
sample = model.sample_actions(**x, noise=raw["noise"], num_steps=10, rounded_times=True)
save_file({"loss": loss, "chunk": sample[..., :7].contiguous()}, str(directory / "ours.safetensors"))
"""


@full_size
def test_in_lerobots_torch_our_bf16_pi05_computes_lerobots_bits(made):
    """bf16 kernels differ between torch builds (LeRobot's Python may have another torch than ours): run in LeRobot's
    Python, on LeRobot's model inputs, our bf16 model's sampled chunk and per-element loss are LeRobot's bit for bit."""
    directory = made[0]
    result = subprocess.run([LEROBOT_PYTHON, "-c", OURS_IN_LEROBOTS_PYTHON, str(directory)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = load_file(str(directory / "ours.safetensors"))
    lerobot = load_file(str(directory / "lerobot.safetensors"))
    assert torch.equal(ours["loss"], lerobot["bfloat16/loss"]) and torch.equal(ours["chunk"], lerobot["bfloat16/chunk"])


@full_size
def test_our_lerobot_export_is_read_back_by_lerobots_pi05policy(made, tmp_path):
    """LeRobot's checkpoint, read by dagger as a bf16 expert and exported in LeRobot's layout, is read back by
    LeRobot's PI05Policy.from_pretrained and the processors its factory loads from it: every weight as written, and
    every output what LeRobot computed from its own checkpoint (its bf16 policy, its torch: bit for bit)."""
    directory, _, hub = made
    expert = load(made, trainable=False, precision="bfloat16")
    obs, raw = observed(directory)
    ours = expert.act(obs, noise=raw["noise"])
    exported = expert.save_lerobot(tmp_path / "export")
    del expert
    gc.collect()
    # WHEN LeRobot loads the export with from_pretrained and its processors with its factory, in its bf16 policy
    run_lerobot(hub, "act", directory, exported)
    # THEN it loads every weight as written and computes what it computed from its own checkpoint
    report = json.loads((directory / "act.json").read_text())
    assert report["mismatched"] == [], report
    assert report["prompts"] == json.loads((directory / "lerobot.json").read_text())["bfloat16"]
    theirs = load_file(str(directory / "act.safetensors"))
    own = load_file(str(directory / "lerobot.safetensors"))
    assert [k for k, v in theirs.items() if not torch.equal(v, own[f"bfloat16/{k}"])] == []
    # AND its env actions are ours up to the two torch builds' bf16 kernels (see the bf16 expert's figures)
    difference = np.abs(theirs["env_actions"].numpy() - ours).max()
    scale = np.abs(ours).max()
    print(f"π0.5 export read by LeRobot's PI05Policy (bf16): env actions max |Δ| {difference:.3g} (of {scale:.3g})")
    assert difference <= 2e-2 * scale


@pytest.mark.parametrize("pi05", [False, True], ids=["pi0", "pi05"])
def test_lerobots_processors_load_from_our_export_and_compute_ours(tokenizer_files, tmp_path, pi05):
    """LeRobot's processors do not depend on the model's size: a tiny π₀ / π0.5 exported in LeRobot's layout has its
    pre/postprocessors loaded by LeRobot's factory, which tokenise the prompt (π0.5: with the state), normalise the
    state and unnormalise actions as dagger does for that export."""
    from dagger_cli.policies.pi0 import Pi0Policy
    from dagger_cli.policies.pi0.testing import make_tiny_checkpoint

    model, hub = tokenizer_files
    source = make_tiny_checkpoint(tmp_path / "tiny", pi05=pi05)
    extra = {"state_tokens": True} if pi05 else {}
    exported = Pi0Policy(pi0_config(model, source, pi05=pi05, action_convention="absolute", **extra), "cpu") \
        .save_lerobot(tmp_path / "export")
    policy = Pi0Policy(pi0_config(model, exported, pi05=pi05, state_token_dims=32 if pi05 else None), "cpu")
    rng = np.random.default_rng(3)
    state, chunk = rng.normal(size=(1, 8)).astype(np.float32), rng.normal(size=(1, 50, 7)).astype(np.float32)
    save_file({"state": torch.from_numpy(state), "chunk": torch.from_numpy(chunk)},
              str(tmp_path / "observation.safetensors"))
    (tmp_path / "observation.json").write_text(json.dumps({"prompt": PROMPT}))
    run_lerobot(hub, "process", tmp_path, exported)
    theirs = load_file(str(tmp_path / "process.safetensors"))
    x = policy.inputs({"image": np.zeros((1, 224, 224, 3), np.uint8), "wrist_image": np.zeros((1, 224, 224, 3), np.uint8),
                       "state": state, "prompt": np.array([PROMPT])})
    assert torch.equal(x["tokens"], theirs["tokens"]) and torch.equal(x["token_masks"], theirs["token_mask"].bool())
    assert np.allclose(policy.transforms.normalised_state(state), theirs["state"].numpy(), rtol=1e-6, atol=1e-6)
    assert np.allclose(policy.transforms.actions_from_model(np.pad(chunk, ((0, 0), (0, 0), (0, 25))), state),
                       theirs["env_actions"].numpy(), rtol=1e-6, atol=1e-6)
