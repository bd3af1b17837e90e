"""π₀ checkpoints in LeRobot's layout (PI0Policy.save_pretrained): written, read as student and as expert, its
normaliser files not taken for weights, its config checked against the preset, and a DAgger iteration on it."""

import dataclasses
import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import requires_pi0
from dagger_cli.core.errors import ConfigError
from test_pi0 import SeededCameraEnv, camera_run_config, observation, pi0_config

pytestmark = requires_pi0


@pytest.fixture(scope="module")
def source(checkpoint_dir, tokenizer_path):
    """The tiny checkpoint's weights and stats, taken as LeRobot's π₀ takes actions (absolute: no delta step)."""
    from dagger_cli.policies.pi0 import Pi0Policy

    return Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, action_convention="absolute"), "cpu")


@pytest.fixture(scope="module")
def lerobot_dir(source, tmp_path_factory):
    return source.save_lerobot(tmp_path_factory.mktemp("lerobot-pi0"))


def test_the_layout_is_lerobots(lerobot_dir):
    from dagger_cli.policies.weights import weight_files

    config = json.loads((lerobot_dir / "config.json").read_text())
    assert config["type"] == "pi0" and config["chunk_size"] == 50 and config["max_action_dim"] == 32
    weights = load_file(str(lerobot_dir / "model.safetensors"))
    assert all(k.startswith("model.") for k in weights)
    assert "model.action_time_mlp_in.weight" in weights and "model.state_proj.weight" in weights
    assert "model.paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight" in weights
    assert not any(k.endswith("paligemma.lm_head.weight") for k in weights)  # the tied pair, stored once
    pre = load_file(str(next(lerobot_dir.glob("policy_preprocessor*normalizer_processor.safetensors"))))
    assert {"observation.state.mean", "observation.state.std", "action.mean", "action.std"} <= set(pre)
    pre = json.loads((lerobot_dir / "policy_preprocessor.json").read_text())  # LeRobot's π₀ pipeline, which loads it
    assert pre["steps"][5]["state_file"] == "policy_preprocessor_step_5_normalizer_processor.safetensors"
    # AND the normaliser files are not taken for weight shards
    assert weight_files(lerobot_dir) == [lerobot_dir / "model.safetensors"]


@pytest.mark.parametrize("trainable", [True, False], ids=["student", "expert"])
def test_a_lerobot_checkpoint_loads_with_its_weights_and_normaliser(source, lerobot_dir, tokenizer_path, trainable):
    from dagger_cli.policies.pi0 import Pi0Policy

    # WHEN it is read back as a student, or as an expert (which must find norm stats: here only LeRobot's files)
    loaded = Pi0Policy(pi0_config(tokenizer_path, lerobot_dir), "cpu", trainable=trainable)
    # THEN weights, norm stats and actions equal the policy it was written from
    a, b = source.model.state_dict(), loaded.model.state_dict()
    assert all(torch.equal(a[k], b[k].to(a[k].dtype)) for k in a)
    assert np.allclose(loaded.transforms.norm.actions_std, source.transforms.norm.actions_std)
    assert "normalizer_processor" in loaded.transforms.norm.source
    obs, noise = observation(), source.sample_noise(2)
    assert np.allclose(loaded.act(obs, noise=noise), source.act(obs, noise=noise), atol=1e-5)


