import numpy as np
import pytest

from conftest import INSTRUCTIONS, ConstantPolicy, FilmedPointEnv, PointEnv, PointExpert, PromptPointEnv, StateOf
from dagger_cli.core.errors import ConfigError
from dagger_cli.core.engine.rollout import Rollout, evaluate
from dagger_cli.core.io.video import read_frames


def collect(beta, mixing="env", only_save_expert=False, num_envs=4, steps=30, seed=0, terminate=True,
            only_success=False):
    env, student, expert = PointEnv(num_envs), ConstantPolicy(0.7), PointExpert()
    rollout = Rollout(env, student, expert, max_episode_steps=10, terminate_on_success=terminate,
                      mixing=mixing, only_save_expert=only_save_expert, only_success=only_success)
    return rollout.collect(steps, beta, iteration=2, seed=seed, policy_version=5), env, student, expert


def cat(result, key):
    return np.concatenate([t[key] for t in result.trajectories])


def test_beta_one_is_all_expert_and_beta_zero_all_student():
    # GIVEN beta = 1
    result, _, student, _ = collect(1.0)
    # THEN the student is never asked and every executed action is the expert's label
    assert result.expert_action_frac == 1.0 and student.calls == []
    assert np.array_equal(cat(result, "action"), cat(result, "expert_action"))
    # GIVEN beta = 0
    result, _, _, _ = collect(0.0)
    # THEN the student executes every step, and the expert still labels every state
    assert result.expert_action_frac == 0.0
    assert np.all(cat(result, "action") == 0.7)
    assert not np.all(cat(result, "expert_action") == 0.7)
    assert len(cat(result, "obs")) == 4 * 30


def test_every_visited_state_is_labelled_by_the_expert_in_the_same_step():
    # GIVEN a half-and-half mix
    result, _, _, _ = collect(0.5)
    obs, label = cat(result, "obs"), cat(result, "expert_action")
    # THEN each stored label is exactly what the expert says for the stored observation
    assert np.allclose(label, PointExpert().act(obs))
    used = cat(result, "expert_used")
    assert np.allclose(cat(result, "action")[~used], 0.7)
    assert np.allclose(cat(result, "action")[used], label[used])
    assert 0.3 < used.mean() < 0.7


def test_env_mixing_flips_a_coin_per_env_and_batch_mixing_one_per_step():
    env_mix, _, _, _ = collect(0.5, mixing="env", num_envs=8, steps=10, terminate=False)
    batch_mix, _, _, _ = collect(0.5, mixing="batch", num_envs=8, steps=10, terminate=False)

    def per_step(result):  # (steps, envs) matrix of expert_used, episodes never end early here
        return np.stack([t["expert_used"] for t in result.trajectories], axis=1)

    env_used, batch_used = per_step(env_mix), per_step(batch_mix)
    assert env_used.shape == batch_used.shape == (10, 8)
    assert all(row.all() or not row.any() for row in batch_used)  # all envs agree at each step
    assert any(0 < row.sum() < 8 for row in env_used)  # envs disagree somewhere


def test_only_save_expert_keeps_only_expert_steps():
    result, _, _, expert = collect(0.5, only_save_expert=True)
    assert np.all(cat(result, "expert_used"))
    labelled = sum(len(c) for c in expert.calls)
    assert labelled == len(cat(result, "obs"))  # the expert is asked only where it acts


def outcomes(result) -> dict[int, bool]:
    """Each stored episode's success, recomputed from its samples by PointEnv's physics: the point, moved by the
    executed action, within 0.05 of the goal at some step."""
    found = {}
    for t in result.trajectories:
        moved = t["obs"][:, 0] + np.float32(0.2) * np.clip(t["action"][:, 0, 0], -1, 1)
        found[int(t["episode_id"][0])] = bool((np.abs(moved - t["obs"][:, 1]) < 0.05).any())
    return found


