"""Reference outputs from LeRobot's own PI05Policy, for tests/test_pi05_lerobot.py; runs in LeRobot's Python
(DAGGER_LEROBOT_PYTHON), on its transformers branch or on stock transformers with the branch put back
(lerobot_transformers_branch.py). LeRobot's tokenizer step loads `google/paligemma-3b-pt-224` through the Hub cache;
the test fills one (HF_HUB_CACHE, HF_HUB_OFFLINE) with a PaliGemma-shaped tokenizer of its own.

    python lerobot_pi05_reference.py make DIR   # DIR/checkpoint: PI05Policy(...).save_pretrained and its processors
    python lerobot_pi05_reference.py act DIR CHECKPOINT  # PI05Policy.from_pretrained(CHECKPOINT) and its processors
    python lerobot_pi05_reference.py process DIR CHECKPOINT  # the processors alone (π₀'s or π0.5's, any size)

DIR/observation.safetensors (from the test): two uint8 LIBERO cameras `image` and `wrist_image` (1, 224, 224, 3),
`state` (1, 8), env-unit `actions` (1, 10, 7), `noise` (1, 10, 32), `time` (1,); DIR/observation.json: `prompt`
and the quantile `stats`. `make` builds the policy at LeRobot's only size (PaliGemma gemma_2b, expert gemma_300m;
horizon 10), every RMSNorm weight and adaptive projection random, and writes, in LeRobot's bf16 policy and then in
fp32 (`bfloat16/...`, `float32/...` in DIR/lerobot.safetensors; the prompts it built in DIR/lerobot.json): its
preprocessor's outputs, predict_action_chunk (normalised) and the postprocessor's env actions, the model-ready
images and the per-element flow-matching loss of PI05Pytorch.forward. `act` writes DIR/act.safetensors: the env
actions of the checkpoint as LeRobot loads it (with its processors, in its bf16 policy), and in DIR/act.json the
weights it did not load as written (LeRobot's from_pretrained only prints its load errors) and its prompts.
`process` writes DIR/process.safetensors: the preprocessor's tokens, mask and normalised state for DIR/observation's
`state` and prompt, and the postprocessor's env actions for its normalised `chunk`.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import lerobot_transformers_branch  # noqa: E402,F401  (before LeRobot's policies import transformers' Gemma)
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from lerobot.configs.policies import PreTrainedConfig  # noqa: E402
from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies.factory import make_pre_post_processors  # noqa: E402
from lerobot.policies.pi05.configuration_pi05 import PI05Config  # noqa: E402
from lerobot.policies.pi05.modeling_pi05 import PI05Policy  # noqa: E402

CAMERAS = ("image", "wrist_image")
HORIZON = 10
OUTER = ("action_in_proj", "action_out_proj", "time_mlp_in", "time_mlp_out")
"""PI05Pytorch's projections outside PaliGemmaWithExpertModel, which its bf16 policy leaves fp32"""


def bf16_built(build):
    """`build()` with bf16 as the default dtype (half the memory and time of a 3.6 B fp32 init), then the layout of
    LeRobot's bf16 policy: its projections outside PaliGemmaWithExpertModel back in fp32, as an fp32 default makes
    them."""
    torch.set_default_dtype(torch.bfloat16)
    try:
        policy = build()
    finally:
        torch.set_default_dtype(torch.float32)
    for name in OUTER:
        getattr(policy.model, name).float()
    return policy


def batch(observation: dict, prompt: str) -> dict:
    """A LeRobot batch of the observation: images as float [0, 1] channel-first, the task, and the env actions."""
    images = {f"observation.images.{k}": observation[k].permute(0, 3, 1, 2).float() / 255.0 for k in CAMERAS}
    return {**images, "observation.state": observation["state"], "action": observation["actions"], "task": [prompt]}


def outputs(policy, pre, post, observation: dict, prompt: str) -> tuple[dict, list]:
    """What the policy makes of the observation, and the prompts its preprocessor wrote."""
    processed = pre(batch(observation, prompt))
    policy.model.sample_noise = lambda shape, device: observation["noise"].to(device)
    policy.reset()
    chunk = policy.predict_action_chunk(processed)
    images, image_masks = policy._preprocess_images(processed)
    with torch.no_grad():
        loss = policy.model.forward(images, image_masks, processed["observation.language.tokens"],
                                    processed["observation.language.attention_mask"], policy.prepare_action(processed),
                                    observation["noise"], observation["time"])
    result = {"tokens": processed["observation.language.tokens"],
              "token_mask": processed["observation.language.attention_mask"],
              "state": processed["observation.state"], "normalised_actions": processed["action"],
              "images": torch.stack(images, dim=1), "image_masks": torch.stack(image_masks, dim=1),
              "chunk": chunk, "env_actions": post(chunk), "loss": loss}
    return {k: v.float().contiguous() if v.is_floating_point() else v.contiguous() for k, v in result.items()}, \
        processed["task"]


