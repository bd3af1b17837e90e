"""π0.5 on the CPU with tiny random models of the real architecture (π₀'s code path with `pi0.pi05`): the adaptive
RMSNorm and time MLP, the state as prompt tokens, quantile norm stats, openpi's / RLinf's / LeRobot's layouts and their
one-line errors, and one `dagger train` iteration of libero-spatial-pi05 on the real LIBERO."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from dagger_cli.core.config_loader import load_config  # noqa: E402
from dagger_cli.core.errors import CheckpointError, ConfigError, UsageError  # noqa: E402

from conftest import requires_libero  # noqa: E402
from test_pi0 import gradients_with_and_without_checkpointing, observation, pi0_config  # noqa: E402


def pi05_config(tokenizer, model_path=None, **pi0):
    return pi0_config(tokenizer, model_path, pi05=True, **pi0)


@pytest.fixture(scope="module")
def pi05_dir(tmp_path_factory):
    """A tiny random π0.5 in openpi's layout: model.safetensors + physical-intelligence/libero/norm_stats.json
    (mean, std, q01, q99)."""
    from dagger_cli.policies.pi0.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("pi05"), seed=1, pi05=True)


@pytest.fixture(scope="module")
def policy(pi05_dir, tokenizer_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    return Pi0Policy(pi05_config(tokenizer_path, pi05_dir), "cpu")


# MODEL
def test_pi05_has_adaptive_expert_norms_and_a_time_mlp_instead_of_the_state_projection(policy):
    from dagger_cli.policies.pi0.model import AdaptiveRMSNorm

    model = policy.model
    assert model.size.pi05 and not hasattr(model, "state_proj") and not hasattr(model, "action_time_mlp_in")
    assert model.time_mlp_in.weight.shape == model.time_mlp_out.weight.shape == (32, 32)
    expert, vlm = model.paligemma_with_expert.expert_model, model.paligemma_with_expert.language_model
    norms = [m for layer in expert.layers for m in (layer.input_layernorm, layer.post_attention_layernorm)]
    assert all(isinstance(m, AdaptiveRMSNorm) for m in [*norms, expert.norm])
    assert norms[0].dense.weight.shape == (3 * 32, 32)  # scale, shift and gate from the time
    assert not isinstance(vlm.layers[0].input_layernorm, AdaptiveRMSNorm)  # the VLM's norms stay plain


def test_sample_shapes_and_determinism_given_noise(policy):
    obs = observation()
    noise = policy.sample_noise(2)
    a = policy.act(obs, noise=noise)
    assert a.shape == (2, 50, 7) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(policy.act(obs, noise=noise.clone()), a)
    assert not np.array_equal(policy.act(obs, noise=policy.sample_noise(2)), a)


def test_sampling_reuses_the_prefix_and_equals_the_joint_pass(policy):
    # GIVEN the velocity at t=1 two ways: the cached-prefix sampler (one Euler step) and the training forward
    model, x = policy.model, policy.inputs(observation())
    noise = policy.sample_noise(2)
    v_cached = noise - model.sample_actions(**x, noise=noise, num_steps=1)
    with torch.no_grad():
        per_element = model.loss(**x, actions=torch.zeros_like(noise), noise=noise, time=torch.ones(2))
    # THEN both paths condition the expert's norms on the time alike
    assert torch.allclose(per_element, (noise - v_cached) ** 2, atol=1e-5)


def test_the_time_reaches_the_actions_through_the_norms_alone(policy):
    """With every adaptive norm's projection zeroed (scale, shift, gate 0), each expert layer's residual branch is
    gated off: the velocity is action_out_proj(RMSNorm(action_in_proj(x_t))), whatever the images and prompt."""
    from dagger_cli.policies.pi0 import Pi0Policy

    model = Pi0Policy(policy.cfg, "cpu").model
    x = policy.inputs(observation())
    noise = policy.sample_noise(2)
    with torch.no_grad():
        one = model.loss(**x, actions=torch.zeros_like(noise), noise=noise, time=torch.full((2,), 0.3))
        other = model.loss(**x, actions=torch.zeros_like(noise), noise=noise, time=torch.full((2,), 0.7))
        assert not torch.allclose(one, other)  # the trained norms carry the time
        for name, param in model.named_parameters():
            if "norm.dense." in name:
                param.zero_()
        for time, images in ((0.3, x["images"]), (0.7, torch.zeros_like(x["images"]))):
            h = model.action_in_proj(time * noise)  # x_t with actions 0
            expected = model.action_out_proj(h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6))
            per_element = model.loss(**{**x, "images": images}, actions=torch.zeros_like(noise), noise=noise,
                                     time=torch.full((2,), time))
            assert torch.allclose(per_element, (noise - expected) ** 2, atol=1e-5)


def test_loss_decreases_on_a_fixed_batch(policy):
    from dagger_cli.policies.pi0 import Pi0Policy

    student = Pi0Policy(policy.cfg, "cpu")
    model, x = student.model, student.inputs(observation(batch=4))
    torch.manual_seed(0)
    actions, noise, time = torch.randn(4, 50, 32), torch.randn(4, 50, 32), torch.rand(4) * 0.9 + 0.05
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model.loss(**x, actions=actions, noise=noise, time=time)[:, :10, :7].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.time_mlp_in.weight.grad is not None and model.time_mlp_in.weight.grad.abs().sum() > 0


def test_gradient_checkpointing_and_bfloat16_keep_the_adaptive_norms(policy):
    model, grads = gradients_with_and_without_checkpointing(policy, "time_mlp_in.weight")
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    # AND openpi's bf16 policy keeps the adaptive norms (their dense projections) and the time MLP in fp32
    model.to_bfloat16_except_fp32_parts()
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    adaptive = [n for n in dtypes if "norm.dense." in n]
    assert adaptive and all(dtypes[n] == torch.float32 for n in adaptive)
    assert dtypes["time_mlp_in.weight"] == torch.float32
    assert dtypes["paligemma_with_expert.gemma_expert.model.layers.0.mlp.up_proj.weight"] == torch.bfloat16
    noise = torch.randn(2, 50, 32)
    out = model.eval().sample_actions(**policy.inputs(observation()), noise=noise, num_steps=2)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_full_size_pi05_is_openpis_pi0_keys_with_its_own_suffix_on_the_meta_device():
    """openpi's π0.5 (`pi05=True`): π₀'s 778 keys less state_proj, action_time_mlp_* and the expert's 37 norm weights,
    plus time_mlp_* and a dense (weight, bias) in each of those 37 norms: 813 keys, 3.617 B parameters (the 4.14 B
    the Hub shows for LeRobot's π0.5 counts the tied lm_head twice)."""
    from dagger_cli.policies.pi0.checkpoint import openpi_name
    from dagger_cli.policies.pi0.model import Pi0Model
    from dagger_cli.policies.pi0.sizes import model_size

    with torch.device("meta"):
        pi0, pi05 = Pi0Model(model_size("full")), Pi0Model(model_size("full", pi05=True))
    old = {openpi_name(k): tuple(v.shape) for k, v in pi0.state_dict().items()}
    new = {openpi_name(k): tuple(v.shape) for k, v in pi05.state_dict().items()}
    ex = "paligemma_with_expert.gemma_expert.model."
    norms = [ex + f"layers.{i}.{n}" for i in range(18) for n in ("input_layernorm", "post_attention_layernorm")]
    norms.append(ex + "norm")
    gone = {"state_proj.weight", "state_proj.bias", *(f"action_time_mlp_{s}.{p}" for s in ("in", "out")
                                                     for p in ("weight", "bias")), *(n + ".weight" for n in norms)}
    added = {f"time_mlp_{s}.weight": (1024, 1024) for s in ("in", "out")}
    added |= {f"time_mlp_{s}.bias": (1024,) for s in ("in", "out")}
    added |= {n + ".dense.weight": (3072, 1024) for n in norms} | {n + ".dense.bias": (3072,) for n in norms}
    assert new == {**{k: v for k, v in old.items() if k not in gone}, **added}
    assert len(gone) == 43 and len(new) == 813
    assert sum(p.numel() for p in pi05.parameters()) == 3_616_757_520


# PROMPT AND NORMALISATION
def test_the_state_goes_into_the_prompt_in_256_bins():
    from dagger_cli.policies.pi0.tokenizer import state_bins, state_prompt

    assert state_bins(np.array([-1.5, -1.0, -0.999, 0.0, 0.5, 0.99, 1.0, 2.0])).tolist() == [
        -1, 0, 0, 128, 192, 254, 255, 255]
    assert state_prompt(" pick_up the bowl\n", np.array([0.0, -1.0])) == "Task: pick up the bowl, State: 128 0;\nAction: "


@pytest.fixture(scope="module")
def state_tokenizer(tmp_path_factory):
    """A SentencePiece model that also knows π0.5's state prompts (digits, `Task:`, `State:`): the session's one maps
    every digit to <unk>, so no state would show."""
    from conftest import PROMPTS
    from dagger_cli.policies.pi0.testing import train_tokenizer
    from dagger_cli.policies.pi0.tokenizer import state_prompt

    rng = np.random.default_rng(0)
    prompts = [state_prompt(p, rng.uniform(-1, 1, 8)) for p in PROMPTS for _ in range(5)]
    return train_tokenizer(tmp_path_factory.mktemp("state-tok"), PROMPTS + prompts, vocab_size=128)


def test_state_tokens_as_the_checkpoint_maker_wrote_them(policy, state_tokenizer, pi05_dir):
    from dagger_cli.policies.pi0 import Pi0Policy
    from dagger_cli.policies.pi0.tokenizer import state_prompt

    tokenizer_path = state_tokenizer

    obs = observation()
    moved = {**obs, "state": obs["state"] + 0.5}
    noise = policy.sample_noise(2)
    # GIVEN openpi's pi05_libero convention (the default for LIBERO data): no state tokens, π₀'s prompt format
    assert not policy.state_tokens and policy.action_convention == "absolute"
    assert np.array_equal(policy.inputs(obs)["tokens"].numpy(), policy.inputs(moved)["tokens"].numpy())
    assert np.array_equal(policy.act(obs, noise=noise), policy.act(moved, noise=noise))  # the state is not seen
    # WHEN the state goes into the prompt
    tokens = Pi0Policy(pi05_config(tokenizer_path, pi05_dir, state_tokens=True), "cpu")
    x = tokens.inputs(obs)
    normalised = tokens.transforms.normalised_state(obs["state"])
    ids = tokens.tokenizer._sp.encode(state_prompt(str(obs["prompt"][0]), normalised[0]), add_bos=True)
    # THEN it is openpi's format with the quantile-normalised state, up to 200 tokens
    assert x["tokens"].shape == (2, 200) and x["tokens"][0, : len(ids)].tolist() == ids
    assert int(x["token_masks"][0].sum()) == len(ids)
    assert not np.array_equal(tokens.act(obs, noise=noise), tokens.act(moved, noise=noise))
    # AND LeRobot 0.4.x's prompts held the state padded with zeros (bin 128) to 32 values
    padded = Pi0Policy(pi05_config(tokenizer_path, pi05_dir, state_tokens=True, state_token_dims=32), "cpu")
    full = np.concatenate([normalised[0], np.zeros(24)])
    ids = padded.tokenizer._sp.encode(state_prompt(str(obs["prompt"][0]), full), add_bos=True)
    assert padded.inputs(obs)["tokens"][0, : len(ids)].tolist() == ids[:200]


def test_quantile_normalisation_maps_q01_q99_to_minus_one_one_and_back(policy):
    norm, t = policy.transforms.norm, policy.transforms
    assert t.quantiles  # π0.5's default, as openpi's data configs (use_quantile_norm for every model but π₀)
    state = np.stack([norm.state_q01, norm.state_q99])
    assert np.allclose(t.normalised_state(state), [[-1.0] * 8, [1.0] * 8], atol=1e-5)
    actions = np.random.default_rng(0).normal(size=(2, 50, 7))
    model = t.actions_to_model(actions, state)
    assert model.shape == (2, 50, 32) and np.allclose(t.actions_from_model(model, state), actions, atol=1e-5)


def test_a_student_without_norm_stats_fits_quantiles_from_its_first_labels(tokenizer_path, tmp_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    student = Pi0Policy(pi05_config(tokenizer_path), "cpu")
    assert student.needs_norm_stats and student.quantiles
    obs = observation(batch=64)
    labels = np.random.default_rng(2).normal(size=(64, 50, 7)).astype(np.float32)
    student.fit_norm_stats(obs, labels)
    norm = student.transforms.norm
    assert np.allclose(norm.actions_q99, np.quantile(labels.reshape(-1, 7), 0.99, axis=0))
    state = student.state_dict()
    assert "norm_stats/actions_q01" in state and "norm_stats/state_q99" in state
    saved = json.loads((student.save(tmp_path / "s").parent / "physical-intelligence/libero/norm_stats.json")
                       .read_text())["norm_stats"]
    assert set(saved["actions"]) == {"mean", "std", "q01", "q99"}


# CHECKPOINT LAYOUTS
def test_openpi_and_rlinf_layouts_load_to_the_same_weights(policy, pi05_dir, tokenizer_path, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from dagger_cli.policies.pi0 import Pi0Policy

    obs, noise = observation(), policy.sample_noise(2)
    # openpi's PyTorch layout: our save, read back (norm stats under assets/ as openpi keeps them)
    policy.save(tmp_path / "openpi")
    (tmp_path / "openpi" / "assets").mkdir()
    shutil.move(tmp_path / "openpi" / "physical-intelligence", tmp_path / "openpi" / "assets")
    with safe_open(str(tmp_path / "openpi" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "time_mlp_in.weight" in keys and "state_proj.weight" not in keys
    assert "paligemma_with_expert.gemma_expert.model.layers.0.input_layernorm.dense.weight" in keys
    openpi = Pi0Policy(pi05_config(tokenizer_path, tmp_path / "openpi"), "cpu")
    # RLinf's: model_state_dict/full_weights.pt (read weights-only) + <asset_id>/norm_stats.json
    rlinf = tmp_path / "rlinf"
    (rlinf / "model_state_dict").mkdir(parents=True)
    torch.save(load_file(str(pi05_dir / "model.safetensors")), rlinf / "model_state_dict" / "full_weights.pt")
    shutil.copytree(pi05_dir / "physical-intelligence", rlinf / "physical-intelligence")
    rlinf_policy = Pi0Policy(pi05_config(tokenizer_path, rlinf), "cpu")
    for other in (openpi, rlinf_policy):
        assert other.action_convention == "absolute"  # openpi's and RLinf's pi05_libero: no delta step
        assert np.array_equal(other.act(obs, noise=noise), policy.act(obs, noise=noise))


def test_lerobot_layout_round_trip_keeps_its_names_horizon_and_normalisation(policy, pi05_dir, tokenizer_path,
                                                                               tmp_path):
    from safetensors.torch import load_file

    from dagger_cli.policies.pi0 import Pi0Policy

    # GIVEN a π0.5 that writes its state into the prompt, exported in LeRobot's PI05Policy layout
    source = Pi0Policy(pi05_config(tokenizer_path, pi05_dir, state_tokens=True), "cpu")
    made = source.save_lerobot(tmp_path / "lerobot")
    config = json.loads((made / "config.json").read_text())
    assert config["type"] == "pi05" and config["tokenizer_max_length"] == 200 and config["chunk_size"] == 50
    assert config["normalization_mapping"]["ACTION"] == "QUANTILES"
    keys = set(load_file(str(made / "model.safetensors")))
    assert "model.time_mlp_in.weight" in keys and not any("action_time_mlp" in k for k in keys)
    stats = load_file(str(made / "policy_preprocessor_step_2_normalizer_processor.safetensors"))
    assert {"observation.state.q01", "action.q99"} <= set(stats)
    # AND what LeRobot needs to run it: the cameras, the denoising and executed steps, the processor pipelines
    assert config["input_features"]["observation.images.wrist_image"] == {"type": "VISUAL", "shape": [3, 224, 224]}
    assert list(config["input_features"]) == ["observation.state", "observation.images.image",
                                              "observation.images.wrist_image"]
    assert (config["num_inference_steps"], config["n_action_steps"]) == (4, 10)
    pre = json.loads((made / "policy_preprocessor.json").read_text())
    assert [step["registry_name"] for step in pre["steps"]][2:4] == [
        "normalizer_processor", "pi05_prepare_state_tokenizer_processor_step"]
    assert pre["steps"][2]["state_file"] == "policy_preprocessor_step_2_normalizer_processor.safetensors"
    # THEN read back as LeRobot runs it (absolute actions, the state in the prompt), it acts the same
    loaded = Pi0Policy(pi05_config(tokenizer_path, made), "cpu")
    assert loaded.state_tokens and loaded.quantiles and loaded.action_convention == "absolute"
    obs, noise = observation(), source.sample_noise(2)
    assert np.allclose(loaded.act(obs, noise=noise), source.act(obs, noise=noise), atol=1e-5)  # float32 stats files
    # AND a LeRobot checkpoint's own horizon and MEAN_STD mapping are taken from its config.json
    config.update(chunk_size=10, normalization_mapping={"VISUAL": "IDENTITY", "STATE": "MEAN_STD",
                                                        "ACTION": "MEAN_STD"})
    (made / "config.json").write_text(json.dumps(config))
    other = Pi0Policy(pi05_config(tokenizer_path, made), "cpu")
    assert other.model.size.action_horizon == 10 and other.action_shape == (10, 7) and not other.quantiles
    assert other.act(obs, noise=other.sample_noise(2)).shape == (2, 10, 7)


def test_a_lerobot_checkpoint_is_normalised_and_sampled_as_lerobot_does(policy, tokenizer_path, tmp_path):
    """LeRobot's normaliser adds its 1e-8 to a quantile range only where it is 0 (openpi: 1e-6 always), and its
    sampler computes each step's time as 1 + k·dt (openpi accumulates t += dt in fp32)."""
    from dagger_cli.policies.pi0 import Pi0Policy

    made = Pi0Policy(pi05_config(tokenizer_path, None, state_tokens=True), "cpu")
    made.load_state_dict(policy.state_dict())
    made.transforms.norm.state_q99[1] = made.transforms.norm.state_q01[1]  # a dim that never moved
    exported = made.save_lerobot(tmp_path / "lerobot")
    loaded = Pi0Policy(pi05_config(tokenizer_path, exported, num_steps=10), "cpu")
    assert loaded.lerobot_made and not policy.lerobot_made
    norm, obs = loaded.transforms.norm, observation()
    low, high = norm.state_q01, norm.state_q99
    expected = 2 * (obs["state"] - low) / np.where(high == low, 1e-8, high - low) - 1
    assert np.allclose(loaded.transforms.normalised_state(obs["state"]), expected, rtol=1e-12)
    chunk = np.random.default_rng(0).normal(size=(2, 50, 32))
    ranges = norm.actions_q99[:7] - norm.actions_q01[:7]
    assert np.allclose(loaded.transforms.actions_from_model(chunk, obs["state"]),
                       (chunk[..., :7] + 1) * ranges / 2 + norm.actions_q01[:7], rtol=1e-6)
    # AND its sampled actions take LeRobot's step times, which differ from openpi's by rounding alone
    x, noise = loaded.inputs(obs), loaded.sample_noise(2)
    rounded = loaded.model.sample_actions(**x, noise=noise, num_steps=10, rounded_times=True)
    accumulated = loaded.model.sample_actions(**x, noise=noise, num_steps=10)
    assert np.array_equal(loaded.act(obs, noise=noise),
                          loaded.transforms.actions_from_model(rounded.numpy(), obs["state"]))
    assert not torch.equal(rounded, accumulated) and torch.allclose(rounded, accumulated, atol=1e-4)


def test_a_pi05_student_learns_from_a_pi05_expert_through_the_learner(policy, pi05_dir, tokenizer_path):
    from dagger_cli.core.config import ActorConfig
    from dagger_cli.core.engine.learner import Learner
    from dagger_cli.core.engine.replay_buffer import ReplayBuffer, flatten_obs
    from dagger_cli.policies.pi0 import Pi0Policy

    obs = observation(batch=8)
    labels = policy.act(obs)
    student = Pi0Policy(pi05_config(tokenizer_path, pi05_dir, state_tokens=True), "cpu")
    buffer = ReplayBuffer(64)
    buffer.add({**flatten_obs(obs), "expert_action": labels})
    before = student.model.time_mlp_in.weight.detach().clone()
    learner = Learner(student, ActorConfig(global_batch_size=8, micro_batch_size=4), seed=0, default_total_steps=10)
    assert np.isfinite(learner.train(buffer, 2)["train/dagger/actor_loss"])
    assert not torch.equal(before, student.model.time_mlp_in.weight)


# ONE-LINE ERRORS
def test_checkpoint_kind_and_stats_mismatches_are_one_line_errors(policy, pi05_dir, checkpoint_dir, tokenizer_path,
                                                                 tmp_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    def one_line(error, *parts):
        text = str(error.value)
        assert "\n" not in text and all(p in text for p in parts), text

    # a π₀ checkpoint where π0.5 is configured, and the other way round: the file, a key that shows it, the switch
    with pytest.raises(CheckpointError) as e:
        Pi0Policy(pi05_config(tokenizer_path, checkpoint_dir), "cpu")
    one_line(e, str(checkpoint_dir), "π₀ weights (state_proj.weight", "actor.model.pi0.pi05=false")
    with pytest.raises(CheckpointError) as e:
        Pi0Policy(pi0_config(tokenizer_path, pi05_dir), "cpu", trainable=False)
    one_line(e, str(pi05_dir), "π0.5 weights (paligemma_with_expert.gemma_expert.model.layers.0.input_layernorm.dense",
             "rollout.expert_model.pi0.pi05=true")
    # norm stats without quantiles, for a π0.5 that normalises by them
    old = tmp_path / "no-quantiles"
    shutil.copytree(pi05_dir, old)
    path = old / "physical-intelligence/libero/norm_stats.json"
    data = json.loads(path.read_text())
    for part in data["norm_stats"].values():
        del part["q01"], part["q99"]
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as e:
        Pi0Policy(pi05_config(tokenizer_path, old), "cpu")
    one_line(e, str(path), "norm stats lack state_q01", "actor.model.pi0.normalization=mean_std")
    assert Pi0Policy(pi05_config(tokenizer_path, old, normalization="mean_std"), "cpu").act(observation()).shape
    # a LeRobot π₀ directory where π0.5 is configured, and a mapping dagger does not read
    made = Pi0Policy(pi05_config(tokenizer_path, pi05_dir, state_tokens=True), "cpu").save_lerobot(tmp_path / "lr")
    config = json.loads((made / "config.json").read_text())
    (made / "config.json").write_text(json.dumps({**config, "type": "pi0"}))
    with pytest.raises(ConfigError) as e:
        Pi0Policy(pi05_config(tokenizer_path, made), "cpu")
    one_line(e, "actor.model.model_path: ", str(made / "config.json"), "LeRobot 'pi0' policy, not pi05",
             "set actor.model.pi0.pi05=false")
    mixed = {**config, "normalization_mapping": {"STATE": "MEAN_STD", "ACTION": "QUANTILES"}}
    (made / "config.json").write_text(json.dumps(mixed))
    with pytest.raises(CheckpointError) as e:
        Pi0Policy(pi05_config(tokenizer_path, made), "cpu")
    one_line(e, str(made / "config.json"), "normalization_mapping STATE 'MEAN_STD', ACTION 'QUANTILES'")


def test_config_and_export_refusals_are_one_line(policy, tokenizer_path, tmp_path):
    # state tokens are π0.5's
    with pytest.raises(ConfigError) as e:
        load_config("pick-cube", overrides=["actor.model.model_type=pi0", "actor.model.pi0.state_tokens=true"])
    assert str(e.value).startswith("actor.model.pi0.state_tokens: only π0.5 reads the state from the prompt")
    with pytest.raises(ConfigError) as e:
        load_config("libero-spatial-pi05", overrides=["rollout.expert_model.pi0.action_horizon=5"])
    assert str(e.value) == ("rollout.expert_model.num_action_chunks: the full π0.5 predicts 5 steps; cannot execute 10")
    # LeRobot's π0.5 always writes the state into its prompt: a π0.5 that never saw it cannot go there
    with pytest.raises(UsageError) as e:
        policy.save_lerobot(tmp_path / "x")
    assert "does not read the state from its prompt" in str(e.value) and "\n" not in str(e.value)


# PRESET, CHECK
def test_the_preset_pairs_a_lerobot_pi05_expert_with_the_pi0_student():
    from dagger_cli.core.registry import fetch_aliases

    cfg = load_config("libero-spatial-pi05")
    student, expert = cfg.actor.model, cfg.rollout.expert_model
    assert not student.pi0.pi05 and student.model_path.endswith("RLinf/RLinf-Pi0-LIBERO-Spatial-Object-Goal-SFT")
    assert expert.pi0.pi05 and expert.pi0.state_token_dims == 32 and expert.pi0.action_horizon is None
    aliases = fetch_aliases()
    assert expert.model_path.endswith(aliases["pi05-libero-expert"].repo_id)
    assert aliases["pi05-libero-expert"].config_key == "rollout.expert_model.model_path"
    assert aliases["pi05-libero-rlinf"].repo_id == "RLinf/RLinf-Pi05-LIBERO-SFT"
    base = load_config("libero-spatial")
    assert dataclasses.replace(cfg.actor, model=base.actor.model) == base.actor and cfg.algorithm == base.algorithm


def test_check_describes_a_pi05_and_estimates_its_memory(policy):
    from dagger_cli.policies.pi0 import describe, pi0_flops
    from dagger_cli.policies.pi0.model import memory_estimate_gib
    from dagger_cli.policies.pi0.sizes import model_size

    full = model_size("full", pi05=True)
    weights, total = memory_estimate_gib(full, "bfloat16", train_expert_only=False, trainable=False)
    assert 6.9 < weights < 7.0 and weights == total  # bf16 but openpi's fp32 parts (adaptive norms among them)
    _, training = memory_estimate_gib(full, "bfloat16", train_expert_only=False, trainable=True)
    assert 50.0 < training < 51.5, training
    expert = load_config("libero-spatial-pi05").rollout.expert_model
    line = describe(expert, None, "cuda", False)
    assert line.startswith("full π0.5 in bfloat16 (stored in bf16): weights 7.0 GiB"), line
    act, _ = pi0_flops(expert)
    pi0_act, _ = pi0_flops(load_config("libero-spatial").rollout.expert_model)
    assert act > pi0_act  # 200 prompt tokens instead of 48 and 10 denoising steps instead of 4
    tiny = describe(policy.cfg, policy, "cpu", True)
    assert "tiny π0.5" in tiny and "quantile norm stats; state not seen" in tiny
    assert "absolute actions (openpi's π0.5 convention)" in tiny


# ONE REAL LIBERO ITERATION
@requires_libero
@pytest.mark.sim
def test_one_libero_iteration_with_a_tiny_pi05_student_and_expert(pi05_dir, tokenizer_path, tmp_path):
    """dagger train libero-spatial-pi05 for one iteration on the real LIBERO (OSMesa), as the preset runs: a tiny π0.5
    expert in LeRobot's layout (state in the prompt, padded to 32) labels, and a tiny π0.5 student in openpi's layout
    (π0.5 rather than the preset's π₀, which test_libero trains) trains on its labels. Soft resets and 64² cameras
    as test_libero's tiny-π₀ iteration; no evaluation video (≈25 s here)."""
    from dagger_cli.policies.pi0 import Pi0Policy
    from test_cli import dagger

    expert_dir = Pi0Policy(pi05_config(tokenizer_path, pi05_dir, state_tokens=True), "cpu").save_lerobot(
        tmp_path / "expert")
    run = tmp_path / "run"
    sets = []
    for key, value in [("actor.model.model_path", pi05_dir), ("actor.model.pi0.pi05", "true"),
                       ("rollout.expert_model.model_path", expert_dir)]:
        sets += ["--set", f"{key}={value}"]
    for model in ("actor.model", "rollout.expert_model"):
        sets += ["--set", f"{model}.pi0.variant=tiny", "--set", f"{model}.pi0.tokenizer_path={tokenizer_path}",
                 "--set", f"{model}.pi0.num_steps=2"]
    small = ["env.num_envs=2", "env.image_size=64", "env.settle_steps=2", "env.hard_reset=false",
             "env.max_episode_steps=20", "env.max_steps_per_rollout_epoch=20", "env.eval.num_episodes=2",
             "runner.max_epochs=1", "algorithm.replay_buffer.min_buffer_size=4",
             "algorithm.replay_buffer.sample_window_size=64", "actor.global_batch_size=4", "actor.micro_batch_size=2",
             "runner.eval_expert=false"]
    for item in small:
        sets += ["--set", item]
    result = dagger("train", "libero-spatial-pi05", "--run-dir", str(run), "--json", *sets)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["iterations"] == 1 and summary["env_steps"] == 2 * 20
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["train/replay_buffer/total_samples"] == 2 * 2
    assert rows[1]["train/dagger/expert_action_frac"] == 1.0 and np.isfinite(rows[1]["train/dagger/actor_loss"])
    assert 0.0 <= summary["student_final_sr"] <= 1.0


def test_fetch_recognises_lerobots_layout_as_weights_and_norm_stats():
    from dagger_cli.policies.pi0.downloads import CHECKPOINT

    files = ["config.json", "model.safetensors", "policy_preprocessor.json",
             "policy_preprocessor_step_2_normalizer_processor.safetensors",
             "policy_postprocessor_step_0_unnormalizer_processor.safetensors", "train_config.json"]
    layout = CHECKPOINT.inspect(files, Path("pi05_libero_finetuned"))
    assert layout.found["weights"] == ["model.safetensors"] and not layout.missing
    assert layout.found["norm_stats"] == {
        "LeRobot's normaliser": "policy_preprocessor_step_2_normalizer_processor.safetensors"}
