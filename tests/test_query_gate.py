"""Gated expert queries (`algorithm.dagger.query: gated`): the gate's rule, a gated rollout's labels and counts, the
students' uncertainty scores (an MLP's ensemble heads, π₀'s chunk spread from one prefix), the metrics and summary,
exact resume, and the config's one-line errors."""

import json

import numpy as np
import pytest
import torch

from conftest import PointEnv, PointExpert, point_config, straight_and_resumed
from dagger_cli.core.engine.query_gate import QueryGate
from dagger_cli.core.engine.rollout import Rollout
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.core.errors import ConfigError
from dagger_cli.policies.mlp import MLPPolicy


class ScoredPolicy:
    """Acts 0 and scores its uncertainty as the distance of the point from 0 (the far ones are 'novel')."""

    action_shape = (1, 1)

    def act(self, obs):
        return np.zeros((len(obs), 1, 1), dtype=np.float32)

    def act_with_uncertainty(self, obs):
        return self.act(obs), np.abs(np.asarray(obs)[:, 0])


def test_the_threshold_labels_only_the_scores_above_it():
    # GIVEN a gate with a threshold and no budget
    gate = QueryGate(threshold=0.5)
    # WHEN it sees a step's scores
    picks = gate.choose(np.array([0.1, 0.6, 0.5, 2.0]), student_steps_to_come=100)
    # THEN it labels exactly the rows above the threshold
    assert picks.tolist() == [False, True, False, True]


def test_the_budget_is_never_exceeded_and_goes_to_the_most_uncertain_states():
    # GIVEN a budget of 60 labels over a collection of 50 steps of 8 student-acted rows with random scores
    rng = np.random.default_rng(0)
    scores = rng.exponential(size=(50, 8))
    gate = QueryGate(budget=60)
    # WHEN the gate sees them step by step
    picks = np.stack([gate.choose(s, student_steps_to_come=(50 - k) * 8) for k, s in enumerate(scores)])
    # THEN it spends at most the budget, most of it, and on states more uncertain than the rest
    assert 45 <= picks.sum() <= 60 and gate.spent == picks.sum()
    assert scores[picks].mean() > 2 * scores[~picks].mean()
    # AND a new collection starts afresh
    gate.start()
    assert gate.spent == 0 and gate.choose(np.array([5.0]), 1).tolist() == [True]


def test_a_gated_rollout_labels_expert_steps_and_the_uncertain_student_steps_only():
    # GIVEN a student that scores the far-from-0 points uncertain, acting alone (beta 0), with a threshold
    env, expert = PointEnv(4), PointExpert()
    rollout = Rollout(env, ScoredPolicy(), expert, max_episode_steps=10, gate=QueryGate(threshold=0.5))
    # WHEN it collects
    result = rollout.collect(40, beta=0.0, iteration=0, seed=0)
    samples = {k: np.concatenate([t[k] for t in result.trajectories]) for k in result.trajectories[0]}
    # THEN the expert was asked only about the uncertain states, each once, and those are exactly what is stored
    asked = np.concatenate(expert.calls)
    assert result.expert_queries == len(asked) == len(samples["obs"]) and 0 < len(asked) < 4 * 40
    assert np.all(np.abs(asked[:, 0]) > 0.5) and np.array_equal(np.sort(asked, 0), np.sort(samples["obs"], 0))
    # AND each label is the expert's action for its state
    assert np.allclose(samples["expert_action"], expert.act(samples["obs"]))
    assert result.query_metrics(1)["train/dagger/query_rate"] == result.expert_queries / (4 * 40)


def test_always_asks_the_expert_about_every_visited_state():
    env, expert = PointEnv(4), PointExpert()
    result = Rollout(env, ScoredPolicy(), expert, max_episode_steps=10).collect(40, beta=0.3, iteration=0, seed=0)
    assert result.expert_queries == 4 * 40 == sum(len(c) for c in expert.calls)


