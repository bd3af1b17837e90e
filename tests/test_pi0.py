"""π₀ on the CPU with a tiny random model of the real architecture (same code path and key names)."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from dagger_cli.core.config_loader import load_config  # noqa: E402
from dagger_cli.core.errors import CheckpointError  # noqa: E402

from conftest import PROMPTS  # noqa: E402
from dagger_cli.policies.pi0.images import augment_for_training  # noqa: E402
from dagger_cli.policies.pi0.testing import write_norm_stats  # noqa: E402


def pi0_config(tokenizer, model_path=None, **pi0):
    cfg = load_config("pick-cube", overrides=[
        "actor.model.model_type=pi0", "actor.model.action_dim=7", "actor.model.num_action_chunks=10",
        "actor.model.pi0.variant=tiny", f"actor.model.pi0.tokenizer_path={tokenizer}",
        "actor.model.pi0.num_steps=4",
    ] + ([f"actor.model.model_path={model_path}"] if model_path else []))
    model = dataclasses.replace(cfg.actor.model, pi0=dataclasses.replace(cfg.actor.model.pi0, **pi0))
    return model


def observation(batch=2, seed=0, size=256):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8),
        "wrist_image": rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8),
        "state": rng.normal(size=(batch, 8)).astype(np.float32),
        "prompt": np.array([PROMPTS[i % len(PROMPTS)] for i in range(batch)]),
    }


@pytest.fixture(scope="module")
def policy(checkpoint_dir, tokenizer_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    return Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir), "cpu")


# MODEL
def test_sample_shapes_and_determinism_given_noise(policy):
    obs = observation()
    noise = policy.sample_noise(2)
    a = policy.act(obs, noise=noise)
    assert a.shape == (2, 50, 7) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(policy.act(obs, noise=noise.clone()), a)
    assert not np.array_equal(policy.act(obs, noise=policy.sample_noise(2)), a)


def test_sampling_reuses_the_prefix_and_equals_the_joint_pass(policy):
    # GIVEN the model's velocity at t=1 computed two ways: the cached-prefix sampler with one Euler step, and the
    # training forward (one joint pass) with x_t = noise at t = 1, where loss = (noise - actions - v)^2
    model, x = policy.model, policy.inputs(observation())
    noise = policy.sample_noise(2)
    one_step = model.sample_actions(**x, noise=noise, num_steps=1)  # x_0 = noise - v(noise, 1)
    v_cached = noise - one_step
    actions = torch.zeros_like(noise)
    with torch.no_grad():
        per_element = model.loss(**x, actions=actions, noise=noise, time=torch.ones(2))
    # THEN (noise - 0 - v)^2 from the joint pass equals (noise - v_cached)^2
    assert torch.allclose(per_element, (noise - v_cached) ** 2, atol=1e-5)


def test_loss_decreases_on_a_fixed_batch(policy):
    from dagger_cli.policies.pi0 import Pi0Policy

    student = Pi0Policy(policy.cfg, "cpu")
    model, x = student.model, student.inputs(observation(batch=4))
    torch.manual_seed(0)
    actions = torch.randn(4, 50, 32)
    noise, time = torch.randn(4, 50, 32), torch.rand(4) * 0.9 + 0.05
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model.loss(**x, actions=actions, noise=noise, time=time)[:, :10, :7].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_dagger_loss_is_cropped_to_the_executed_chunk_and_env_dims(policy):
    # GIVEN env-unit labels over the full horizon (the whole chunk feeds x_t; only the executed part is scored)
    obs = observation()
    labels = policy.act(obs, noise=policy.sample_noise(2))
    torch.manual_seed(1)
    loss = policy.loss(obs, labels)
    # WHEN the per-element loss is recomputed with the same draws of time and noise
    torch.manual_seed(1)
    time = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0)).sample((2,)) * 0.999 + 0.001
    noise = policy.sample_noise(2)
    x = policy.inputs(obs)
    x["images"] = augment_for_training(x["images"], [False, True])  # LIBERO's data: the base camera, then the wrist
    actions = torch.as_tensor(policy.transforms.actions_to_model(labels, obs["state"]))
    per_element = policy.model.loss(**x, actions=actions, noise=noise, time=time)
    # THEN the DAgger loss is its mean over the first 10 steps and the 7 env dims only
    assert per_element.shape == (2, 50, 32)
    assert torch.allclose(loss, per_element[:, :10, :7].mean())
    assert not torch.allclose(loss, per_element.mean())


def test_uncertainty_chunks_share_one_prefix_pass_and_equal_separate_samples(policy):
    # GIVEN two observations and the student's K uncertainty samples each
    obs, draws = observation(), policy.uncertainty_samples
    torch.manual_seed(3)
    actions, spread = policy.act_with_uncertainty(obs)
    torch.manual_seed(3)
    noise = policy.sample_noise(2 * draws)  # the same draws: an observation's K rows together
    # WHEN each draw is sampled on its own, prefix and all
    x = policy.inputs(obs)
    separate = torch.stack([policy.model.sample_actions(**x, noise=noise[j::draws], num_steps=policy.num_steps)
                            for j in range(draws)], dim=1)
    # THEN the actions are the first draw's, and the score is the draws' spread over the env's dims and steps
    assert np.allclose(actions, policy.act(obs, noise=noise[0::draws]), atol=1e-5)
    horizon, dim = policy.action_shape
    expected = separate[:, :, :horizon, :dim].std(dim=1, correction=0).mean(dim=(1, 2))
    assert spread.shape == (2,) and np.allclose(spread, expected.numpy(), atol=1e-5) and (spread > 0).all()


def test_a_cold_sample_starts_the_flow_from_scaled_noise(checkpoint_dir, tokenizer_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    # GIVEN a student that acts from noise of std 0 and the same weights acting from π₀'s N(0, I)
    torch.manual_seed(0)
    cold = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, sample_noise_scale=0.0), "cpu")
    warm = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir), "cpu")
    obs = observation()
    # WHEN each acts twice without given noise
    torch.manual_seed(4)
    cold_twice = [cold.act(obs), cold.act(obs)]
    warm_twice = [warm.act(obs), warm.act(obs)]
    # THEN the cold one gives one chunk per observation, the flow from the noise's mean; π₀'s varies
    zero = torch.zeros_like(warm.sample_noise(2))
    assert np.array_equal(cold_twice[0], cold_twice[1])
    assert np.allclose(cold_twice[0], warm.act(obs, noise=zero), atol=1e-6)
    assert not np.array_equal(warm_twice[0], warm_twice[1])
    # and, scoring its uncertainty, it executes that chunk while the spread is over K draws at std 1
    torch.manual_seed(5)
    actions, spread = cold.act_with_uncertainty(obs)
    assert np.allclose(actions, cold_twice[0], atol=1e-5)
    torch.manual_seed(5)
    draws = cold.uncertainty_samples
    noise = cold.sample_noise(2 * (draws + 1))
    noise = noise.reshape(2, draws + 1, *noise.shape[1:])[:, 1:]
    x = cold.inputs(obs)
    separate = torch.stack([cold.model.sample_actions(**x, noise=noise[:, j], num_steps=cold.num_steps)
                            for j in range(draws)], dim=1)
    horizon, dim = cold.action_shape
    expected = separate[:, :, :horizon, :dim].std(dim=1, correction=0).mean(dim=(1, 2))
    assert np.allclose(spread, expected.numpy(), atol=1e-5) and (spread > 0).all()


@pytest.mark.parametrize("key, value", [("sample_noise_scale", -0.5), ("loss_draws", 0)])
def test_a_negative_noise_scale_or_no_loss_draw_is_refused(tokenizer_path, key, value):
    from dagger_cli.core.errors import ConfigError

    cfg = pi0_config(tokenizer_path, **{key: value})
    with pytest.raises(ConfigError, match=rf"actor\.model\.pi0\.{key}"):
        cfg.check("actor.model", None)


def test_several_loss_draws_share_one_prefix_and_equal_separate_joint_passes(policy):
    """GIVEN 3 (time, noise) draws for each of 2 observations WHEN the loss takes them together (`pi0.loss_draws`:
    the prefix runs once, every draw's suffix attends to its cached keys and values) THEN each element's loss, and
    the gradient of every parameter, is the mean over 3 separate joint passes (openpi's loss), one per draw."""
    model, x = policy.model, policy.inputs(observation())
    torch.manual_seed(2)
    actions = torch.randn(2, 50, 32)
    noise, time = torch.randn(2, 3, 50, 32), torch.rand(2, 3) * 0.9 + 0.05

    def loss_and_gradients(compute):
        model.zero_grad(set_to_none=True)
        per_element = compute()
        per_element[:, :10, :7].mean().backward()
        gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        return per_element.detach(), gradients

    together, g_together = loss_and_gradients(
        lambda: model.loss(**x, actions=actions, noise=noise.flatten(0, 1), time=time.flatten()))
    separate, g_separate = loss_and_gradients(lambda: torch.stack(
        [model.loss(**x, actions=actions, noise=noise[:, k], time=time[:, k]) for k in range(3)]).mean(dim=0))
    assert together.shape == (2, 50, 32) and torch.allclose(together, separate, atol=1e-5)
    assert any("vision_tower" in n for n in g_together)
    for name in set(g_together) | set(g_separate):  # a parameter one pass leaves unused has no gradient there
        g, other = (grads.get(name, torch.zeros(())) for grads in (g_together, g_separate))
        assert torch.allclose(g, other, atol=1e-6, rtol=1e-4), name
    # AND the draws count: the first alone is another loss
    first = model.loss(**x, actions=actions, noise=noise[:, 0], time=time[:, 0])
    assert not torch.allclose(first.detach(), together, atol=1e-3)


def test_a_student_with_loss_draws_draws_them_per_sample_and_learns(tokenizer_path):
    """GIVEN a student with `loss_draws: 4` THEN its loss randomness has 4 draws per sample (rows stay samples, so a
    data-parallel learner's shards stay whole samples) and its loss falls on a fixed batch; with 1 draw, the numbers
    are those π₀'s loss draws (one time and one noise per sample, in that order)."""
    from dagger_cli.policies.pi0 import Pi0Policy

    one, four = (Pi0Policy(pi0_config(tokenizer_path, loss_draws=k), "cpu") for k in (1, 4))
    torch.manual_seed(3)
    a = one.loss_noise(2)
    torch.manual_seed(3)
    time = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0)).sample((2,)) * 0.999 + 0.001
    assert torch.equal(a["time"][:, 0], time) and torch.equal(a["noise"][:, 0], torch.randn(2, 50, 32))
    b = four.loss_noise(2)
    assert a["noise"].shape == (2, 1, 50, 32) and b["noise"].shape == (2, 4, 50, 32) and b["time"].shape == (2, 4)
    obs, labels = observation(batch=4), np.random.default_rng(0).uniform(-1, 1, (4, 10, 7)).astype(np.float32)
    optimizer = torch.optim.AdamW(four.model.parameters(), lr=3e-3)
    torch.manual_seed(4)
    noise = four.loss_noise(4)
    losses = []
    for _ in range(10):
        loss = four.loss(obs, labels, noise=noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_a_compiled_training_pass_gives_the_eager_loss_and_gradients(checkpoint_dir, tokenizer_path, monkeypatch):
    """GIVEN two students from one checkpoint, one with `pi0.compile_loss` (torch.compile made to trace with dynamo's
    `eager` backend: our code's graphs, not TorchInductor's kernels, which bench/learner_step.py times) WHEN each
    takes the loss of one batch with the same draws THEN the compiled one ran through dynamo and its loss and every
    gradient equal the eager one's; an expert with the key set is not compiled, and the student still pickles."""
    import functools

    import torch._dynamo
    from dagger_cli.policies.pi0 import Pi0Policy

    compiled = []
    eager_backend = functools.partial(torch.compile, backend="eager")
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or eager_backend(fn, **kw))
    torch._dynamo.reset()
    plain = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir), "cpu")
    student = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, compile_loss=True), "cpu")
    expert = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, compile_loss=True), "cpu", trainable=False)
    assert not expert.compile_loss and student.compile_loss
    obs, labels = observation(batch=2), np.random.default_rng(0).uniform(-1, 1, (2, 10, 7)).astype(np.float32)
    noise = plain.loss_noise(2)
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    losses, grads = [], []
    for policy in (plain, student):
        loss = policy.loss(obs, labels, noise=noise)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in policy.model.named_parameters() if p.grad is not None})
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > frames
    assert len(compiled) == 1 and compiled[0] == student.model.loss
    # AND the student pickles (data-parallel ranks receive it), its compiled pass left behind to be rebuilt there
    import pickle

    assert pickle.loads(pickle.dumps(student))._compiled_loss is None
    assert torch.allclose(losses[0], losses[1], rtol=1e-5) and grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-6, rtol=1e-4), name