@pytest.mark.parametrize("terminate", [True, False])
def test_only_success_keeps_exactly_the_episodes_that_succeeded(terminate):
    # GIVEN a half-expert rollout whose episodes succeed and fail, some cut short by the rollout's end (25 steps of
    # 10-step episodes), with and without ending episodes at their success
    everything, _, _, _ = collect(0.5, steps=25, terminate=terminate)
    # WHEN the same rollout keeps only the episodes that succeeded
    kept, _, _, _ = collect(0.5, steps=25, terminate=terminate, only_success=True)
    # THEN the episodes stored are exactly those that succeeded (by their outcome so far where cut short), with
    # all their samples, as stored without the filter; the failures are gone
    all_outcomes = outcomes(everything)
    assert set(all_outcomes.values()) == {True, False}
    assert sorted(outcomes(kept)) == sorted(e for e, ok in all_outcomes.items() if ok)
    assert all(outcomes(kept).values())
    by_episode = {int(t["episode_id"][0]): t for t in everything.trajectories}
    for t in kept.trajectories:
        assert all(np.array_equal(v, by_episode[int(t["episode_id"][0])][k]) for k, v in t.items())
    # AND an episode cut short counts by its outcome so far: with terminate_on_success it has not succeeded (it would
    # have ended), else one that succeeded before the cut is kept and those that had not are dropped
    assert everything.episodes.unfinished > 0
    assert everything.episodes.unfinished_success == (0 if terminate else 1)
    if not terminate:  # every env's third episode is cut after 5 of its 10 steps
        cut = {e: all_outcomes[e] for e, t in by_episode.items() if len(t["obs"]) == 5}
        assert len(cut) == 4 and {e for e, ok in cut.items() if ok} == set(cut) & set(outcomes(kept))
    # AND the rollout itself (episodes, env steps, who acted) is the same with the filter as without
    assert kept.episodes == everything.episodes and kept.expert_action_frac == everything.expert_action_frac


def test_metadata_and_episode_segments():
    result, env, _, _ = collect(1.0, num_envs=3, steps=30)
    for t in result.trajectories:
        assert len(set(t["episode_id"].tolist())) == 1  # one trajectory, one episode
        assert set(t["beta"].tolist()) == {1.0}
        assert set(t["iteration"].tolist()) == {2} and set(t["policy_version"].tolist()) == {5}
    ids = [t["episode_id"][0] for t in result.trajectories]
    assert len(ids) == len(set(ids))
    # the expert reaches the goal, the episode ends there and a fresh one starts (partial resets with new seeds)
    assert result.episodes.count >= 3 and result.episodes.rate("success_once") == 1.0
    assert any(not mask.all() for _, mask in env.resets[1:])
    assert result.env_steps == 3 * 30


def test_episodes_end_at_the_time_limit():
    result, _, _, _ = collect(0.0, num_envs=2, steps=30)  # the constant student rarely hits the goal
    assert all(length <= 10 for length in result.episodes.length)
    assert result.episodes.count >= 4


def test_same_seed_same_rollout_different_seed_different():
    a, _, _, _ = collect(0.5, seed=3)
    b, _, _, _ = collect(0.5, seed=3)
    c, _, _, _ = collect(0.5, seed=4)
    for key in ("obs", "expert_used", "action", "episode_id"):
        assert np.array_equal(cat(a, key), cat(b, key))
    assert not np.array_equal(cat(a, "obs"), cat(c, "obs"))


def test_evaluate_uses_the_policy_alone_on_fixed_seeds_for_full_episodes():
    env = PointEnv(4)
    result = evaluate(env, PointExpert(), seeds=range(100, 106), max_episode_steps=12)
    assert result.episodes.count == 6
    assert result.episodes.length == [12] * 6
    assert env.resets[0][0] == [100, 101, 102, 103]
    assert env.resets[1][0][:2] == [104, 105]
    summary = result.summary()
    assert summary["success_once"] == 1.0 and summary["success_at_end"] == 1.0
    low, high = summary["success_once_ci95"]
    assert 0.5 < low < 1.0 and high == 1.0
    wrong = evaluate(PointEnv(4), ConstantPolicy(-1.0), range(100, 106), 12).summary()
    assert wrong["success_once"] < 1.0


