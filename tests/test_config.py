from pathlib import Path

import pytest

from dagger_cli.core.config import Config, all_keys
from dagger_cli.core.config_loader import config_from_dict, load_config, parse_override, preset_names
from dagger_cli.core.errors import ConfigError, UsageError


def test_every_bundled_preset_loads():
    # GIVEN the presets shipped in the package
    names = preset_names()
    # THEN pick-cube is among them and each one validates
    assert "pick-cube" in names
    for name in names:
        assert isinstance(load_config(name), Config)


def test_pick_cube_keeps_rlinf_key_names():
    cfg = load_config("pick-cube")
    assert cfg.algorithm.dagger.init_beta == 1.0
    assert cfg.algorithm.dagger.only_save_expert is False
    assert cfg.env.control_mode == "pd_joint_delta_pos"
    assert cfg.actor.model.obs_dim == 42 and cfg.actor.model.action_dim == 8
    for key in ["algorithm.dagger.beta_decay", "algorithm.replay_buffer.min_buffer_size", "runner.val_check_interval",
                "runner.expert_ckpt_path", "runner.ckpt_path", "actor.optim.lr", "runner.save_interval"]:
        assert key in all_keys(cfg)


@pytest.mark.parametrize("preset", ["libero-spatial", "libero-object", "libero-goal", "libero-10", "robotwin-adjust-bottle"])
def test_pi0_presets_carry_rlinf_experience_per_iteration_and_its_replay_window(preset):
    """RLinf runs 64 envs and keeps one buffer per actor rank (4 ranks of 16 envs): 16 trajectories before training
    and 2,000 in the window, per rank, each trajectory one env's chunk-steps of an iteration. Ours is one buffer."""
    cfg = load_config(preset)
    ranks, min_trajectories, window_trajectories = 4, 16, 2000
    chunk_steps = cfg.env.max_steps_per_rollout_epoch // cfg.actor.model.num_action_chunks
    assert cfg.env.num_envs == 64 and cfg.env.num_envs // ranks == min_trajectories
    assert cfg.algorithm.replay_buffer.min_buffer_size == ranks * min_trajectories * chunk_steps
    assert cfg.algorithm.replay_buffer.sample_window_size == ranks * window_trajectories * chunk_steps
    # AND the window is the last 125 iterations of all envs, as the union of RLinf's per-rank windows is
    assert cfg.algorithm.replay_buffer.sample_window_size // (cfg.env.num_envs * chunk_steps) == 125


def test_unknown_key_names_the_key_and_suggests():
    # GIVEN a typo in a nested key
    with pytest.raises(ConfigError) as e:
        config_from_dict({"algorithm": {"dagger": {"beta_decy": 0.9}}})
    # THEN the error names the dotted key and the closest real one
    assert "algorithm.dagger.beta_decy" in str(e.value)
    assert "algorithm.dagger.beta_decay" in str(e.value)


def test_unknown_set_override_suggests():
    with pytest.raises(ConfigError, match="did you mean 'runner.max_epochs'"):
        load_config("pick-cube", overrides=["runner.max_epoch=3"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("algorithm.dagger.init_beta=1.5", "algorithm.dagger.init_beta"),
        ("algorithm.dagger.beta_min=-0.1", "algorithm.dagger.beta_min"),
        ("algorithm.dagger.beta_decay=0", "algorithm.dagger.beta_decay"),
        ("algorithm.replay_buffer.sample_window_size=-5", "algorithm.replay_buffer.sample_window_size"),
        ("algorithm.replay_buffer.min_buffer_size=-1", "algorithm.replay_buffer.min_buffer_size"),
        ("env.num_envs=0", "env.num_envs"),
        ("actor.micro_batch_size=300", "actor.global_batch_size"),
        ("runner.max_epochs=two", "runner.max_epochs"),
        ("runner.max_epochs=2.5", "runner.max_epochs"),
        ("algorithm.dagger.only_save_expert=maybe", "algorithm.dagger.only_save_expert"),
        ("algorithm.dagger.mixing=envs", "algorithm.dagger.mixing"),
        ("actor.optim.betas=[0.9]", "actor.optim.betas"),
        ("runner.save_interval=0", "runner.save_interval"),
        ("rollout.expert_model.model_type=mlp", "runner.expert_ckpt_path"),
        ("actor.model.model_type=scripted", "actor.model.model_type"),
        ("actor.ema_decay=1.0", "actor.ema_decay"),
    ],
)
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config("pick-cube", overrides=[override])
    assert key in str(e.value)
    assert "\n" not in str(e.value)


def test_beta_min_above_init_beta_is_rejected():
    with pytest.raises(ConfigError, match="algorithm.dagger.beta_min"):
        load_config("pick-cube", overrides=["algorithm.dagger.init_beta=0.3", "algorithm.dagger.beta_min=0.5"])


def test_typo_in_choice_suggests():
    with pytest.raises(ConfigError, match="did you mean 'exponential'"):
        load_config("pick-cube", overrides=["algorithm.dagger.beta_schedule=exponental"])


def test_overrides_parse_yaml_scalars():
    assert parse_override("a.b=0.5") == (["a", "b"], 0.5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=x=y") == (["a"], "x=y")
    with pytest.raises(UsageError):
        parse_override("no-equals-sign")


def test_precedence_preset_then_file_then_set(tmp_path: Path):
    # GIVEN an overlay file and a --set for the same key
    overlay = tmp_path / "o.yaml"
    overlay.write_text("runner:\n  max_epochs: 11\n  val_check_interval: 3\n")
    # WHEN both are applied
    cfg = load_config("pick-cube", overlay, ["runner.max_epochs=12"])
    # THEN --set wins over the file, the file over the preset, and untouched keys keep the preset's values
    assert cfg.runner.max_epochs == 12
    assert cfg.runner.val_check_interval == 3
    assert cfg.actor.update_epoch == load_config("pick-cube").actor.update_epoch


def test_bad_yaml_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runner:\n  max_epochs: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_config("pick-cube", bad)
    assert str(bad) in str(e.value) and "line" in str(e.value)


def test_missing_file_and_unknown_preset():
    with pytest.raises(ConfigError, match="no such file"):
        load_config("pick-cube", Path("/nonexistent/x.yaml"))
    with pytest.raises(UsageError, match="did you mean 'pick-cube'"):
        load_config("pick-cub")


def test_resolved_config_round_trips_through_yaml():
    import yaml

    cfg = load_config("pick-cube", overrides=["seed=7", "algorithm.dagger.beta_decay=0.8"])
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