def gradients_with_and_without_checkpointing(policy, parameter: str):
    """The gradient of one parameter of a fresh copy of `policy`'s model, from one loss computed without and then with
    gradient checkpointing."""
    from dagger_cli.policies.pi0 import Pi0Policy

    model = Pi0Policy(policy.cfg, "cpu").model
    x = policy.inputs(observation())
    torch.manual_seed(0)
    actions, noise, time = torch.randn(2, 50, 32), torch.randn(2, 50, 32), torch.rand(2)
    model.train()
    grads = []
    for flag in (False, True):
        model.gradient_checkpointing = flag
        model.zero_grad()
        model.loss(**x, actions=actions, noise=noise, time=time).mean().backward()
        grads.append(model.get_parameter(parameter).grad.clone())
    return model, grads


def test_gradient_checkpointing_changes_nothing(policy):
    _, grads = gradients_with_and_without_checkpointing(policy, "action_in_proj.weight")
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_train_expert_only_freezes_the_vlm(checkpoint_dir, tokenizer_path):
    from dagger_cli.core.config import ActorConfig
    from dagger_cli.core.engine.learner import Learner
    from dagger_cli.core.engine.replay_buffer import ReplayBuffer, flatten_obs
    from dagger_cli.policies.pi0 import Pi0Policy

    student = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, train_expert_only=True), "cpu")
    vlm = {k: v.clone() for k, v in student.model.paligemma_with_expert.paligemma.state_dict().items()}
    expert = {k: v.clone() for k, v in student.model.paligemma_with_expert.gemma_expert.state_dict().items()}
    obs = observation(batch=4)
    buffer = ReplayBuffer(16)
    buffer.add({**flatten_obs(obs), "expert_action": np.random.default_rng(0).normal(size=(4, 50, 7)).astype(np.float32)})
    learner = Learner(student, ActorConfig(global_batch_size=4, micro_batch_size=2), seed=0, default_total_steps=10)
    metrics = learner.train(buffer, 2)
    assert np.isfinite(metrics["train/dagger/actor_loss"])
    after = student.model.paligemma_with_expert
    assert all(torch.equal(v, after.paligemma.state_dict()[k]) for k, v in vlm.items())
    assert any(not torch.equal(v, after.gemma_expert.state_dict()[k]) for k, v in expert.items() if "lm_head" not in k)