class GroupedPointEnv(FilmedPointEnv):
    """FilmedPointEnv whose reset seeds fall into 5 groups (seed % 5), like LIBERO's tasks."""

    def episode_group(self, seed: int) -> int:
        return seed % 5


def test_evaluation_runs_each_envs_episodes_group_by_group_and_reports_them_in_seed_order(tmp_path):
    # GIVEN 20 interleaved seeds of 5 groups on 2 envs, with the first 3 episodes filmed
    seeds, policy = list(range(20)), ConstantPolicy(0.3)
    grouped_env = GroupedPointEnv(2)
    grouped = evaluate(grouped_env, policy, seeds, 6, record=3)
    plain = evaluate(FilmedPointEnv(2), policy, seeds, 6, record=3)
    # THEN each env changes group at most 3 times (20 in the given order), every seed runs once
    per_env = [[s[i] % 5 for s, _ in grouped_env.resets] for i in range(2)]
    assert all(sum(a != b for a, b in zip(g, g[1:])) <= 3 for g in per_env)
    assert sorted(s for r, _ in grouped_env.resets for s in r) == seeds
    # AND the results, tasks and videos are those of the given order, episode by episode
    assert grouped.episodes.success_once == plain.episodes.success_once
    assert grouped.tasks == plain.tasks and grouped.summary()["tasks"] == plain.summary()["tasks"]
    assert [v.seed for v in grouped.videos] == [0, 1, 2] == [v.seed for v in plain.videos]
    for a, b in zip(grouped.videos, plain.videos):  # the same frames (an mp4's header dates its encoding)
        (tmp_path / "a.mp4").write_bytes(a.mp4)
        (tmp_path / "b.mp4").write_bytes(b.mp4)
        frames_a, frames_b = read_frames(tmp_path / "a.mp4"), read_frames(tmp_path / "b.mp4")
        # lossy H.264 may round a few levels differently from one encoding to the next on a loaded machine (seen
        # once in a full suite); another episode's frames differ by far more (the white point moves ≥ 3 pixels)
        assert frames_a.shape == frames_b.shape
        assert np.abs(frames_a.astype(int) - frames_b.astype(int)).max() <= 24


class SteeringPointEnv(PointEnv):
    """PointEnv that moves each training seed into its env's residue mod 2 (as LIBERO's task affinity moves it into
    the env's share of the tasks)."""

    def training_seeds(self, seeds):
        return [s - s % 2 + i % 2 for i, s in enumerate(seeds)]


def test_training_resets_run_the_seeds_the_env_steers_them_to_and_evaluation_is_not_steered():
    # GIVEN an env that steers training seeds, collecting episodes that end at the time limit
    env = SteeringPointEnv(2)
    Rollout(env, ConstantPolicy(0.7), PointExpert(), max_episode_steps=5).collect(30, 0.0, iteration=0, seed=1)
    # THEN every training reset (the first and those after an episode ends) ran env i's steered seed
    resets = [(seeds[i], i) for seeds, mask in env.resets for i in np.flatnonzero(mask)]
    assert len(resets) >= 12 and all(seed % 2 == i for seed, i in resets)
    # AND evaluation runs its fixed seeds as given
    env.resets.clear()
    evaluate(env, PointExpert(), seeds=[100, 100], max_episode_steps=5)
    assert env.resets[0][0] == [100, 100]


@pytest.mark.parametrize("successes, trials", [(0, 10), (5, 10), (10, 10), (95, 100)])
def test_wilson_interval_contains_the_estimate(successes, trials):
    from dagger_cli.core.engine.stats import wilson_interval

    low, high = wilson_interval(successes, trials)
    assert 0 <= low <= successes / trials <= high <= 1
    assert wilson_interval(95, 100) == pytest.approx((0.8882, 0.9785), abs=1e-3)


