import pickle

import numpy as np
import pytest
import torch

from dagger_cli.core.config_loader import load_config
from dagger_cli.core.errors import CheckpointError
from dagger_cli.policies.mlp import MLPPolicy
from dagger_cli.policies.weights import load_into

RLINF_KEYS = {
    "backbone.0.weight": (256, 42), "backbone.0.bias": (256,),
    "backbone.2.weight": (256, 256), "backbone.2.bias": (256,),
    "backbone.4.weight": (256, 256), "backbone.4.bias": (256,),
    "actor_mean.weight": (8, 256), "actor_mean.bias": (8,),
    "actor_logstd": (1, 8),
}


def rlinf_state(with_value_head: bool) -> dict:
    torch.manual_seed(1)
    state = {k: torch.randn(*shape) for k, shape in RLINF_KEYS.items()}
    if with_value_head:
        for i, shape in [(0, (256, 42)), (2, (256, 256)), (4, (256, 256))]:
            state[f"value_head.mlp.{i}.weight"] = torch.randn(*shape)
            state[f"value_head.mlp.{i}.bias"] = torch.randn(shape[0])
        state["value_head.mlp.6.weight"] = torch.randn(1, 256)
    return state


@pytest.fixture
def policy():
    return MLPPolicy(load_config("pick-cube").actor.model)


def test_state_dict_matches_rlinf_layout(policy):
    assert {k: tuple(v.shape) for k, v in policy.module.state_dict().items()} == RLINF_KEYS
    assert torch.all(policy.module.actor_logstd == -0.5)
    assert torch.all(policy.module.backbone[0].bias == 0)


def test_act_returns_the_mean_as_chunks(policy):
    obs = np.random.default_rng(0).normal(size=(5, 42)).astype(np.float32)
    actions = policy.act(obs)
    assert actions.shape == (5, 1, 8)
    expected = policy.module(torch.as_tensor(obs)).detach().numpy()
    assert np.allclose(actions[:, 0], expected)
    assert np.array_equal(policy.act(obs), actions)  # deterministic


def test_rlinf_full_weights_with_value_head_load(policy, tmp_path):
    # GIVEN an RLinf PPO checkpoint laid out as checkpoints/global_step_N/actor/model_state_dict/full_weights.pt
    folder = tmp_path / "global_step_10" / "actor" / "model_state_dict"
    folder.mkdir(parents=True)
    state = rlinf_state(with_value_head=True)
    torch.save(state, folder / "full_weights.pt")
    # WHEN the checkpoint dir is loaded
    load_into(policy.module, tmp_path / "global_step_10", "expert")
    # THEN the actor weights are those of the file and the value head is ignored
    for key in RLINF_KEYS:
        assert torch.equal(policy.module.state_dict()[key], state[key])


def test_safetensors_round_trip(policy, tmp_path):
    from safetensors.torch import save_file

    save_file(policy.module.state_dict(), str(tmp_path / "student.safetensors"))
    other = MLPPolicy(load_config("pick-cube").actor.model)
    load_into(other.module, tmp_path / "student.safetensors", "student")
    for key, value in policy.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[key], value)


def test_shape_mismatch_names_key_and_shapes(policy, tmp_path):
    state = rlinf_state(False)
    state["backbone.0.weight"] = torch.randn(256, 40)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as e:
        load_into(policy.module, tmp_path / "w.pt", "student")
    assert "backbone.0.weight" in str(e.value) and "(256, 40)" in str(e.value) and "(256, 42)" in str(e.value)


def test_missing_and_extra_keys_are_named(policy, tmp_path):
    state = rlinf_state(False)
    del state["actor_mean.bias"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="actor_mean.bias"):
        load_into(policy.module, tmp_path / "w.pt", "student")
    state = rlinf_state(False)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="extra.weight"):
        load_into(policy.module, tmp_path / "x.pt", "student")


def test_corrupt_and_missing_files(policy, tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_into(policy.module, tmp_path / "bad.safetensors", "student")
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_into(policy.module, tmp_path / "bad.pt", "student")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_into(policy.module, tmp_path / "nope.pt", "student")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no weights file"):
        load_into(policy.module, tmp_path / "empty", "student")


class Payload:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_arbitrary_pickles_are_never_unpickled(policy, tmp_path, capsys):
    # GIVEN a .pt file carrying an object whose unpickling would run code
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"backbone.0.weight": Payload()}, f)
    # THEN loading refuses it and the code never runs
    with pytest.raises(CheckpointError, match="weights-only"):
        load_into(policy.module, tmp_path / "evil.pt", "expert")
    assert "unpickled arbitrary code" not in capsys.readouterr().out


def test_expert_from_a_checkpoint_acts_with_its_weights(policy, tmp_path):
    # GIVEN student-format weights saved by an earlier run, configured as the expert
    from safetensors.torch import save_file

    from dagger_cli import assembly

    save_file(policy.module.state_dict(), str(tmp_path / "expert.safetensors"))
    cfg = load_config("pick-cube", overrides=["rollout.expert_model.model_type=mlp",
                                              f"runner.expert_ckpt_path={tmp_path / 'expert.safetensors'}"])
    # WHEN the expert is built
    expert = assembly.expert(cfg, "cpu")
    # THEN it labels states exactly as the saved policy does
    obs = np.random.default_rng(3).normal(size=(4, 42)).astype(np.float32)
    assert np.array_equal(expert.act(obs), policy.act(obs))