def test_bfloat16_policy_keeps_openpi_fp32_parts(policy):
    from dagger_cli.policies.pi0.model import VARIANTS, Pi0Model

    model = Pi0Model(VARIANTS["tiny"]).to_bfloat16_except_fp32_parts()
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    pwe = "paligemma_with_expert."
    assert dtypes[pwe + "paligemma.model.vision_tower.embeddings.patch_embedding.weight"] == torch.float32
    assert dtypes[pwe + "paligemma.model.language_model.layers.0.input_layernorm.weight"] == torch.float32
    assert dtypes[pwe + "gemma_expert.model.norm.weight"] == torch.float32
    assert dtypes[pwe + "paligemma.model.language_model.layers.0.self_attn.q_proj.weight"] == torch.bfloat16
    assert dtypes[pwe + "paligemma.model.vision_tower.encoder.layers.0.layer_norm1.weight"] == torch.bfloat16
    assert dtypes["action_in_proj.weight"] == torch.float32
    x = policy.inputs(observation())
    out = model.sample_actions(**x, noise=torch.randn(2, 50, 32), num_steps=2)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# CHECKPOINTS
def test_save_load_round_trip(policy, tmp_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    policy.save(tmp_path / "saved")
    again = Pi0Policy(dataclasses.replace(policy.cfg, model_path=str(tmp_path / "saved")), "cpu")
    obs, noise = observation(), policy.sample_noise(2)
    assert np.array_equal(again.act(obs, noise=noise), policy.act(obs, noise=noise))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "paligemma_with_expert.paligemma.lm_head.weight" in keys  # openpi keeps this one of the tied pair
    assert "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight" not in keys
    assert any(".vision_tower.vision_model." in k for k in keys)


@pytest.mark.parametrize("layout", ["assets", "full_weights", "transformers_4_51", "transformers_5", "embed_only"])
def test_checkpoint_layouts_load_to_the_same_weights(policy, checkpoint_dir, tokenizer_path, tmp_path, layout):
    from safetensors.torch import load_file, save_file

    from dagger_cli.policies.pi0 import Pi0Policy

    state = load_file(str(checkpoint_dir / "model.safetensors"))
    folder = tmp_path / layout
    folder.mkdir()
    pwe = "paligemma_with_expert.paligemma."
    if layout == "assets":  # openpi: norm stats under assets/
        shutil.copy(checkpoint_dir / "model.safetensors", folder)
        write_norm_stats(folder / "assets")
        shutil.copy(checkpoint_dir / "physical-intelligence/libero/norm_stats.json",
                    folder / "assets/physical-intelligence/libero/norm_stats.json")
    else:
        shutil.copytree(checkpoint_dir / "physical-intelligence", folder / "physical-intelligence")
        if layout == "full_weights":  # RLinf FSDP checkpoints
            (folder / "model_state_dict").mkdir()
            torch.save(state, folder / "model_state_dict" / "full_weights.pt")
        else:
            if layout == "transformers_4_51":
                state = {k.replace(pwe + "model.language_model.", pwe + "language_model.model.")
                         .replace(pwe + "lm_head.", pwe + "language_model.lm_head.")
                         .replace(pwe + "model.vision_tower.", pwe + "vision_tower.")
                         .replace(pwe + "model.multi_modal_projector.", pwe + "multi_modal_projector."): v
                         for k, v in state.items()}
            elif layout == "transformers_5":
                state = {k.replace("vision_tower.vision_model.", "vision_tower."): v for k, v in state.items()}
            elif layout == "embed_only":
                state[pwe + "model.language_model.embed_tokens.weight"] = state.pop(pwe + "lm_head.weight")
                del state["paligemma_with_expert.gemma_expert.lm_head.weight"]
            save_file(state, str(folder / "model.safetensors"))
    loaded = Pi0Policy(dataclasses.replace(policy.cfg, model_path=str(folder)), "cpu")
    obs, noise = observation(), policy.sample_noise(2)
    assert np.array_equal(loaded.act(obs, noise=noise), policy.act(obs, noise=noise))


def test_full_size_layout_equals_openpi_on_the_meta_device():
    """openpi's PI0Pytorch state dict (transformers 4.53 names): 778 keys, 3.501 B parameters."""
    from dagger_cli.policies.pi0.checkpoint import openpi_name
    from dagger_cli.policies.pi0.model import VARIANTS, Pi0Model

    pg, ex, vt = "paligemma_with_expert.paligemma.", "paligemma_with_expert.gemma_expert.", "model.vision_tower.vision_model."
    expected = {
        pg + vt + "embeddings.patch_embedding.weight": (1152, 3, 14, 14),
        pg + vt + "embeddings.patch_embedding.bias": (1152,),
        pg + vt + "embeddings.position_embedding.weight": (256, 1152),
        pg + vt + "post_layernorm.weight": (1152,), pg + vt + "post_layernorm.bias": (1152,),
        pg + "model.multi_modal_projector.linear.weight": (2048, 1152),
        pg + "model.multi_modal_projector.linear.bias": (2048,),
        pg + "model.language_model.embed_tokens.weight": (257152, 2048),
        pg + "model.language_model.norm.weight": (2048,),
        pg + "lm_head.weight": (257152, 2048),
        ex + "model.norm.weight": (1024,),
        ex + "lm_head.weight": (257152, 1024),
        "action_in_proj.weight": (1024, 32), "action_in_proj.bias": (1024,),
        "action_out_proj.weight": (32, 1024), "action_out_proj.bias": (32,),
        "state_proj.weight": (1024, 32), "state_proj.bias": (1024,),
        "action_time_mlp_in.weight": (1024, 2048), "action_time_mlp_in.bias": (1024,),
        "action_time_mlp_out.weight": (1024, 1024), "action_time_mlp_out.bias": (1024,),
    }
    for i in range(27):
        p = pg + vt + f"encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            expected[p + n + ".weight"] = expected[p + n + ".bias"] = (1152,)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            expected[p + f"self_attn.{n}.weight"] = (1152, 1152)
            expected[p + f"self_attn.{n}.bias"] = (1152,)
        expected[p + "mlp.fc1.weight"], expected[p + "mlp.fc1.bias"] = (4304, 1152), (4304,)
        expected[p + "mlp.fc2.weight"], expected[p + "mlp.fc2.bias"] = (1152, 4304), (1152,)
    for prefix, width, mlp in ((pg + "model.language_model.", 2048, 16384), (ex + "model.", 1024, 4096)):
        for i in range(18):
            p = prefix + f"layers.{i}."
            expected[p + "self_attn.q_proj.weight"] = (2048, width)
            expected[p + "self_attn.k_proj.weight"] = expected[p + "self_attn.v_proj.weight"] = (256, width)
            expected[p + "self_attn.o_proj.weight"] = (width, 2048)
            expected[p + "mlp.gate_proj.weight"] = expected[p + "mlp.up_proj.weight"] = (mlp, width)
            expected[p + "mlp.down_proj.weight"] = (width, mlp)
            expected[p + "input_layernorm.weight"] = expected[p + "post_attention_layernorm.weight"] = (width,)
    assert len(expected) == 778

    with torch.device("meta"):
        model = Pi0Model(VARIANTS["full"])
    ours = {openpi_name(k): tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
    assert sum(p.numel() for p in model.parameters()) == 3_501_372_176


# TRANSFORMS AND TOKENIZER
def test_resize_with_pad_keeps_aspect_and_pads_black():
    from dagger_cli.policies.pi0.images import resize_with_pad, to_model_range

    wide = np.full((2, 240, 320, 3), 200, dtype=np.uint8)
    out = resize_with_pad(wide, 224, 224)
    assert out.shape == (2, 224, 224, 3)
    assert (out[:, :28] == 0).all() and (out[:, -28:] == 0).all() and (out[:, 28:196] == 200).all()
    square = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    assert resize_with_pad(square, 224, 224) is square
    assert to_model_range(np.array([0, 255], np.uint8)).tolist() == [-1.0, 1.0]


def test_libero_inputs_fill_slots_state_and_prompt(policy):
    obs = observation(size=224)
    x = policy.inputs(obs)
    assert x["images"].shape == (2, 2, 3, 224, 224)  # LIBERO has no right wrist camera: that slot is left out
    assert x["image_masks"].tolist() == [[True, True]] * 2
    expected = torch.as_tensor(obs["image"].astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
    assert torch.allclose(x["images"][:, 0], expected)
    norm = policy.transforms.norm
    z = (obs["state"][0] - norm.state_mean) / (norm.state_std + 1e-6)
    assert np.allclose(x["state"][0, :8].numpy(), z, atol=1e-5) and torch.all(x["state"][:, 8:] == 0)
    assert x["tokens"].shape == (2, 48) and x["token_masks"][0].sum() > 3


def test_actions_round_trip_and_delta_dims(policy):
    t = policy.transforms
    rng = np.random.default_rng(0)
    state, actions = rng.normal(size=(3, 8)), rng.normal(size=(3, 50, 7))
    model_actions = t.actions_to_model(actions, state)
    assert model_actions.shape == (3, 50, 32) and np.all(model_actions[..., 7:] == 0)
    assert np.allclose(t.actions_from_model(model_actions, state), actions, atol=1e-5)
    # the first six dims are relative to the state, the gripper (dim 6) is absolute
    shifted = state.copy()
    shifted[:, :7] += 1.0
    moved = t.actions_to_model(actions, shifted)
    assert not np.allclose(moved[..., :6], model_actions[..., :6]) and np.allclose(moved[..., 6], model_actions[..., 6])


def test_student_renormalises_env_unit_labels_with_its_own_stats(checkpoint_dir, tokenizer_path, tmp_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    other = tmp_path / "other"
    shutil.copytree(checkpoint_dir, other)
    write_norm_stats(other, scale=3.0)
    a = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir), "cpu")
    b = Pi0Policy(pi0_config(tokenizer_path, other), "cpu")
    state, labels = np.zeros((1, 8)), np.ones((1, 50, 7))
    za, zb = a.transforms.actions_to_model(labels, state), b.transforms.actions_to_model(labels, state)
    assert not np.allclose(za, zb)
    assert np.allclose(b.transforms.actions_from_model(zb, state), labels, atol=1e-5)


def test_tokenizer_format(tokenizer_path):
    import sentencepiece

    from dagger_cli.policies.pi0.tokenizer import PromptTokenizer

    sp = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer_path))
    tok = PromptTokenizer(tokenizer_path, max_len=48)
    ids, mask = tok.encode("  put_the bowl\non the stove ")
    expected = sp.encode("put the bowl on the stove", add_bos=True) + sp.encode("\n")
    assert ids[: len(expected)].tolist() == expected and mask.sum() == len(expected)
    assert ids[0] == sp.bos_id() and np.all(ids[len(expected):] == 0) and not mask[len(expected):].any()
    short = PromptTokenizer(tokenizer_path, max_len=4)
    ids, mask = short.encode(PROMPTS[0])
    assert len(ids) == 4 and mask.all()


