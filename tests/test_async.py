"""The async pipeline on a local Ray instance (2 CPUs) with the point env, plus `dagger train pick-cube --async`."""

import json

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from async_doubles import build_crashing, build_point, point_config  # noqa: E402
from conftest import StatsFittingMLP, StopAfter  # noqa: E402
from dagger_cli.core.io import checkpoint# noqa: E402
from dagger_cli.core.cluster.async_runner import AsyncRunner, RolloutWorkerGroup  # noqa: E402
from dagger_cli.core.errors import DaggerError  # noqa: E402
from dagger_cli.core.engine.run_checkpoint import RunCheckpoint  # noqa: E402
from dagger_cli.policies.mlp import MLPPolicy  # noqa: E402

pytestmark = pytest.mark.usefixtures("shared_ray")  # conftest.py's local Ray, shared with test_distributed_learner.py


def async_config(**overrides):
    sets = {"env.num_envs": 2, "cluster.num_rollout_workers": 2, "cluster.rollout_worker_cpus": 0.5,
            "algorithm.dagger.max_policy_lag": 1, "runner.max_epochs": 6, "runner.val_check_interval": 1, **overrides}
    return point_config(**sets)


@pytest.fixture
def make_runner():
    groups = []

    def make(run_dir, cfg, build=build_point, hooks=None, student=MLPPolicy):
        groups.append(RolloutWorkerGroup(cfg, build).start())
        torch.manual_seed(cfg.seed)
        return AsyncRunner(cfg, run_dir, student(cfg.actor.model), groups[-1], hooks=hooks, tensorboard=False)

    yield make
    for group in groups:
        group.shutdown()


@pytest.mark.parametrize("lag", [0, 1])
def test_new_weights_reach_the_workers_within_the_staleness_bound(tmp_path, make_runner, lag):
    # GIVEN two workers, with data allowed to trail the learner by `lag` versions
    cfg = async_config(**{"algorithm.dagger.max_policy_lag": lag})
    runner = make_runner(tmp_path, cfg)
    # WHEN the async run trains for 6 iterations
    summary = runner.run()
    # THEN later collections used newer weights, and a worker never ran more than `lag` collections ahead
    stored = runner.state.buffer.stored()
    versions, index = stored["policy_version"], stored["iteration"]
    assert summary["iterations"] == 6 and versions.max() >= 1  # published weights reached the workers
    order = np.argsort(index, kind="stable")
    assert np.all(np.diff(versions[order]) >= 0)  # a later collection never uses older weights
    assert np.all(versions >= (index + 1) / 2 - 1 - lag)  # collection i: each worker started <= version + lag + 1
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(7))
    for row in rows[1:]:
        assert {"train/async/policy_lag", "train/async/queue_size", "time/rollout_env_steps_per_s",
                "time/learner_updates_per_s", "train/dagger/actor_loss", "eval/success_once"} <= set(row)
    assert rows[1]["train/dagger/beta"] == 1.0 and rows[2]["train/dagger/beta"] == 0.5  # beta per learner iteration
    # AND the learner never trained on data more than `lag` versions old
    lags = [r["train/async/policy_lag_max"] for r in rows[1:] if r["train/async/policy_lag_max"] is not None]
    assert lags and max(lags) <= lag
    if lag == 0:  # as in sync mode: iteration k trained on every worker's collection with weights k - 1
        assert [r["time/env_steps"] for r in rows[1:]] == [k * 2 * 40 for k in range(1, 7)]
    assert summary["student_final_sr"] == rows[-1]["eval/success_once"] and summary["expert_sr"] == 1.0
    assert rows[0]["eval_expert/success_once"] == 1.0 and "eval/success_once" in rows[0]


def test_a_crashed_worker_is_named_and_the_checkpoint_kept(tmp_path, make_runner):
    # GIVEN a worker whose env crashes in its third collection (no evaluation steps its env before)
    cfg = async_config(**{"runner.max_epochs": 50, "runner.val_check_interval": 0, "runner.eval_student_init": False,
                          "runner.eval_expert": False})
    runner = make_runner(tmp_path, cfg, build=build_crashing)
    with pytest.raises(DaggerError) as e:
        runner.run()
    message = str(e.value)
    assert "rollout worker 1 failed while " in message and "simulated simulator crash" in message
    assert "\n" not in message
    # AND the checkpoint made before the crash (a third collection waits for the first learner iteration) is whole,
    # and is the one the message names
    saved = checkpoint.list_checkpoints(tmp_path / "checkpoints")
    assert saved, "the crash came after the first learner iteration, whose checkpoint must exist"
    loaded = RunCheckpoint.read(saved[-1])
    assert loaded.state["iteration"] >= 1 and f"last checkpoint: iteration {loaded.state['iteration']}" in message


def test_async_runs_resume(tmp_path, make_runner):
    # GIVEN an async run asked to stop after iteration 2 (the learner may have gone on while evaluations came in)
    cfg = async_config(**{"runner.max_epochs": 8})
    hooks = StopAfter(2)
    first = make_runner(tmp_path, cfg, hooks=hooks)
    hooks.runner = first
    first.run()
    stopped = first.state.progress.iteration
    assert 2 <= stopped < 8 and json.loads((tmp_path / "summary.json").read_text())["status"] == "stopped"
    # WHEN it is resumed from its last checkpoint
    resumed = make_runner(tmp_path, cfg)
    resumed.state.restore(checkpoint.list_checkpoints(tmp_path / "checkpoints")[-1])
    assert resumed.state.progress.iteration == stopped and resumed.state.beta(stopped) == 0.5**stopped
    summary = resumed.run()
    # THEN it continues there, with every row once and the evaluations of before the stop kept
    assert summary["iterations"] == 8
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(9))
    assert all("eval/success_once" in r for r in rows)
    assert [e["iteration"] for e in resumed.state.evaluation.evals] == list(range(1, 9))
    assert resumed.state.buffer.total_samples > first.state.buffer.total_samples


