"""The RoboTwin adapter against a fake runtime with the real VectorEnv contract (tests/fake_robotwin), and the
robotwin-adjust-bottle preset end to end with tiny π₀ models. Real RoboTwin needs an NVIDIA GPU with Vulkan."""

import dataclasses
import json

import numpy as np
import pytest

from conftest import FAKE_ROBOTWIN, requires_pi0
from dagger_cli.core.config import load_config
from dagger_cli.core.errors import ConfigError, EnvUnavailableError


@pytest.fixture
def fake_runtime(monkeypatch, tmp_path):
    """ROBOTWIN_PATH at the fake runtime, assets at an empty folder, no RoboTwin variables left over."""
    for key in ("ROBOTWIN_ASSETS_ROOT", "ASSETS_PATH", "ROBOT_PLATFORM"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ROBOTWIN_PATH", str(FAKE_ROBOTWIN))
    monkeypatch.syspath_prepend(str(FAKE_ROBOTWIN))
    (tmp_path / "assets").mkdir()
    return tmp_path


def robotwin_env_config(assets, **changes):
    cfg = load_config("robotwin-adjust-bottle", overrides=[f"env.assets_path={assets}", "env.num_envs=2"])
    return dataclasses.replace(cfg.env, **changes)


@pytest.fixture
def env(fake_runtime):
    from dagger_cli.envs.robotwin import RoboTwinVecEnv

    env = RoboTwinVecEnv(robotwin_env_config(fake_runtime), num_action_chunks=50)
    yield env
    env.close()


def solve(env, seeds):
    from robotwin.envs.vector_env import raise_bottle_action

    return np.stack([raise_bottle_action(env.scene_seed(s), 50) for s in seeds]).astype(np.float32)


def test_environment_comes_from_the_one_assets_path(env, fake_runtime):
    import os

    # GIVEN env.assets_path; THEN both variables the runtime reads point at it, and ROBOT_PLATFORM is RLinf's
    assert os.environ["ROBOTWIN_ASSETS_ROOT"] == os.environ["ASSETS_PATH"] == str(fake_runtime.resolve())
    assert os.environ["ROBOT_PLATFORM"] == "ALOHA"
    config = env._env.task_config
    assert config["task_name"] == "adjust_bottle" and config["planner_backend"] == "mplib"
    assert config["embodiment"] == ["aloha-agilex"] and config["step_lim"] == 200
    # the rest is the runtime's own demo_clean task config (no domain randomisation), not recording data
    assert config["save_path"] == "./data" and config["domain_randomization"]["random_background"] is False
    assert config["collect_data"] is False


def test_observations_fill_pi0s_three_camera_slots(env):
    # WHEN two envs are reset
    obs = env.reset([3, 4])
    # THEN the head and both wrist cameras, the 14-D state and the instruction are there, batched
    for slot in ("image", "left_wrist_image", "right_wrist_image"):
        assert obs[slot].shape == (2, 240, 320, 3) and obs[slot].dtype == np.uint8
    assert not np.array_equal(obs["left_wrist_image"], obs["right_wrist_image"])
    assert obs["state"].shape == (2, 14) and obs["state"].dtype == np.float32
    assert obs["prompt"].shape == (2,) and "bottle" in obs["prompt"][0]
    assert env.action_dim == 14 and env.obs_shape == (14,)


def test_a_chunk_of_fourteen_d_actions_is_one_runtime_step_and_success_is_reported(env):
    seeds = [7, 8]
    env.reset(seeds)
    # GIVEN env 0 gets the solving chunk and env 1 a chunk that holds still
    actions = solve(env, seeds)
    actions[1] = env.reset(seeds)["state"][1]
    obs, success = env.step(actions)
    # THEN the runtime saw one [2, 50, 14] step; success comes on the chunk's last step, for env 0 only
    assert env._env.actions_seen == [(2, 50, 14)]
    assert success.shape == (2, 50) and success[:, -1].tolist() == [True, False] and not success[:, :-1].any()
    # AND a finished episode stays finished (later chunks do nothing), so success_once holds to the end
    _, again = env.step(np.zeros((2, 50, 14), np.float32))
    assert again[0, -1] and not again[1, -1]


def test_the_engine_resets_finished_envs_alone(env):
    # GIVEN a running batch
    env.reset([5, 6])
    env.step(solve(env, [5, 6]))
    before = env._env.state[0].copy()
    # WHEN only env 1 finishes and is reset with a new seed (the engine's auto-reset)
    obs = env.reset([0, 2**21 + 9], np.array([False, True]))
    # THEN env 0 keeps its state, env 1 starts its new training scene
    idx, scene_seeds = env._env.reset_calls[-1]
    assert idx == [1] and scene_seeds[1] == env.train_seeds[(2**21 + 9) % len(env.train_seeds)]
    assert np.array_equal(obs["state"][0], before.astype(np.float32))
    assert env._env.elapsed[1] == 0 and not env._env.success[1]


def test_evaluation_and_training_seeds_come_from_their_own_lists(env):
    # evaluation episode i (engine seed i) takes eval seed i; training resets draw from the train list
    assert [env.scene_seed(i) for i in range(3)] == env.eval_seeds[:3]
    assert env.scene_seed(len(env.eval_seeds)) == env.eval_seeds[0]
    assert env.scene_seed(2**20 + 5) == env.train_seeds[(2**20 + 5) % len(env.train_seeds)]
    assert len(env.train_seeds) == 1000 and len(env.eval_seeds) == 150
    assert set(env.train_seeds).isdisjoint(env.eval_seeds)


def test_bad_seeds_files_name_the_key(fake_runtime):
    from dagger_cli.envs.robotwin import RoboTwinVecEnv

    bad = fake_runtime / "seeds.json"
    bad.write_text(json.dumps({"click_bell": {"success_seeds": [1, 2]}}))
    cfg = robotwin_env_config(fake_runtime)
    cfg = dataclasses.replace(cfg, robotwin=dataclasses.replace(cfg.robotwin, eval_seeds_path=str(bad)))
    with pytest.raises(ConfigError, match=r"env.robotwin.eval_seeds_path: .*seeds.json has no adjust_bottle"):
        RoboTwinVecEnv(cfg, 50)
    cfg = dataclasses.replace(cfg, robotwin=dataclasses.replace(cfg.robotwin, eval_seeds_path=str(bad) + ".missing"))
    with pytest.raises(ConfigError, match="does not exist"):
        RoboTwinVecEnv(cfg, 50)


def test_missing_runtime_and_assets_are_one_line_errors(fake_runtime, monkeypatch, tmp_path):
    from dagger_cli.envs.robotwin import RoboTwinVecEnv

    with pytest.raises(ConfigError, match="env.assets_path"):
        RoboTwinVecEnv(robotwin_env_config(fake_runtime, assets_path=None), 50)
    monkeypatch.setenv("ROBOTWIN_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(EnvUnavailableError, match="ROBOTWIN_PATH=.*nowhere has no robotwin/envs/vector_env.py"):
        RoboTwinVecEnv(robotwin_env_config(fake_runtime), 50)


@requires_pi0
def test_one_training_iteration_and_eval_with_tiny_pi0(robotwin_checkpoint_dir, tokenizer_path, tmp_path):
    """The whole path on the fake runtime: dagger train robotwin-adjust-bottle (1 iteration), then dagger eval."""
    from test_cli import dagger

    (tmp_path / "assets").mkdir()
    run = tmp_path / "run"
    tiny = []
    for model in ("actor.model", "rollout.expert_model"):
        tiny += ["--set", f"{model}.model_path={robotwin_checkpoint_dir}", "--set", f"{model}.pi0.variant=tiny",
                 "--set", f"{model}.pi0.tokenizer_path={tokenizer_path}", "--set", f"{model}.pi0.num_steps=2"]
    small = ["--set", f"env.assets_path={tmp_path}", "--set", "env.num_envs=2", "--set", "env.eval.num_episodes=2",
             "--set", "runner.max_epochs=1", "--set", "algorithm.replay_buffer.min_buffer_size=4",
             "--set", "actor.global_batch_size=4", "--set", "actor.micro_batch_size=2"]
    runtime = {"ROBOTWIN_PATH": str(FAKE_ROBOTWIN)}
    result = dagger("train", "robotwin-adjust-bottle", "--run-dir", str(run), "--json", *tiny, *small, env=runtime)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # 2 envs x 200 steps = 4 chunks of 50 each, all labelled by the expert (beta 1)
    assert summary["iterations"] == 1 and summary["env_steps"] == 2 * 200
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["train/replay_buffer/total_samples"] == 2 * 4
    assert rows[1]["train/dagger/expert_action_frac"] == 1.0 and np.isfinite(rows[1]["train/dagger/actor_loss"])
    assert summary["eval_episodes"] == 2 and 0.0 <= summary["student_final_sr"] <= 1.0
    evaluated = dagger("eval", "--ckpt", str(run), "--json", env=runtime)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["success_once"] == summary["student_final_sr"]