# BAD INPUT
def test_bad_inputs_are_one_line_errors_naming_the_file(checkpoint_dir, tokenizer_path, tmp_path):
    from safetensors.torch import load_file, save_file

    from dagger_cli.policies.pi0 import Pi0Policy

    def build(model_path, **pi0):
        return Pi0Policy(pi0_config(tokenizer_path, model_path, **pi0), "cpu")

    def error(model_path, **pi0) -> str:
        with pytest.raises(CheckpointError) as e:
            build(model_path, **pi0)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "no such π₀ checkpoint" in error(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no weights file inside" in error(empty)

    def variant(name, mutate):
        folder = tmp_path / name
        shutil.copytree(checkpoint_dir, folder)
        state = load_file(str(folder / "model.safetensors"))
        mutate(state)
        save_file(state, str(folder / "model.safetensors"))
        return folder

    key = "action_in_proj.weight"
    wrong = variant("shape", lambda s: s.__setitem__(key, torch.zeros(5, 32)))
    assert f"{key} has shape (5, 32)" in error(wrong) and "(32, 32)" in error(wrong)
    assert "lack key 'action_out_proj.bias'" in error(variant("missing", lambda s: s.pop("action_out_proj.bias")))
    assert "unexpected key 'extra.weight'" in error(variant("extra", lambda s: s.__setitem__("extra.weight", torch.zeros(1))))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(checkpoint_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    assert "model.safetensors" in error(corrupt)

    no_stats = tmp_path / "no_stats"
    no_stats.mkdir()
    shutil.copy(checkpoint_dir / "model.safetensors", no_stats)
    assert build(no_stats).needs_norm_stats  # a student computes its stats from the first iteration's labels
    with pytest.raises(CheckpointError) as e:  # an expert must bring its own
        Pi0Policy(pi0_config(tokenizer_path, no_stats), "cpu", trainable=False)
    assert "norm_stats.json not found" in str(e.value) and "assets/physical-intelligence/libero" in str(e.value)
    missing_override = error(checkpoint_dir, norm_stats_path=str(tmp_path / "nowhere"))
    assert "norm_stats.json not found" in missing_override and "nowhere" in missing_override
    bad_stats = variant("bad_stats", lambda s: None)
    (bad_stats / "physical-intelligence/libero/norm_stats.json").write_text('{"norm_stats": {"state": {}}}')
    assert "norm_stats.json" in error(bad_stats) and "mean" in error(bad_stats)

    assert "tokenizer not found" in error(checkpoint_dir, tokenizer_path=str(tmp_path / "none.model"))
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"junk")
    assert "not a SentencePiece model" in error(checkpoint_dir, tokenizer_path=str(junk))


def test_wrong_observations_are_reported(policy):
    with pytest.raises(ValueError, match="'state', 'prompt'"):
        policy.act({"image": np.zeros((1, 8, 8, 3), np.uint8)})
    obs = observation()
    obs["state"] = np.zeros((2, 40), np.float32)
    with pytest.raises(ValueError, match="state stats have 8 dims, the env gives 40"):
        policy.act(obs)


def test_memory_estimate_for_check():
    from dagger_cli.policies.pi0.model import VARIANTS, memory_estimate_gib

    full, params = VARIANTS["full"], 3_501_372_176
    trained = params - 257152 * 1024  # the action expert's lm_head is never used and gets no gradient
    # an expert stored in bf16: openpi's bf16 checkpoint is ~6.5 GiB, and nothing trains
    weights, total = memory_estimate_gib(full, "bfloat16", train_expert_only=False, trainable=False)
    assert 6.0 < weights < 7.0 and total == weights
    # a bf16 student trains fp32 master weights: 4 B each, + 4 B gradient and 8 B of AdamW moments per trained one
    weights, total = memory_estimate_gib(full, "bfloat16", train_expert_only=False, trainable=True)
    assert weights == pytest.approx(params * 4 / 2**30) and total == pytest.approx((params * 4 + trained * 12) / 2**30)
    assert (weights, total) == memory_estimate_gib(full, "float32", train_expert_only=False, trainable=True)
    # train_expert_only: the frozen VLM is stored in bf16, only the expert and projections carry optimizer state
    _, expert_only = memory_estimate_gib(full, "bfloat16", train_expert_only=True, trainable=True)
    assert 6.5 < expert_only < memory_estimate_gib(full, "float32", True, True)[1] < total


def test_check_reports_pi0_memory_and_bad_tokenizer(checkpoint_dir, tokenizer_path, tmp_path):
    from conftest import HAVE_MANISKILL
    from test_cli import dagger

    if not HAVE_MANISKILL:
        pytest.skip("dagger check steps the preset's simulator")
    common = ["check", "pick-cube", "--json", "--set", "actor.model.model_type=pi0", "--set", "actor.model.action_dim=8",
              "--set", "actor.model.pi0.variant=tiny", "--set", f"actor.model.model_path={checkpoint_dir}"]
    # GIVEN a π₀ student whose norm stats match the env's 8-D actions
    write_norm_stats(tmp_path / "stats", action_dim=8)
    stats = ["--set", f"actor.model.pi0.norm_stats_path={tmp_path / 'stats/physical-intelligence/libero'}"]
    good = dagger(*common, *stats, "--set", f"actor.model.pi0.tokenizer_path={tokenizer_path}")
    student = {c["name"]: c for c in json.loads(good.stdout)["checks"]}["student"]
    assert student["ok"] and "tiny π₀ in float32: weights" in student["detail"] and "training (all)" in student["detail"]
    bad = dagger(*common, *stats, "--set", f"actor.model.pi0.tokenizer_path={tmp_path}/missing.model")
    assert bad.returncode == 3
    student = {c["name"]: c for c in json.loads(bad.stdout)["checks"]}["student"]
    assert not student["ok"] and "missing.model: PaliGemma tokenizer not found" in student["detail"]


def test_robotwin_inputs_use_three_cameras_and_delta_joints(tmp_path):
    from dagger_cli.policies.pi0.checkpoint import load_norm_stats
    from dagger_cli.policies.pi0.transforms import DATA_SPECS, Pi0Transforms

    write_norm_stats(tmp_path, asset="physical-intelligence/robotwin", state_dim=14, action_dim=14)
    t = Pi0Transforms(DATA_SPECS["robotwin"], load_norm_stats(tmp_path, "physical-intelligence/robotwin"), 14)
    rng = np.random.default_rng(0)
    cams = {k: rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
            for k in ("image", "left_wrist_image", "right_wrist_image")}
    images, masks = t.images({**cams, "state": np.zeros((2, 14))})
    assert images.shape == (2, 3, 3, 224, 224) and masks.all()
    assert np.all(images[:, 1, :, :28] == -1)  # 240x320 is padded top and bottom
    state, actions = rng.normal(size=(2, 14)), rng.normal(size=(2, 50, 14))
    base = t.actions_to_model(actions, np.zeros((2, 14)))
    moved = t.actions_to_model(actions, state)
    delta = ~np.isclose(base[..., :14], moved[..., :14]).all(axis=(0, 1))
    assert delta.tolist() == [True] * 6 + [False] + [True] * 6 + [False]  # grippers (6, 13) stay absolute
    assert np.allclose(t.actions_from_model(moved, state), actions, atol=1e-5)


# PRECISION
def test_bfloat16_training_keeps_fp32_master_weights_and_follows_the_fp32_update(checkpoint_dir, tokenizer_path):
    """At lr 1e-5 an Adam step is below half a bf16 ulp of a typical weight: bf16 parameters would not move."""
    from dagger_cli.core.config import ActorConfig, OptimConfig
    from dagger_cli.core.engine.learner import Learner
    from dagger_cli.core.engine.replay_buffer import ReplayBuffer, flatten_obs
    from dagger_cli.policies.pi0 import Pi0Policy

    # GIVEN the same tiny π₀ in float32 and in bfloat16 precision, and one buffer of LIBERO-shaped samples
    obs = observation(batch=8)
    labels = np.random.default_rng(0).normal(size=(8, 50, 7)).astype(np.float32)
    buffer = ReplayBuffer(8)
    buffer.add({**flatten_obs(obs), "expert_action": labels})
    cfg = ActorConfig(optim=OptimConfig(lr=1e-5, betas=[0.9, 0.95], weight_decay=1e-10, clip_grad=5.0),
                      global_batch_size=8, micro_batch_size=4)
    updates = {}
    for precision in ("float32", "bfloat16"):
        student = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, precision=precision), "cpu")
        before = {n: p.detach().clone() for n, p in student.model.named_parameters()}
        torch.manual_seed(0)  # the same flow-matching times and noise in both runs
        Learner(student, cfg, seed=0, default_total_steps=10).train(buffer, 3)
        # THEN the trained parameters and the optimizer state stay fp32
        assert all(p.dtype == torch.float32 for p in student.model.parameters())
        moved = [(p.detach() - before[n]).flatten() for n, p in student.model.named_parameters()]
        updates[precision] = torch.cat(moved)
    # AND most elements that the fp32 update moves move under bf16 autocast, by about as much
    fp32, bf16 = updates["float32"], updates["bfloat16"]
    moved = fp32 != 0
    assert moved.float().mean() > 0.5
    assert (bf16[moved] != 0).float().mean() > 0.99
    relative = (bf16 - fp32).norm() / fp32.norm()
    # measured: 100% moved, relative difference 0.044 (bf16 parameters, as before fp32 master weights: 81%, 0.48)
    assert relative < 0.1, relative
    cosine = torch.nn.functional.cosine_similarity(bf16, fp32, dim=0)
    assert cosine > 0.99, cosine


