"""The RoboTwin adapter against a fake runtime with the real VectorEnv contract (tests/fake_robotwin), and the
robotwin-adjust-bottle preset end to end with tiny π₀ models. Real RoboTwin needs an NVIDIA GPU with Vulkan."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from conftest import FAKE_ROBOTWIN, requires_pi0
from dagger_cli.core.config_loader import load_config
from dagger_cli.core.errors import ConfigError, EnvUnavailableError
from dagger_cli.core.config import EVAL_SEED_LIMIT

# RLinf's picks, produced by running RLinf's own rlinf/envs/robotwin/seed_utils.py partition_success_seeds (RLinf
# a3816b5, torch 2.13 CPU) on the adjust_bottle list of its seeds/{eval,train}_seeds.json, as its
# robotwin_adjust_bottle_dagger_openpi config calls it: base_seed 0 (env.seed), seed_offset 0..3 (4 env workers),
# total_num_processes 4, num_group 16; then concatenating each worker's first 16 seeds, worker 0 first.
# Evaluation (use_fixed_reset_state_ids) resets with these 64 forever; training's first reset uses these 64.
RLINF_EVAL_64 = [
    100100052, 100100066, 100100113, 100100088, 100100043, 100100081, 100100144, 100100098, 100100058, 100100130,
    100100156, 100100148, 100100091, 100100085, 100100013, 100100034, 100100173, 100100065, 100100076, 100100057,
    100100035, 100100070, 100100119, 100100174, 100100090, 100100118, 100100165, 100100045, 100100154, 100100108,
    100100093, 100100096, 100100050, 100100005, 100100122, 100100008, 100100092, 100100133, 100100157, 100100152,
    100100073, 100100074, 100100168, 100100051, 100100151, 100100046, 100100141, 100100137, 100100107, 100100150,
    100100017, 100100140, 100100103, 100100067, 100100121, 100100007, 100100041, 100100031, 100100075, 100100146,
    100100021, 100100111, 100100132, 100100089,
]
RLINF_TRAIN_FIRST_RESET = [
    57, 49, 852, 978, 1197, 259, 907, 634, 711, 335, 330, 1045, 951, 1173, 204, 916, 677, 1253, 417, 471, 181, 644,
    735, 909, 579, 10, 917, 1261, 1138, 190, 483, 631, 381, 558, 382, 237, 1102, 582, 400, 588, 572, 1108, 1026, 230,
    1060, 1249, 1198, 710, 584, 1221, 674, 619, 127, 130, 289, 1027, 918, 409, 108, 713, 1118, 808, 1222, 1244,
]
# sha256 of ",".join(seeds) of the adjust_bottle lists in RLinf a3816b5's seeds/{train,eval}_seeds.json
RLINF_LIST_SHA256 = {
    "train": "ea8ca6235c0296252f1a2c855353f301afdc75f61a940b69e883abe6821f2149",
    "eval": "c3d5fc06bd97bfceee011df65a3f83409f9bc2a4db198a0d3578386aa52ff232",
}


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
    assert idx == [1] and scene_seeds[1] == env.train_order[(2**21 + 9 - EVAL_SEED_LIMIT) % len(env.train_order)]
    assert np.array_equal(obs["state"][0], before.astype(np.float32))
    assert env._env.elapsed[1] == 0 and not env._env.success[1]


def test_evaluation_and_training_seeds_come_from_their_own_lists(env):
    # evaluation episodes (engine seeds below EVAL_SEED_LIMIT) take eval seeds, training resets train seeds
    assert {env.scene_seed(i) for i in range(200)} <= set(env.eval_seeds)
    assert {env.scene_seed(EVAL_SEED_LIMIT + k) for k in range(0, 2**22, 977)} <= set(env.train_seeds)
    assert len(env.train_seeds) == 1000 and len(env.eval_seeds) == 150
    assert set(env.train_seeds).isdisjoint(env.eval_seeds)


def test_bundled_seed_lists_are_rlinfs():
    from dagger_cli.envs.robotwin import load_seeds

    # GIVEN the bundled lists WHEN loaded for adjust_bottle
    train, evaluation = load_seeds(None, "train", "adjust_bottle"), load_seeds(None, "eval", "adjust_bottle")
    # THEN they are RLinf's: 1,000 distinct train seeds within 0..1262, 150 eval seeds within 100100000..100100177
    assert len(set(train)) == 1000 and (min(train), max(train)) == (0, 1262)
    assert len(set(evaluation)) == 150 and (min(evaluation), max(evaluation)) == (100100000, 100100177)
    for kind, seeds in (("train", train), ("eval", evaluation)):
        assert hashlib.sha256(",".join(map(str, seeds)).encode()).hexdigest() == RLINF_LIST_SHA256[kind]


def test_the_64_evaluation_episodes_are_rlinfs_pick(env):
    # GIVEN the bundled eval list WHEN evaluation episodes 0..63 map to scene seeds
    picked = [env.scene_seed(i) for i in range(64)]
    # THEN they are RLinf's 64 evaluation seeds in its order (worker 0's 16, then worker 1's, ...), all distinct
    assert picked == RLINF_EVAL_64
    assert len(set(picked)) == 64 and set(picked) <= set(env.eval_seeds)


def test_the_runtime_is_reset_with_rlinfs_evaluation_seeds(fake_runtime):
    from dagger_cli.core.engine.rollout import evaluate
    from dagger_cli.envs.robotwin import RoboTwinVecEnv

    class Still:
        action_shape = (50, 14)

        def act(self, obs):
            return np.zeros((len(obs["state"]), 50, 14), np.float32)

    # GIVEN the preset's evaluation (64 episodes from reset_seed_base 0) on 16 envs (4 rounds)
    cfg = robotwin_env_config(fake_runtime, num_envs=16, max_episode_steps=50)
    env = RoboTwinVecEnv(cfg, num_action_chunks=50)
    try:
        # WHEN the engine evaluates
        result = evaluate(env, Still(), cfg.eval.seeds, cfg.max_episode_steps)
        # THEN the runtime was reset, all 16 envs per round, with RLinf's 64 evaluation seeds in order
        calls = env._env.reset_calls[1:]
        assert [idx for idx, _ in calls] == [list(range(16))] * 4
        assert [seed for _, seeds in calls for seed in seeds] == RLINF_EVAL_64
        assert result.episodes.count == 64
    finally:
        env.close()


def test_evaluation_beyond_64_episodes_takes_each_workers_next_16_then_wraps(env):
    from dagger_cli.envs.robotwin import worker_slices

    slices = worker_slices(env.eval_seeds)
    # GIVEN RLinf's 4 worker slices of the 150 eval seeds: 37 each cut to 32
    assert [len(part) for part in slices] == [32] * 4
    assert [seed for part in slices for seed in part[:16]] == RLINF_EVAL_64
    # WHEN episodes 64..127 map to scene seeds THEN they are each worker's second 16, worker-major
    assert [env.scene_seed(i) for i in range(64, 128)] == [seed for part in slices for seed in part[16:32]]
    # AND 128 distinct seeds are used before episode 128 wraps to episode 0's
    assert len({env.scene_seed(i) for i in range(128)}) == 128
    assert [env.scene_seed(i) for i in range(128, 192)] == RLINF_EVAL_64


def test_training_resets_follow_rlinfs_training_slices(env):
    from dagger_cli.envs.robotwin import worker_slices

    slices = worker_slices(env.train_seeds)
    # GIVEN RLinf's 4 worker slices of the 1,000 train seeds: 250 each cut to 240
    assert [len(part) for part in slices] == [240] * 4
    # WHEN training reset seeds EVAL_SEED_LIMIT + k map to scene seeds
    scene = [env.scene_seed(EVAL_SEED_LIMIT + k) for k in range(2 * 960)]
    # THEN k = 0..63 is RLinf's first training reset, and position 64 r + 16 w + j is worker w's env j at its reset r
    assert scene[:64] == RLINF_TRAIN_FIRST_RESET
    for r in (0, 1, 7, 14, 15, 29):
        for w in range(4):
            assert scene[64 * r + 16 * w : 64 * r + 16 * w + 16] == [slices[w][(16 * r + j) % 240] for j in range(16)]
    # AND the 960 seeds of the slices come once per cycle, all from RLinf's list (RLinf's cut leaves 40 unused)
    assert len(set(scene[:960])) == 960 and set(scene[:960]) <= set(env.train_seeds) and scene[960:] == scene[:960]


def test_a_seeds_file_of_ones_own_goes_through_the_same_pick(fake_runtime):
    import torch

    from dagger_cli.envs.robotwin import RoboTwinVecEnv

    # GIVEN an eval seeds file of 200 seeds
    own = fake_runtime / "eval.json"
    mine = list(range(5000, 5400, 2))
    own.write_text(json.dumps({"adjust_bottle": {"task_name": "adjust_bottle", "success_seeds": mine}}))
    cfg = robotwin_env_config(fake_runtime)
    cfg = dataclasses.replace(cfg, robotwin=dataclasses.replace(cfg.robotwin, eval_seeds_path=str(own)))
    env = RoboTwinVecEnv(cfg, 50)
    try:
        # WHEN evaluation episodes 0..63 map to scene seeds
        picked = [env.scene_seed(i) for i in range(64)]
    finally:
        env.close()
    # THEN they are RLinf's pick of this list: shuffled by randperm(seed 0), 4 parts of 50, each part's first 16
    generator = torch.Generator()
    generator.manual_seed(0)
    shuffled = [mine[i] for i in torch.randperm(200, generator=generator).tolist()]
    assert picked == [seed for w in range(4) for seed in shuffled[50 * w : 50 * w + 16]]
    # AND a list too short for 4 workers of 16 envs is one line naming the key and the file
    own.write_text(json.dumps({"adjust_bottle": {"success_seeds": list(range(63))}}))
    with pytest.raises(ConfigError, match=r"^env.robotwin.eval_seeds_path: .*eval.json has 63 adjust_bottle seeds; "
                                          r"RLinf's pick \(4 env workers x 16 envs\) needs at least 64$"):
        RoboTwinVecEnv(cfg, 50)


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