def test_prompts_that_grow_after_the_first_step_are_stored_whole():
    # GIVEN an env whose episodes carry instructions of different lengths
    env, expert = PromptPointEnv(3), StateOf(PointExpert())
    student = StateOf(ConstantPolicy(0.7))
    rollout = Rollout(env, student, expert, max_episode_steps=5)
    # WHEN a rollout runs through several episodes per env, the first step's prompts all shorter than a later one
    result = rollout.collect(40, 0.5, iteration=0, seed=8)  # seed 8: the first episodes draw short instructions
    first_step = [t["obs/prompt"][0] for t in result.trajectories if t["episode_id"][0] < 3]  # episodes 0, 1, 2
    assert len(first_step) == 3
    assert max(map(len, first_step)) < len(INSTRUCTIONS[-1])
    # THEN every stored prompt is one of the env's instructions, in full, the longest included
    prompts = cat(result, "obs/prompt").tolist()
    assert set(prompts) <= set(INSTRUCTIONS) and INSTRUCTIONS[-1] in prompts and INSTRUCTIONS[0] in prompts
    assert set(prompts) == expert.prompts  # what the expert labelled is what was stored


def test_policies_whose_actions_do_not_fit_the_env_are_refused():
    env = PointEnv(2)
    env.num_action_chunks = 3

    class OneStep(ConstantPolicy):
        pass

    # an expert that labels fewer steps than the env executes per call
    with pytest.raises(ConfigError, match="executes 3 actions per step but the expert predicts only 1"):
        Rollout(env, ConstantPolicy(0.0), OneStep(0.0), max_episode_steps=6)
    # an act() whose output does not have the shape the policy declares (numpy would broadcast it)
    wrong = ConstantPolicy(0.0)
    wrong.act = lambda obs: np.zeros((len(obs), 1), np.float32)
    rollout = Rollout(PointEnv(2), ConstantPolicy(0.0), PointExpert(), max_episode_steps=6)
    rollout.student = wrong
    with pytest.raises(ValueError, match=r"student returned actions of shape \(2, 1\), expected \(2, 1, 1\)"):
        rollout.collect(4, 0.0, iteration=0, seed=0)


class PrivilegedPointEnv(PromptPointEnv):
    """PromptPointEnv whose observations also carry the goal-directed action, computed "in the simulator" and
    readable only by an expert that says so (as LIBERO's scripted expert's label is)."""

    privileged_keys = ("expert_chunk",)

    def _obs(self, state):
        label = np.clip((state[:, 1] - state[:, 0]) / 0.2, -1, 1)[:, None, None].astype(np.float32)
        return {**super()._obs(state), "expert_chunk": label}


class Seeing:
    """A policy that records the observation keys it is shown: the privileged reader returns the label it reads."""

    action_shape = (1, 1)

    def __init__(self, reads_privileged):
        self.reads_privileged, self.keys = reads_privileged, set()

    def act(self, obs):
        self.keys.update(obs)
        if self.reads_privileged:
            return obs["expert_chunk"]
        return np.zeros((len(obs["state"]), 1, 1), np.float32)


def test_privileged_observations_reach_only_the_expert_that_reads_them():
    # GIVEN an env with a privileged key, a scripted expert that reads it and a student
    env, student, expert = PrivilegedPointEnv(3), Seeing(False), Seeing(True)
    rollout = Rollout(env, student, expert, max_episode_steps=10, terminate_on_success=True)
    # WHEN DAgger collects with a half-and-half mix
    result = rollout.collect(30, 0.5, iteration=0, seed=0)
    # THEN the expert read the label, the student never saw it, and the buffer does not store it
    assert "expert_chunk" in expert.keys and student.keys == {"state", "prompt"}
    stored = set(result.trajectories[0])
    assert "obs/expert_chunk" not in stored and {"obs/state", "obs/prompt"} <= stored
    # AND the labels are the privileged ones, which reach the goal
    assert np.allclose(cat(result, "expert_action")[:, 0, 0],
                       np.clip((cat(result, "obs/state")[:, 1] - cat(result, "obs/state")[:, 0]) / 0.2, -1, 1))
    # AND evaluation hands the key to the expert only
    seen_by_student, seen_by_expert = Seeing(False), Seeing(True)
    evaluate(env, seen_by_student, [0, 1, 2], 10)
    assert evaluate(env, seen_by_expert, [0, 1, 2], 20).summary()["success_once"] == 1.0
    assert seen_by_student.keys == {"state", "prompt"} and "expert_chunk" in seen_by_expert.keys