def test_bfloat16_expert_is_stored_in_bf16_and_student_runs_under_autocast(checkpoint_dir, tokenizer_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    cfg = pi0_config(tokenizer_path, checkpoint_dir, precision="bfloat16")
    expert = Pi0Policy(cfg, "cpu", trainable=False)
    q = "paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj.weight"
    assert dict(expert.model.named_parameters())[q].dtype == torch.bfloat16
    assert not any(p.requires_grad for p in expert.model.parameters())
    frozen_cfg = pi0_config(tokenizer_path, checkpoint_dir, precision="bfloat16", train_expert_only=True)
    frozen_vlm = Pi0Policy(frozen_cfg, "cpu")
    params = dict(frozen_vlm.model.named_parameters())
    assert params[q].dtype == torch.bfloat16  # not trained: stored as the expert's
    assert params[q.replace("paligemma.model.language_model", "gemma_expert.model")].dtype == torch.float32
    obs, noise = observation(), expert.sample_noise(2)
    fp32 = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, precision="float32"), "cpu").act(obs, noise=noise)
    for policy in (expert, frozen_vlm, Pi0Policy(cfg, "cpu")):
        actions = policy.act(obs, noise=noise)
        assert np.isfinite(actions).all() and not np.array_equal(actions, fp32)  # bf16 arithmetic did happen
        assert np.abs(actions - fp32).max() < 0.1 * np.abs(fp32).max()