def test_mlp_ensemble_heads_disagree_more_off_the_data_than_on_it():
    # GIVEN an MLP student with 5 heads, trained on states with positions in [-0.5, 0.5]
    cfg = point_config(**{"actor.model.ensemble_heads": 5}).actor.model
    torch.manual_seed(0)
    student = MLPPolicy(cfg)
    optimizer = torch.optim.Adam(student.module.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    on = np.stack([rng.uniform(-0.5, 0.5, 256), rng.uniform(-0.5, 0.5, 256)], 1).astype(np.float32)
    labels = PointExpert().act(on)
    for _ in range(300):
        optimizer.zero_grad()
        student.loss(on, labels).backward()
        optimizer.step()
    # WHEN it scores states like its data and states far from it
    off = on * 4
    actions, on_scores = student.act_with_uncertainty(on)
    _, off_scores = student.act_with_uncertainty(off)
    # THEN it acts with its first head, and the far states score higher
    assert np.array_equal(actions, student.act(on))
    assert np.median(off_scores) > 5 * np.median(on_scores)


def test_a_single_head_mlp_offers_no_score_and_a_gated_rollout_says_so():
    student = MLPPolicy(point_config().actor.model)
    assert not hasattr(student, "act_with_uncertainty")
    with pytest.raises(ConfigError, match="ensemble_heads"):
        Rollout(PointEnv(2), student, PointExpert(), 10, gate=QueryGate(threshold=0.1))


def gated_config(**overrides):
    return point_config(**{"actor.model.ensemble_heads": 3, "algorithm.dagger.query": "gated",
                           "algorithm.dagger.query_budget": 25, "algorithm.dagger.init_beta": 0.5, **overrides})


def make_runner(run_dir, hooks=None, cfg=None):
    cfg = cfg or gated_config()
    torch.manual_seed(cfg.seed)
    return SyncRunner(cfg, run_dir, PointEnv(3), MLPPolicy(cfg.actor.model), PointExpert(), hooks=hooks,
                      tensorboard=False)


def test_a_gated_run_counts_its_queries_and_resumes_exactly(tmp_path):
    # GIVEN a gated run straight through, and one stopped after iteration 2 and resumed
    straight, resumed = straight_and_resumed(make_runner, tmp_path, 2)
    # THEN the queries are counted per iteration, cumulatively and in the summary, within the budget per iteration
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()][1:]
    queries = [r["train/dagger/expert_queries"] for r in rows]
    assert [r["train/dagger/expert_queries_total"] for r in rows] == np.cumsum(queries).tolist()
    expert_steps = [round(r["train/dagger/expert_action_frac"] * 120) for r in rows]
    assert all(e <= q <= e + 25 for q, e in zip(queries, expert_steps)) and sum(queries) < 4 * 120
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["expert_queries"] == sum(queries) == straight.state.progress.expert_queries
    # AND the resumed run's weights, buffer and metrics are the uninterrupted run's
    a, b = straight.state.student.state_dict(), resumed.state.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()][1:]
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/") and k != "eval/seconds"}  # noqa: E731
    assert [strip(r) for r in rows] == [strip(r) for r in rows_b]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["expert_queries"] == sum(queries)


@pytest.mark.parametrize("sets, key", [
    ({"algorithm.dagger.query": "gated"}, "algorithm.dagger.query"),
    ({"algorithm.dagger.query": "gated", "algorithm.dagger.query_budget": 5, "algorithm.dagger.only_save_expert": True},
     "algorithm.dagger.query"),
    ({"algorithm.dagger.query_budget": -1}, "algorithm.dagger.query_budget"),
    ({"algorithm.dagger.query": "sometimes"}, "algorithm.dagger.query"),
    ({"actor.model.ensemble_heads": 0}, "actor.model.ensemble_heads"),
])
def test_bad_query_settings_are_one_line_errors_naming_the_key(sets, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        point_config(**sets)