def test_a_gated_async_run_counts_the_queries_its_workers_made(tmp_path, make_runner):
    # GIVEN two workers whose 3-head MLP students let the expert label at most 10 student-acted states a collection
    cfg = async_config(**{"actor.model.ensemble_heads": 3, "algorithm.dagger.query": "gated",
                          "algorithm.dagger.query_budget": 10, "algorithm.dagger.max_policy_lag": 0})
    runner = make_runner(tmp_path, cfg)
    # WHEN it runs
    summary = runner.run()
    # THEN every stored sample is one the expert was asked about, and the summary counts them all
    stored = runner.state.buffer.stored()
    assert summary["expert_queries"] == runner.state.buffer.total_samples == len(stored["expert_used"])
    # AND each collection labelled its expert-acted states and at most 10 others
    student_labelled = np.bincount(stored["iteration"][~stored["expert_used"]])
    assert student_labelled.max() <= 10 and student_labelled.sum() > 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][1:]
    assert sum(r["train/dagger/expert_queries"] for r in rows) <= summary["expert_queries"]
    assert all(0 < r["train/dagger/query_rate"] <= 1 for r in rows[1:])


@pytest.mark.parametrize("iterations", [1, 2])
def test_norm_stats_are_fitted_on_the_whole_of_the_first_iterations(tmp_path, make_runner, iterations):
    # GIVEN a student without norm stats, fitted on `iterations` first iterations, and two workers, each collecting
    # 40 samples a collection, and allowed to collect again before the first learner iteration (max_policy_lag 1)
    cfg = async_config(**{"runner.max_epochs": 2, "runner.val_check_interval": 0, "runner.eval_student_init": False,
                          "runner.eval_expert": False, "actor.norm_stats_iterations": iterations})
    # WHEN an async run trains
    runner = make_runner(tmp_path, cfg, student=StatsFittingMLP)
    runner.run()
    student = runner.state.student
    # THEN the stats were fitted once, on every sample of those iterations' collections, two each (not on
    # whichever arrived first), in collection order, as sync mode fits them on its first iterations
    stored = runner.state.buffer.stored()
    rows = np.flatnonzero(stored["iteration"] < 2 * iterations)
    rows = rows[np.argsort(stored["iteration"][rows], kind="stable")]
    assert len(student.fitted) == 1
    obs, labels, weights = student.fitted[0]
    assert len(obs) == iterations * cfg.env.num_envs * cfg.env.max_steps_per_rollout_epoch == iterations * 80
    assert np.array_equal(obs, stored["obs"][rows]) and np.array_equal(labels, stored["expert_action"][rows])
    # AND before the learner trained on anything
    assert all(torch.equal(weights[k], student.initial[k]) for k in weights)
    assert not all(torch.equal(v, student.initial[k]) for k, v in student.module.state_dict().items())


def test_default_worker_gpu_shares_pack_and_an_unpackable_ask_is_one_line_before_any_worker_waits():
    from dagger_cli.core.cluster.async_runner import rollout_worker_gpus, workers_that_fit
    from dagger_cli.core.errors import ConfigError

    # GIVEN 3 workers on 2 GPUs: an even split (0.667 each) leaves one worker that no GPU can hold
    cfg = async_config(**{"cluster.num_rollout_workers": 3, "env.num_envs": 3, "runner.device": "auto"})
    # THEN the default share is 1/k of a GPU, which packs; whole GPUs while there are enough
    assert rollout_worker_gpus(cfg, 2.0) == 0.5
    assert workers_that_fit([{"CPU": 16.0, "GPU": 2.0}], 1.0, 0.5) >= 3
    assert workers_that_fit([{"CPU": 16.0, "GPU": 2.0}], 1.0, 2 / 3) == 2
    assert rollout_worker_gpus(async_config(**{"runner.device": "auto"}), 2.0) == 1.0
    assert rollout_worker_gpus(async_config(**{"runner.device": "auto", "cluster.num_rollout_workers": 4,
                                                "env.num_envs": 4}), 1.0) == 0.25
    assert rollout_worker_gpus(async_config(), 2.0) == 0.0  # a CPU run
    # WHEN the user asks for the fraction that does not pack, on a Ray with 2 (advertised) GPUs
    group = RolloutWorkerGroup(async_config(**{"cluster.num_rollout_workers": 3, "env.num_envs": 3,
                                               "cluster.rollout_worker_gpus": 0.667}), build_point)
    # THEN the start is one line naming the keys, before any worker is made (wait_ready would never return)
    try:
        with pytest.raises(ConfigError) as e:
            group.start()
    finally:
        group.shutdown()
    assert str(e.value).startswith("cluster.num_rollout_workers=3: the Ray cluster places 2 workers")
    assert "cluster.rollout_worker_gpus=0.667" in str(e.value) and "\n" not in str(e.value)
    assert not group.actors