def test_the_older_time_mlp_spelling_loads_too(source, lerobot_dir, tokenizer_path, tmp_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    older = tmp_path / "older"
    older.mkdir()
    for f in lerobot_dir.iterdir():
        (older / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(older / "model.safetensors"))
    save_file({k.replace("model.action_time_mlp_", "model.time_mlp_"): v for k, v in weights.items()},
              str(older / "model.safetensors"))
    loaded = Pi0Policy(pi0_config(tokenizer_path, older), "cpu")
    assert torch.equal(loaded.model.action_time_mlp_in.weight, source.model.action_time_mlp_in.weight)


@pytest.mark.parametrize("field, value, message", [
    ("chunk_size", 10, "config.json has chunk_size 10, but actor.model.pi0.variant tiny has 50 action horizon"),
    ("max_state_dim", 64, "has max_state_dim 64, but actor.model.pi0.variant tiny has 32 state dims"),
    ("type", "pi05", "is a LeRobot 'pi05' policy, not pi0"),
    ("output_features", {"action": {"type": "ACTION", "shape": [14]}},
     "acts in 14 dims (output_features.action), but actor.model.action_dim is 7"),
])
def test_a_config_that_contradicts_the_preset_is_one_line(lerobot_dir, tokenizer_path, tmp_path, field, value,
                                                          message):
    from dagger_cli.policies.pi0 import Pi0Policy

    bad = tmp_path / "bad"
    bad.mkdir()
    for f in lerobot_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(ConfigError) as e:
        Pi0Policy(pi0_config(tokenizer_path, bad), "cpu")
    assert message in str(e.value) and str(bad / "config.json") in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("actor.model.model_path: ")


def test_a_lerobot_checkpoint_trains_as_student_and_labels_as_expert(lerobot_dir, tokenizer_path, tmp_path):
    from dagger_cli.core.engine.runner import SyncRunner
    from dagger_cli.policies.pi0 import Pi0Policy

    cfg = camera_run_config(lerobot_dir, tokenizer_path, num_steps=2, max_epochs=1)
    student = Pi0Policy(cfg.actor.model, "cpu")
    expert = Pi0Policy(cfg.rollout.expert_model, "cpu", trainable=False)
    before = {k: v.clone() for k, v in student.model.state_dict().items()}
    runner = SyncRunner(cfg, tmp_path, SeededCameraEnv(), student, expert, tensorboard=False)
    summary = runner.run()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # THEN the expert labelled every step (beta 1) and the student trained on the labels
    assert summary["iterations"] == 1 and rows[-1]["train/dagger/expert_action_frac"] == 1.0
    assert rows[-1]["train/replay_buffer/total_samples"] == 2 * 2 and np.isfinite(rows[-1]["train/dagger/actor_loss"])
    after = student.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # AND `dagger export` writes the trained student in LeRobot's layout, loading back to the same weights and actions
    from test_cli import dagger

    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    fmt = "lerobot-checkpoint"
    result = dagger("export", str(tmp_path), "--format", fmt, "--out", str(tmp_path / fmt))
    assert result.returncode == 0, result.stderr
    back = Pi0Policy(dataclasses.replace(cfg.actor.model, model_path=str(tmp_path / fmt)), "cpu")
    assert all(torch.equal(after[k], v.to(after[k].dtype)) for k, v in back.model.state_dict().items())
    assert np.allclose(back.transforms.norm.state_mean, student.transforms.norm.state_mean)
    obs, noise = observation(), student.sample_noise(2)
    assert back.action_convention == "absolute"
    assert np.allclose(back.act(obs, noise=noise), student.act(obs, noise=noise), atol=1e-5)
    # AND openpi's layout, which for LIBERO's data means delta actions, is refused in one line, writing nothing
    refused = dagger("export", str(tmp_path), "--format", "checkpoint", "--out", str(tmp_path / "checkpoint"))
    assert refused.returncode == 2 and "predicts absolute actions (LeRobot's convention)" in refused.stderr
    assert "LeRobot's convention" in refused.stderr.strip().splitlines()[-1] and not (tmp_path / "checkpoint").exists()


LEROBOT_PYTHON = os.environ.get("DAGGER_LEROBOT_PYTHON")


def lerobot_processors(directory) -> str:
    """Lines for LeRobot's Python that write its pre/postprocessor normalisers (mean/std of `state` and `action`,
    the PolicyFeatures, from `stats`) into `directory`, as its training saves them next to the policy."""
    return textwrap.dedent(f"""
        from lerobot.configs.types import FeatureType, NormalizationMode
        from lerobot.processor import NormalizerProcessorStep, PolicyProcessorPipeline, UnnormalizerProcessorStep
        norm_map = {{FeatureType.STATE: NormalizationMode.MEAN_STD, FeatureType.ACTION: NormalizationMode.MEAN_STD}}
        features = {{"observation.state": state, "action": action}}
        PolicyProcessorPipeline(steps=[NormalizerProcessorStep(features=features, norm_map=norm_map, stats=stats)],
                                name="policy_preprocessor").save_pretrained({str(directory)!r})
        PolicyProcessorPipeline(steps=[UnnormalizerProcessorStep(features={{"action": action}}, norm_map=norm_map,
                                                                 stats=stats)],
                                name="policy_postprocessor").save_pretrained({str(directory)!r})
    """)


@pytest.mark.skipif(not LEROBOT_PYTHON, reason="DAGGER_LEROBOT_PYTHON (a Python with lerobot) is not set")
def test_config_and_normalisers_written_by_lerobot_load(source, lerobot_dir, tokenizer_path, tmp_path):
    """At our tiny size (LeRobot's PI0Policy has only full sizes: see the next test) the weights are ours in its key
    names; config.json and the normaliser files are written by LeRobot's own PI0Config and PolicyProcessorPipeline,
    as its save_pretrained writes them."""
    from dagger_cli.policies.pi0 import Pi0Policy

    # GIVEN our weights with LeRobot's config.json and pre/postprocessor (new stats) written by LeRobot
    made = tmp_path / "lerobot-made"
    made.mkdir()
    (made / "model.safetensors").write_bytes((lerobot_dir / "model.safetensors").read_bytes())
    norm = source.transforms.norm
    stats = {"observation.state": {"mean": (norm.state_mean + 1).tolist(), "std": (norm.state_std * 2).tolist()},
             "action": {"mean": (norm.actions_mean - 1).tolist(), "std": (norm.actions_std * 3).tolist()}}
    script = textwrap.dedent(f"""
        from pathlib import Path
        import torch
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.pi0.configuration_pi0 import PI0Config
        stats = {{k: {{s: torch.tensor(v) for s, v in d.items()}} for k, d in {stats!r}.items()}}
        state = PolicyFeature(FeatureType.STATE, ({len(norm.state_mean)},))
        action = PolicyFeature(FeatureType.ACTION, (7,))
        config = PI0Config(chunk_size=50, n_action_steps=10, max_state_dim=32, max_action_dim=32, device="cpu",
                           input_features={{"observation.state": state}}, output_features={{"action": action}})
        config._save_pretrained(Path({str(made)!r}))
    """) + lerobot_processors(made)
    result = subprocess.run([LEROBOT_PYTHON, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((made / "config.json").read_text())["type"] == "pi0"
    assert list(made.glob("policy_preprocessor_step_0_normalizer_processor.safetensors"))
    # WHEN it is read as an expert (norm stats from LeRobot's files only) and as a student
    for trainable in (False, True):
        loaded = Pi0Policy(pi0_config(tokenizer_path, made), "cpu", trainable=trainable)
        # THEN the weights are ours and the stats LeRobot's
        assert torch.equal(loaded.model.state_proj.weight, source.model.state_proj.weight)
        assert np.allclose(loaded.transforms.norm.state_mean, norm.state_mean + 1)
        assert np.allclose(loaded.transforms.norm.actions_std, norm.actions_std * 3, rtol=1e-6)
    # WHEN LeRobot's config says another action dim
    config = json.loads((made / "config.json").read_text())
    config["output_features"]["action"]["shape"] = [14]
    (made / "config.json").write_text(json.dumps(config))
    # THEN it is one line naming both
    with pytest.raises(ConfigError, match="acts in 14 dims"):
        Pi0Policy(pi0_config(tokenizer_path, made), "cpu")


LEROBOT_TRANSFORMERS_BRANCH = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent / "parity")!r})
import lerobot_transformers_branch  # LeRobot's transformers branch, put back on stock transformers where it is absent
"""


def _physical_memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


@pytest.mark.skipif(not LEROBOT_PYTHON, reason="DAGGER_LEROBOT_PYTHON (a Python with lerobot) is not set")
@pytest.mark.skipif(_physical_memory_gib() < 20, reason="a full-size π₀ in fp32 needs about 15 GiB")
def test_a_checkpoint_written_by_lerobots_pi0policy_loads_and_computes_lerobots_loss(tokenizer_path, tmp_path):
    """LeRobot's own PI0Policy, at its only sizes (PaliGemma gemma_2b + expert gemma_300m: a 300m VLM does not fit
    its 2048-wide image projector), written by its save_pretrained, read by us as an expert; both compute the
    flow-matching loss on the same inputs in fp32, and both turn one LIBERO observation into the same env actions
    (LeRobot's select_action between its own pre/postprocessors: absolute actions, no delta step). Several minutes
    and ~15 GiB: run only with DAGGER_LEROBOT_PYTHON."""
    from dagger_cli.policies.pi0 import Pi0Policy
    from dagger_cli.policies.pi0.tokenizer import PromptTokenizer

    # GIVEN a π₀ checkpoint as LeRobot writes one, with its pre/postprocessor, and LeRobot's loss on fixed inputs
    made = tmp_path / "lerobot-pi0"
    inputs = tmp_path / "inputs.safetensors"
    # AND one LIBERO observation (a 224² agentview image, the 8-D state, the prompt as our tokenizer reads it) and noise
    rng = np.random.default_rng(2)
    prompt = "pick up the black bowl on the ramekin and place it on the plate"
    tokens, token_mask = PromptTokenizer(tokenizer_path, 48).encode_batch([prompt])
    observed = {"image": torch.from_numpy(rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)),
                "state": torch.from_numpy(rng.normal(size=(1, 8)).astype(np.float32)),
                "tokens": torch.from_numpy(tokens).long(), "token_mask": torch.from_numpy(token_mask).bool(),
                "noise": torch.from_numpy(rng.normal(size=(1, 50, 32)).astype(np.float32))}
    observation_file, acted = tmp_path / "observation.safetensors", tmp_path / "acted.safetensors"
    save_file(observed, str(observation_file))
    script = LEROBOT_TRANSFORMERS_BRANCH + textwrap.dedent(f"""
        from pathlib import Path
        import torch
        from safetensors.torch import save_file
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.pi0.configuration_pi0 import PI0Config
        from lerobot.policies.pi0.modeling_pi0 import PI0Policy
        state = PolicyFeature(FeatureType.STATE, (8,))
        action = PolicyFeature(FeatureType.ACTION, (7,))
        camera = PolicyFeature(FeatureType.VISUAL, (3, 224, 224))
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)  # built as LeRobot stores π₀ for training (dtype bfloat16)
        config = PI0Config(device="cpu", dtype="bfloat16", input_features={{"observation.state": state,
                           "observation.images.base_0_rgb": camera}}, output_features={{"action": action}})
        policy = PI0Policy(config)
        policy.save_pretrained(Path({str(made)!r}))
        stats = {{"observation.state": {{"mean": torch.arange(8.0), "std": torch.full((8,), 2.0)}},
                  "action": {{"mean": torch.arange(7.0) / 10, "std": torch.full((7,), 0.5)}}}}
    """) + lerobot_processors(made) + textwrap.dedent(f"""
        # the loss in fp32 from the bf16 weights it saved (RoPE's frequencies, cast to bf16 with the model, anew)
        torch.set_default_dtype(torch.float32)
        model = policy.model.float().eval()
        for rope in [m for m in model.modules() if hasattr(m, "rope_init_fn")]:
            rope.inv_freq = rope.original_inv_freq = rope.rope_init_fn(rope.config, None)[0]
        g = torch.Generator().manual_seed(1)
        x = {{"image": torch.rand(1, 3, 224, 224, generator=g) * 2 - 1, "image_mask": torch.ones(1, dtype=torch.bool),
              "tokens": torch.randint(1, 1000, (1, 12), generator=g), "token_mask": torch.ones(1, 12, dtype=torch.bool),
              "state": torch.randn(1, 32, generator=g), "actions": torch.randn(1, 50, 32, generator=g),
              "noise": torch.randn(1, 50, 32, generator=g), "time": torch.tensor([0.4])}}
        x["token_mask"][:, 9:] = False
        with torch.no_grad():
            x["loss"] = model.forward([x["image"]], [x["image_mask"]], x["tokens"], x["token_mask"], x["state"],
                                      x["actions"], x["noise"], x["time"])
        save_file(x, {str(inputs)!r})
        # select_action as a LeRobot user runs it: its saved preprocessor in, its saved postprocessor out
        from safetensors.torch import load_file
        from lerobot.processor import PolicyProcessorPipeline
        from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
        pre = PolicyProcessorPipeline.from_pretrained({str(made)!r}, config_filename="policy_preprocessor.json")
        post = PolicyProcessorPipeline.from_pretrained({str(made)!r}, config_filename="policy_postprocessor.json",
                                                       to_transition=policy_action_to_transition,
                                                       to_output=transition_to_policy_action)
        o = load_file({str(observation_file)!r})
        batch = pre({{"observation.state": o["state"],
                      "observation.images.base_0_rgb": o["image"].permute(0, 3, 1, 2).float() / 255.0,
                      "observation.language.tokens": o["tokens"],
                      "observation.language.attention_mask": o["token_mask"]}})
        model.sample_noise = lambda shape, device: o["noise"].to(device)
        policy.reset()
        steps = [post(policy.select_action(batch)) for _ in range(10)]
        save_file({{"actions": torch.stack(steps, dim=1).float().contiguous()}}, {str(acted)!r})
    """)
    result = subprocess.run([LEROBOT_PYTHON, "-c", script], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    written = load_file(str(made / "model.safetensors"))
    assert "model.paligemma_with_expert.paligemma.lm_head.weight" in written  # LeRobot keeps the tied pair's head
    assert not any(k.endswith("embed_tokens.weight") for k in written)
    # WHEN we read it as an expert (the full variant; norm stats from LeRobot's processor files only)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # made in bf16 like the file, then computed in fp32
    try:
        loaded = Pi0Policy(pi0_config(tokenizer_path, made, variant="full"), "cpu", trainable=False)
    finally:
        torch.set_default_dtype(default)
    # THEN every weight is LeRobot's, the stats are its, and its loss comes out of our model
    from dagger_cli.policies.pi0.checkpoint import _rename

    ours = loaded.model.state_dict()
    assert [k for k, v in written.items() if not torch.equal(ours[_rename(k, set(ours))], v)] == []
    embed = "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"
    assert torch.equal(ours[embed], written["model.paligemma_with_expert.paligemma.lm_head.weight"])
    del written, ours
    assert np.allclose(loaded.transforms.norm.state_mean, np.arange(8.0))
    assert np.allclose(loaded.transforms.norm.actions_std, 0.5)
    x = load_file(str(inputs))
    model = loaded.model.float()
    with torch.no_grad():
        loss = model.loss(x["image"][:, None], x["image_mask"][:, None], x["tokens"], x["token_mask"], x["state"],
                          x["actions"], x["noise"], x["time"])
    assert loss.shape == x["loss"].shape
    assert torch.allclose(loss, x["loss"], rtol=1e-5, atol=1e-6), (loss - x["loss"]).abs().max()  # equal here
    # AND on the same observation our env actions are LeRobot's select_action's (absolute: the state is not added)
    assert loaded.action_convention == "absolute"
    loaded.num_steps = 10  # LeRobot's num_inference_steps
    ours = loaded.act({"image": observed["image"].numpy(), "state": observed["state"].numpy(),
                       "prompt": np.array([prompt])}, noise=observed["noise"])
    theirs = load_file(str(acted))["actions"].numpy()
    assert theirs.shape == (1, 10, 7)
    assert np.allclose(ours[:, :10], theirs, atol=1e-4), np.abs(ours[:, :10] - theirs).max()


def test_the_action_convention_is_the_checkpoints(checkpoint_dir, tokenizer_path, tmp_path):
    """openpi's and RLinf's LIBERO π₀ predict dims 0-5 relative to the state (their norm stats in that space);
    LeRobot's π₀ predicts and normalises absolute actions, with no delta step."""
    from dagger_cli.core.errors import UsageError
    from dagger_cli.policies.pi0 import Pi0Policy, lerobot
    from dagger_cli.policies.pi0.sizes import VARIANTS

    # GIVEN one model's weights and stats in openpi's layout and, the same numbers, in LeRobot's
    openpi = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir), "cpu", trainable=False)
    made = lerobot.save(openpi.model, openpi.transforms.norm, VARIANTS["tiny"], tmp_path / "lerobot", "tiny", 7)
    lerobots = Pi0Policy(pi0_config(tokenizer_path, made), "cpu", trainable=False)
    assert (openpi.action_convention, lerobots.action_convention) == ("delta", "absolute")
    # WHEN both act on one observation with one noise
    obs = observation()
    noise = openpi.sample_noise(2)
    from_openpi, from_lerobot = openpi.act(obs, noise=noise), lerobots.act(obs, noise=noise)
    # THEN LeRobot's env action is the model's own; openpi's adds the state on the 6 arm dims, not the gripper
    state = obs["state"][:, None, :6]
    assert np.allclose(from_openpi[..., :6], from_lerobot[..., :6] + state, atol=1e-5)
    assert np.allclose(from_openpi[..., 6], from_lerobot[..., 6], atol=1e-6)
    assert not np.allclose(from_openpi, from_lerobot, atol=1e-3)
    # AND the key overrides what the layout implies, both ways
    forced = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, action_convention="absolute"), "cpu", trainable=False)
    assert np.allclose(forced.act(obs, noise=noise), from_lerobot, atol=1e-6)
    forced = Pi0Policy(pi0_config(tokenizer_path, made, action_convention="delta"), "cpu", trainable=False)
    # (float32 round-off of LeRobot's normaliser and the state added back: up to 3e-6 on actions of magnitude 6)
    assert np.allclose(forced.act(obs, noise=noise), from_openpi, atol=1e-5)
    # AND the convention travels with a state dict (run checkpoints, Ray weights): loaded into a delta policy
    student = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir), "cpu")
    student.load_state_dict(lerobots.state_dict())
    assert student.action_convention == "absolute"
    assert np.allclose(student.act(obs, noise=noise), from_lerobot, atol=1e-6)
    # AND a delta model refuses LeRobot's layout in one line, writing nothing
    with pytest.raises(UsageError, match="LeRobot's π₀ has no delta step") as e:
        openpi.save_lerobot(tmp_path / "refused")
    assert "dims 0–5" in str(e.value) and "\n" not in str(e.value) and not (tmp_path / "refused").exists()