# CAMERA SLOTS, STATE OBSERVATIONS, LABELS, NORM STATS
def test_a_slot_masked_in_every_sample_is_skipped_without_changing_the_result(policy, monkeypatch):
    model = policy.model
    x = policy.inputs(observation())
    # GIVEN the LIBERO inputs (2 slots) and the same with openpi's masked zero third slot
    three = dict(x, images=torch.cat([x["images"], -torch.ones_like(x["images"][:, :1])], dim=1),
                 image_masks=torch.cat([x["image_masks"], torch.zeros_like(x["image_masks"][:, :1])], dim=1))
    calls = []
    embed = model.embed_images
    monkeypatch.setattr(model, "embed_images", lambda images: calls.append(1) or embed(images))
    noise, time = policy.sample_noise(2), torch.full((2,), 0.5)
    actions = torch.randn(2, 50, 32)
    with torch.no_grad():
        results = [(model.sample_actions(**inputs, noise=noise, num_steps=3),
                    model.loss(**inputs, actions=actions, noise=noise, time=time)) for inputs in (x, three)]
    # THEN SigLIP ran for the two real cameras only (2 inputs x sample and loss x 2 cameras), and the outputs agree
    assert len(calls) == 8
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-6)


def test_state_observations_with_the_default_prompt_run_no_vision_tower(checkpoint_dir, tokenizer_path, monkeypatch):
    from dagger_cli.policies.pi0 import Pi0Policy

    stats = write_norm_stats(checkpoint_dir.parent / "state-stats", state_dim=6, action_dim=3).parent
    cfg = pi0_config(tokenizer_path, checkpoint_dir, data="state", default_prompt="put the bowl on the stove",
                     norm_stats_path=str(stats))
    policy = Pi0Policy(dataclasses.replace(cfg, action_dim=3, num_action_chunks=1), "cpu")
    monkeypatch.setattr(policy.model, "embed_images", lambda images: pytest.fail("no camera, no SigLIP"))
    state = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    x = policy.inputs(state)
    assert x["images"].shape[1] == 0 and x["image_masks"].shape == (4, 0)
    tokens, _ = policy.tokenizer.encode("put the bowl on the stove")
    assert (x["tokens"].numpy() == tokens).all()
    assert policy.act(state).shape == (4, 50, 3)
    # the same as an explicit prompt
    noise = policy.sample_noise(4)
    explicit = {"state": state, "prompt": np.array(["put the bowl on the stove"] * 4)}
    assert np.array_equal(policy.act(state, noise=noise), policy.act(explicit, noise=noise))
    no_default = Pi0Policy(dataclasses.replace(cfg, action_dim=3, num_action_chunks=1,
                                               pi0=dataclasses.replace(cfg.pi0, default_prompt=None)), "cpu")
    with pytest.raises(ValueError, match="default_prompt"):
        no_default.act(state)


def test_labels_shorter_than_the_horizon_extend_with_their_last_step(policy):
    # GIVEN a one-step label (a feedback expert labels the step it would take) and the same label held for 50 steps
    obs = observation()
    one_step = np.random.default_rng(0).normal(size=(2, 1, 7)).astype(np.float32)
    student = dataclasses.replace(policy.cfg, num_action_chunks=1)
    from dagger_cli.policies.pi0 import Pi0Policy

    short = Pi0Policy(student, "cpu")
    losses = []
    for labels in (one_step, np.repeat(one_step, 50, axis=1)):
        torch.manual_seed(3)
        losses.append(short.loss(obs, labels))
    # THEN both give the same loss; a label shorter than the executed chunk is refused
    assert torch.equal(losses[0], losses[1])
    with pytest.raises(ValueError, match="labels must be"):
        policy.loss(obs, one_step)  # this policy executes 10 steps


def test_a_student_without_norm_stats_fits_them_and_carries_them(checkpoint_dir, tokenizer_path, tmp_path):
    from dagger_cli.policies.pi0 import Pi0Policy
    from dagger_cli.policies.pi0.checkpoint import MIN_STD

    no_stats = tmp_path / "no_stats"
    no_stats.mkdir()
    shutil.copy(checkpoint_dir / "model.safetensors", no_stats)
    cfg = pi0_config(tokenizer_path, no_stats)
    # GIVEN a student whose checkpoint has no norm stats
    student = Pi0Policy(cfg, "cpu")
    assert student.needs_norm_stats and not any(k.startswith("norm_stats/") for k in student.state_dict())
    # WHEN it fits them on expert-labelled data (LIBERO: six delta dims and an absolute gripper)
    obs = observation(batch=16)
    rng = np.random.default_rng(1)
    labels = (obs["state"][:, None, :7] + rng.normal(3.0, 2.0, size=(16, 50, 7))).astype(np.float32)
    labels[..., 6] = 5.0  # a gripper that never moved
    student.fit_norm_stats(obs, labels)
    # THEN the data's z-scores have mean 0 and std 1 (the constant dim's std floored), and the stats travel
    assert not student.needs_norm_stats
    z = student.transforms.actions_to_model(labels, obs["state"])[..., :6].reshape(-1, 6)
    assert np.allclose(z.mean(0), 0, atol=1e-5) and np.allclose(z.std(0), 1, atol=1e-3)
    assert student.transforms.norm.actions_std[6] == MIN_STD
    assert np.allclose(student.transforms.norm.state_mean, obs["state"].mean(0))
    state = student.state_dict()
    fresh = Pi0Policy(cfg, "cpu")
    fresh.load_state_dict(state)
    noise = student.sample_noise(16)
    assert not fresh.needs_norm_stats and np.array_equal(fresh.act(obs, noise=noise), student.act(obs, noise=noise))
    # AND `save` writes a checkpoint directory that loads with them
    student.save(tmp_path / "saved")
    saved = Pi0Policy(dataclasses.replace(cfg, model_path=str(tmp_path / "saved")), "cpu")
    assert not saved.needs_norm_stats and np.allclose(saved.act(obs, noise=noise), student.act(obs, noise=noise))


def test_bundled_tokenizer_resolves_inside_the_package():
    from dagger_cli.policies.pi0.tokenizer import PromptTokenizer, resolve_tokenizer_path

    path = resolve_tokenizer_path("bundled:instructions.model")
    assert path.is_file() and path.parent.name == "assets"
    ids, mask = PromptTokenizer("bundled:instructions.model", 8).encode("pick up the cube")
    assert mask.sum() == 7 and 0 not in ids[1:5]  # BOS, four known words, then "\n"
    with pytest.raises(CheckpointError, match="tokenizer not found"):
        PromptTokenizer("bundled:nothing.model")


# TRAIN-TIME AUGMENTATION
def square_images(batch=4, size=64):
    """(B, 2, 3, size, size) in [-1, 1]: a grey square off-centre on black, in both slots."""
    images = -torch.ones(batch, 2, 3, size, size)
    images[..., 10:26, 30:46] = 0.6
    return images