def make(directory: Path) -> None:
    observation = load_file(str(directory / "observation.safetensors"))
    given = json.loads((directory / "observation.json").read_text())
    stats = {k: {s: torch.tensor(v) for s, v in d.items()} for k, d in given["stats"].items()}
    camera = PolicyFeature(FeatureType.VISUAL, (3, 224, 224))
    config = PI05Config(
        device="cpu", dtype="bfloat16", chunk_size=HORIZON, n_action_steps=HORIZON,
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (8,)),
                        **{f"observation.images.{k}": camera for k in CAMERAS}},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))})
    torch.manual_seed(0)
    policy = bf16_built(lambda: PI05Policy(config))
    with torch.no_grad():  # non-trivial norms; the adaptive ones' projections too (LeRobot zero-initialises those)
        for name, p in policy.named_parameters():
            if "layernorm" in name or name.endswith("norm.weight") or "norm.dense." in name:
                p.copy_((torch.randn_like(p.float()) * 0.1).bfloat16())  # bf16 values (the test's loads)
    checkpoint = directory / "checkpoint"
    policy.save_pretrained(checkpoint)
    pre, post = make_pre_post_processors(policy.config, dataset_stats=stats)
    pre.save_pretrained(checkpoint)
    post.save_pretrained(checkpoint)

    results, prompts = {}, {}
    for dtype in ("bfloat16", "float32"):
        if dtype == "float32":  # the saved weights in fp32, RoPE's frequencies (cast to bf16 with the model) anew
            policy = policy.float()
            for rope in [m for m in policy.modules() if hasattr(m, "rope_init_fn")]:
                rope.inv_freq = rope.original_inv_freq = rope.rope_init_fn(rope.config, None)[0]
        out, prompts[dtype] = outputs(policy, pre, post, observation, given["prompt"])
        results.update({f"{dtype}/{k}": v for k, v in out.items()})
    save_file(results, str(directory / "lerobot.safetensors"))
    (directory / "lerobot.json").write_text(json.dumps(prompts))


def act(directory: Path, checkpoint: Path) -> None:
    observation = load_file(str(directory / "observation.safetensors"))
    given = json.loads((directory / "observation.json").read_text())
    config = PreTrainedConfig.from_pretrained(checkpoint)
    config.device, config.dtype = "cpu", "bfloat16"
    policy = bf16_built(lambda: PI05Policy.from_pretrained(checkpoint, config=config, strict=True))
    written = load_file(str(checkpoint / "model.safetensors"))
    state = policy.state_dict()
    tied = {p.data_ptr() for k, p in state.items() if k in written}
    mismatched = [k for k, v in written.items() if k not in state or not torch.equal(state[k].float(), v.float())]
    mismatched += [k for k, p in state.items() if k not in written and p.data_ptr() not in tied]
    del written, state
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    out, prompts = outputs(policy, pre, post, observation, given["prompt"])
    save_file(out, str(directory / "act.safetensors"))
    (directory / "act.json").write_text(json.dumps({"mismatched": mismatched, "prompts": prompts}))


def process(directory: Path, checkpoint: Path) -> None:
    observation = load_file(str(directory / "observation.safetensors"))
    given = json.loads((directory / "observation.json").read_text())
    pre, post = make_pre_post_processors(PreTrainedConfig.from_pretrained(checkpoint), pretrained_path=str(checkpoint))
    processed = pre({"observation.state": observation["state"], "task": [given["prompt"]]})
    save_file({"tokens": processed["observation.language.tokens"].contiguous(),
               "token_mask": processed["observation.language.attention_mask"].contiguous(),
               "state": processed["observation.state"].contiguous(),
               "env_actions": post(observation["chunk"]).contiguous()}, str(directory / "process.safetensors"))


if __name__ == "__main__":
    {"make": make, "act": act, "process": process}[sys.argv[1]](*map(Path, sys.argv[2:]))