def centre_of_mass(image):
    grey = image.mean(0)
    weight = (grey > grey.mean()).float()  # the square (colour jitter keeps it brighter than the background)
    rows, cols = torch.meshgrid(torch.arange(image.shape[-2]), torch.arange(image.shape[-1]), indexing="ij")
    return torch.stack([(weight * rows).sum(), (weight * cols).sum()]) / weight.sum()


def test_augmentation_moves_the_base_camera_only_and_jitters_colour_on_all():
    # GIVEN the same square in the base (slot 0) and the wrist (slot 1) camera
    images = square_images()
    moved, recoloured = [], []
    for seed in range(8):
        torch.manual_seed(seed)
        # WHEN the batch is augmented for training
        out = augment_for_training(images, [False, True])
        assert out.shape == images.shape and out.min() >= -1.0 and out.max() <= 1.0
        # THEN every image of a slot got the same draw (openpi draws once per slot and batch)
        assert torch.allclose(out[0], out[-1])
        base_shift = (centre_of_mass(out[0, 0]) - centre_of_mass(images[0, 0])).norm()
        wrist_shift = (centre_of_mass(out[0, 1]) - centre_of_mass(images[0, 1])).norm()
        assert wrist_shift < 1e-3  # the wrist camera is never cropped or rotated
        moved.append(base_shift.item())
        recoloured.append((out[0, 1] - images[0, 1]).abs().max().item())
    # AND the base camera is cropped/rotated (by up to 5% of the frame and ±5°), colours change on both
    assert max(moved) > 0.5 and max(moved) < 0.1 * 64
    assert min(recoloured) > 0.01


def test_augmentation_is_reproducible_from_the_global_generator():
    images = square_images()
    torch.manual_seed(3)
    a = augment_for_training(images, [False, True])
    torch.manual_seed(3)
    b = augment_for_training(images, [False, True])
    c = augment_for_training(images, [False, True])
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_augmentation_is_in_the_loss_only_and_on_by_default_for_camera_data(checkpoint_dir, tokenizer_path):
    from dagger_cli.policies.pi0 import Pi0Policy

    # GIVEN two students of one checkpoint on LIBERO's data: augmentation by default, and turned off by its key
    augmented = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir), "cpu")
    plain = Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, train_augmentation=False), "cpu")
    assert augmented.augment and not plain.augment
    obs = observation()
    noise = augmented.sample_noise(2)
    # THEN acting is the same (never augmented)
    labels = augmented.act(obs, noise=noise)
    assert np.array_equal(labels, plain.act(obs, noise=noise))
    # AND the loss, on the same draws of time and noise, sees different images
    torch.manual_seed(0)
    a = augmented.loss(obs, labels)
    torch.manual_seed(0)
    b = plain.loss(obs, labels)
    assert not torch.allclose(a, b)
    # AND an expert never augments; state data has nothing to augment; robotwin augments by default
    assert not Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir), "cpu", trainable=False).augment
    assert not Pi0Policy(pi0_config(tokenizer_path, checkpoint_dir, data="state"), "cpu").augment
    from dagger_cli.policies.pi0.transforms import DATA_SPECS

    assert DATA_SPECS["robotwin"].augment and DATA_SPECS["robotwin"].wrist_slots() == [False, True, True]


def test_check_warns_that_a_full_size_pi0_on_a_cpu_is_too_slow_and_says_what_a_step_costs():
    from dagger_cli.core.registry import CheckWarning
    from dagger_cli.policies.pi0 import cpu_matmul_flops, describe, pi0_flops
    from dagger_cli.policies.pi0.model import Pi0Model
    from dagger_cli.policies.pi0.sizes import VARIANTS

    # GIVEN libero-spatial's full-size π₀ student and expert (described from the size table: nothing is built)
    cfg = load_config("libero-spatial")
    student, expert = cfg.actor.model, cfg.rollout.expert_model
    assert student.pi0.variant == expert.pi0.variant == "full"
    # THEN on a CPU both lines are warnings naming the cost of a rollout chunk (and the student's learner step)
    line = describe(student, None, "cpu", True)
    assert isinstance(line, CheckWarning) and "too slow to use on this CPU" in line and "GPU" in line
    act, train = pi0_flops(student)
    speed = cpu_matmul_flops("float32")
    assert f"{act / 1e12:.1f} TFLOP per observation" in line and f"{train / 1e12:.1f} TFLOP forward + backward" in line
    assert "per env for a rollout chunk" in line and "per sample of a learner step" in line  # s or min: CPU speed
    assert f"measured {speed / 1e9:.1f} GFLOP/s" in line or "TFLOP/s" in line
    assert act / speed > 1 and train > 2 * act  # a full-size π₀ takes seconds per observation on any CPU
    labels = describe(expert, None, "cpu", False)
    assert isinstance(labels, CheckWarning) and "per env for a rollout chunk" in labels and "learner" not in labels
    # AND the FLOPs are the model's: 2 per weight per token, checked against the parameters on the meta device
    with torch.device("meta"):
        model = Pi0Model(VARIANTS["full"])
    pwe = model.paligemma_with_expert
    numel = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    prefix, suffix = 2 * 256 + 48, 1 + 50  # π₀'s prompt tokens (max_token_len null), the state token + horizon
    weights_only = 2 * (2 * 256 * numel(pwe.vision_tower) + prefix * numel(pwe.language_model.layers)
                        + student.pi0.num_steps * suffix * numel(pwe.expert_model.layers))
    assert weights_only < act < 1.1 * weights_only  # + attention over the 560-token prefix
    # AND on a GPU, or with the small and tiny variants on a CPU (pick-cube-pi0), the line passes
    assert not isinstance(describe(student, None, "cuda", True), CheckWarning)
    for variant in ("small", "tiny"):
        small = dataclasses.replace(student, pi0=dataclasses.replace(student.pi0, variant=variant))
        assert not isinstance(describe(small, None, "cpu", True), CheckWarning)
    pick_cube = load_config("pick-cube-pi0").actor.model
    assert not isinstance(describe(pick_cube, None, "cpu", True), CheckWarning)


def test_an_rlinf_runner_checkpoint_as_expert_finds_or_names_its_norm_stats(checkpoint_dir, tokenizer_path, tmp_path):
    import yaml
    from safetensors.torch import load_file

    from dagger_cli.policies.pi0 import Pi0Policy
    from dagger_cli.policies.pi0.checkpoint import find_norm_stats

    # GIVEN an RLinf run started from checkpoint_dir, its step saved as RLinf's FSDP runner saves one: weights only
    log_path = tmp_path / "results"
    step = log_path / "libero_spatial_dagger_openpi/checkpoints/global_step_40"
    (step / "actor/model_state_dict").mkdir(parents=True)
    torch.save(load_file(str(checkpoint_dir / "model.safetensors")), step / "actor/model_state_dict/full_weights.pt")
    asset = "physical-intelligence/libero"
    started_from = str(checkpoint_dir / asset / "norm_stats.json")

    def expert(model_path):
        return Pi0Policy(pi0_config(tokenizer_path, model_path), "cpu", trainable=False)

    def error(model_path) -> str:
        with pytest.raises(CheckpointError) as e:
            expert(model_path)
        assert "\n" not in str(e.value)
        return str(e.value)

    # WHEN no run config is found above it THEN the error names the key and the file to pass
    for path in (step, step / "actor"):
        message = error(path)
        assert "rollout.expert_model.pi0.norm_stats_path" in message and "RLinf runner checkpoint" in message
        assert f"<model_path the RLinf run started from>/{asset}/norm_stats.json" in message
        assert f"{step}/{asset}/norm_stats.json" in message  # where RLinf's own loader would look
    with pytest.raises(CheckpointError, match="RLinf runner checkpoint"):
        find_norm_stats(step / "actor/model_state_dict", asset, None, required=True)
    # WHEN the run's saved config (<log_path>/tensorboard/config.yaml) names a start checkpoint not on this machine
    config = log_path / "tensorboard/config.yaml"
    config.parent.mkdir()

    def save_config(model_path, experiment="libero_spatial_dagger_openpi"):
        logger = {"log_path": str(log_path), "experiment_name": experiment}
        model = {"model_path": str(model_path)}
        config.write_text(yaml.safe_dump({"runner": {"logger": logger}, "actor": {"model": model}}))

    save_config(tmp_path / "elsewhere")
    message = error(step / "actor")
    assert f"set rollout.expert_model.pi0.norm_stats_path to {tmp_path}/elsewhere/{asset}/norm_stats.json" in message
    assert str(config) in message
    # WHEN it names checkpoint_dir THEN the expert reads the norm stats its run read, from any of the three paths
    save_config(checkpoint_dir)
    assert expert(step / "actor").transforms.norm.source == started_from
    assert expert(step).transforms.norm.source == started_from
    assert expert(step / "actor/model_state_dict").transforms.norm.source == started_from
    # AND a config of another experiment is not this run's
    save_config(checkpoint_dir, experiment="another_experiment")
    assert "<model_path the RLinf run started from>" in error(step)
    # AND stats copied into the step directory (RLinf's deploy layout) are found there first
    write_norm_stats(step, scale=2.0)
    assert expert(step / "actor").transforms.norm.source == f"{step}/{asset}/norm_stats.json"
    # AND an explicit norm_stats_path still wins
    explicit = Pi0Policy(pi0_config(tokenizer_path, step, norm_stats_path=str(checkpoint_dir / asset)), "cpu",
                         trainable=False)
    assert explicit.transforms.norm.source == started_from


class SeededCameraEnv:
    """Two envs with LIBERO's observation keys whose images are a function of the reset seed and the step (so a
    resumed run sees what an uninterrupted one saw), never succeeding."""

    num_action_chunks, action_dim, obs_shape, num_envs = 10, 7, (8,), 2

    def _obs(self):
        return observation(batch=2, seed=int(self.seeds[0]) * 1000 + self.t, size=32)

    def reset(self, seeds, mask=None):
        self.seeds, self.t = list(seeds), 0
        return self._obs()

    def step(self, actions):
        self.t += 1
        return self._obs(), np.zeros((2, 10), bool)

    def close(self):
        pass


def camera_run_config(model_path, tokenizer_path, num_steps: int, max_epochs: int):
    """A short DAgger run of tiny π₀ student and expert (both from `model_path`) on SeededCameraEnv-like cameras."""
    sets = []
    for model in ("actor.model", "rollout.expert_model"):
        sets += [f"{model}.model_type=pi0", f"{model}.model_path={model_path}", f"{model}.pi0.variant=tiny",
                 f"{model}.pi0.tokenizer_path={tokenizer_path}", f"{model}.pi0.num_steps={num_steps}",
                 f"{model}.action_dim=7", f"{model}.num_action_chunks=10"]
    return load_config("pick-cube", overrides=sets + [
        "env.max_episode_steps=20", "env.max_steps_per_rollout_epoch=20", "env.eval.num_episodes=2",
        "algorithm.replay_buffer.min_buffer_size=2", "algorithm.replay_buffer.sample_window_size=16",
        "actor.update_epoch=2", "actor.global_batch_size=2", "actor.micro_batch_size=2",
        f"runner.max_epochs={max_epochs}", "runner.val_check_interval=100", "runner.eval_expert=false",
        "runner.eval_student_init=false", "runner.device=cpu"])


def test_resume_with_augmented_camera_training_is_exact(checkpoint_dir, tokenizer_path, tmp_path):
    """Augmentation draws from the RNG run checkpoints hold: a run stopped and resumed trains to the same bits."""
    from conftest import straight_and_resumed
    from dagger_cli.core.engine.runner import SyncRunner
    from dagger_cli.policies.pi0 import Pi0Policy

    cfg = camera_run_config(checkpoint_dir, tokenizer_path, num_steps=1, max_epochs=2)

    def runner(run_dir, hooks=None):
        torch.manual_seed(cfg.seed)
        student = Pi0Policy(cfg.actor.model, "cpu")
        assert student.augment  # LIBERO's data: on by default
        expert = Pi0Policy(cfg.rollout.expert_model, "cpu", trainable=False)
        return SyncRunner(cfg, run_dir, SeededCameraEnv(), student, expert, hooks=hooks, tensorboard=False)

    # GIVEN an uninterrupted 2-iteration run, and one stopped after iteration 1 and resumed in a new runner
    straight, resumed = straight_and_resumed(runner, tmp_path, 1)
    # THEN the students are bitwise equal
    a, b = straight.state.student.model.state_dict(), resumed.state.student.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_per_sample_losses_average_to_the_loss_and_loss_weights_pick_who_trains(checkpoint_dir, tokenizer_path):
    from dagger_cli.core.engine.learner import Learner
    from dagger_cli.core.engine.replay_buffer import flatten_obs
    from dagger_cli.policies.pi0 import Pi0Policy

    # GIVEN two copies of a tiny π₀ student (LIBERO's cameras, augmented), 4 labelled samples, one draw of the loss's
    # randomness, and an expert that acted on samples 0 and 2
    model = pi0_config(tokenizer_path, checkpoint_dir)
    actor = dataclasses.replace(load_config("pick-cube").actor, model=model, global_batch_size=4, micro_batch_size=2)
    weighted, plain = Pi0Policy(model, "cpu"), Pi0Policy(model, "cpu")
    assert weighted.augment
    obs = observation(batch=4, size=32)
    labels = weighted.act(obs, noise=weighted.sample_noise(4))
    torch.manual_seed(3)
    noise = weighted.loss_noise(4)
    # THEN the per-sample losses are one per sample, and their mean is the loss
    per_sample = weighted.per_sample_loss(obs, labels, noise=noise)
    assert per_sample.shape == (4,) and len(set(per_sample.tolist())) == 4
    assert torch.allclose(per_sample.mean(), weighted.loss(obs, labels, noise=noise))
    # WHEN one learner steps on all 4 with student-acted samples weighted 0, the other (unweighted) on samples 0, 2
    batch = {**flatten_obs(obs), "expert_action": labels, "expert_used": np.array([True, False, True, False])}
    expert_rows = np.array([0, 2])
    loss_w, _ = Learner(weighted, actor, 0, 10, (1.0, 0.0)).step(batch, 4, noise=noise)
    loss_p, _ = Learner(plain, actor, 0, 10).step({k: v[expert_rows] for k, v in batch.items()}, 2,
                                                  noise={k: v[expert_rows] for k, v in noise.items()})
    # THEN the two losses and updates are the same (float sums in another order)
    assert loss_w == pytest.approx(loss_p, rel=1e-5)
    a, b = weighted.model.state_dict(), plain.model.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    start = Pi0Policy(model, "cpu").model.state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-4
