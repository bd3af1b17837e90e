"""Asynchronous DAgger on Ray: rollout workers collect while the learner, in this process, trains.

- Rollout workers are Ray actors, each with its share of the envs, a student and the expert; beta mixing and
  relabelling are `Rollout.collect`, exactly as in sync mode.
- Each collection uses the newest published weights (version = learner iterations) and beta(version), so beta falls
  per unit of training as in sync mode. Workers pick up new weights between collections.
- Staleness bound, both ways: a worker starts collection c only while c < learner iterations + `max_policy_lag`,
  and the learner starts iteration k only once (k + 1 - `max_policy_lag`) collections per worker have arrived, so
  neither side runs more than the bound ahead of the other. `train/async/policy_lag` is the age, in learner
  iterations, of the data trained on.
- Evaluation runs on rollout worker 0 with the weights just published (synced), student only.
- A crashed worker ends the run with one line naming it; the last checkpoint stays as it was.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dagger_cli.core.config import Config
from dagger_cli.core.errors import ConfigError, DaggerError
from dagger_cli.core.metrics import MetricsLogger
from dagger_cli.core.protocols import TrainablePolicy
from dagger_cli.core.rollout import Rollout, evaluate
from dagger_cli.core.runner import RunnerHooks, SyncRunner, single_threaded_torch


class RolloutWorker:
    """Runs in a Ray actor: env + student + expert, collecting labelled trajectories on request."""

    def __init__(self, cfg: Config, worker_id: int, build: Callable):
        self.cfg, self.worker_id = cfg, worker_id
        self.env, self.student, self.expert = build(cfg, worker_id)
        d = cfg.algorithm.dagger
        self.rollout = Rollout(
            self.env, self.student, self.expert, cfg.env.max_episode_steps, cfg.env.terminate_on_success,
            d.mixing, d.only_save_expert,
        )
        self.version: int | None = None

    def ping(self) -> int:
        return self.worker_id

    def _sync(self, version: int, weights: dict) -> None:
        if version != self.version:
            self.student.load_state_dict(weights)
            self.version = version

    def collect(self, version: int, weights: dict, beta: float, index: int) -> dict[str, Any]:
        self._sync(version, weights)
        start = time.perf_counter()
        with single_threaded_torch():
            r = self.rollout.collect(
                self.cfg.env.max_steps_per_rollout_epoch, beta, iteration=index, seed=self.cfg.seed, policy_version=version
            )
        return {
            "worker": self.worker_id, "version": version, "trajectories": r.trajectories, "episodes": r.episodes,
            "env_steps": r.env_steps, "expert_action_frac": r.expert_action_frac, "timings": r.timings,
            "seconds": time.perf_counter() - start,
        }

    def evaluate(self, version: int | None, weights: dict | None) -> dict[str, Any]:
        """The student with `weights`, or the expert when `weights` is None."""
        policy = self.expert
        if weights is not None:
            self._sync(version, weights)
            policy = self.student
        e = self.cfg.env
        with single_threaded_torch():
            return evaluate(self.env, policy, e.eval.num_episodes, e.eval.reset_seed_base, e.max_episode_steps).summary()

    def close(self) -> None:
        self.env.close()


def worker_config(cfg: Config) -> Config:
    """The config one rollout worker runs: its share of env.num_envs."""
    import dataclasses

    n = cfg.cluster.num_rollout_workers
    if cfg.env.num_envs % n:
        raise ConfigError(f"env.num_envs {cfg.env.num_envs} is not a multiple of cluster.num_rollout_workers {n}")
    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, num_envs=cfg.env.num_envs // n))


class AsyncRunner(SyncRunner):
    """Overlaps collection (Ray actors) with training (this process)."""

    def __init__(self, cfg: Config, run_dir: Path, student: TrainablePolicy, build: Callable,
                 hooks: RunnerHooks | None = None, tensorboard: bool = True):
        super().__init__(cfg, run_dir, env=None, student=student, expert=None, hooks=hooks, tensorboard=tensorboard)
        self.build = build
        self._workers: list = []
        self._weights_ref = None

    # RAY
    def _start_ray(self) -> bool:
        """Joins cluster.ray_address / RAY_ADDRESS, or starts an embedded instance; True if we started it."""
        try:
            import ray
        except ImportError:
            raise DaggerError("dagger train --async needs Ray: pip install 'dagger-cli[ray]'") from None

        if ray.is_initialized():
            return False
        address = self.cfg.cluster.ray_address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, namespace="dagger", log_to_driver=False)
            return False
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, namespace="dagger",
                 object_store_memory=256 * 1024**2)
        return True

    def _spawn_workers(self) -> None:
        import ray

        c = self.cfg.cluster
        actor = ray.remote(num_cpus=c.rollout_worker_cpus, num_gpus=c.rollout_worker_gpus)(RolloutWorker)
        wcfg = worker_config(self.cfg)
        self._workers = [actor.remote(wcfg, i, self.build) for i in range(c.num_rollout_workers)]
        self._get([w.ping.remote() for w in self._workers], "starting")

    def _get(self, refs, what: str, worker: int | None = None):
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return ray.get(refs)
        except (RayActorError, RayTaskError) as e:
            cause = getattr(e, "cause", None) or e
            if isinstance(cause, DaggerError):
                raise cause from None
            line = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
            who = f"rollout worker {worker}" if worker is not None else "a rollout worker"
            saved = f"; last checkpoint: iteration {self._last_saved}" if self._last_saved else ""
            raise DaggerError(f"{who} failed while {what}: {line}{saved}") from None

    # EVALUATION ON WORKER 0 (latest weights)
    def evaluate(self, policy) -> dict[str, Any]:
        if policy is None:
            return self._get(self._workers[0].evaluate.remote(None, None), "evaluating the expert", 0)
        return self._get(self._workers[0].evaluate.remote(self.iteration, self._weights_ref), "evaluating", 0)

    # MAIN LOOP
    def run(self, started_at: float | None = None) -> dict[str, Any]:
        import ray

        wall_start = self._wall_start = started_at if started_at is not None else time.perf_counter()
        own = self._start_ray()
        try:
            self._spawn_workers()
            self._publish()
            metrics = MetricsLogger(self.run_dir, resume_step=self._resumed_from, tensorboard=self.tensorboard)
            try:
                if self._resumed_from is None:
                    self._initial_evaluations(metrics)
                self._loop(metrics)
                if self.iteration > 0 and self._last_saved != self.iteration:
                    self.save()
            finally:
                metrics.close()
        finally:
            for w in self._workers:
                ray.kill(w)
            if own:
                ray.shutdown()
        summary = self.summary(wall_time_s=time.perf_counter() - wall_start)
        if self.iteration >= self.cfg.runner.max_epochs:
            from dagger_cli.core import checkpoint

            checkpoint.write_json(self.run_dir / "summary.json", summary)
        return summary

    def _publish(self) -> None:
        import ray

        self._weights_ref = ray.put(self.student.state_dict())

    def _loop(self, metrics: MetricsLogger) -> None:
        import ray

        cfg, n = self.cfg, self.cfg.cluster.num_rollout_workers
        lag_bound, min_size = cfg.algorithm.dagger.max_policy_lag, cfg.algorithm.replay_buffer.min_buffer_size
        collects = [self.iteration] * n  # collections each worker has started, counted like learner iterations
        arrived = self.iteration * n  # collections the learner has received, all workers together
        pending: dict = {}
        blocked: set[int] = set()
        stats = _WindowStats()

        def launch(w: int) -> None:
            if collects[w] >= self.iteration + lag_bound:
                blocked.add(w)
                return
            index = self.results.collections  # unique per collection: seeds its episodes and coins
            self.results.collections += 1
            ref = self._workers[w].collect.remote(self.iteration, self._weights_ref, self.beta(self.iteration), index)
            pending[ref] = w
            collects[w] += 1

        for w in range(n):
            launch(w)
        start = time.perf_counter()  # of the current learner iteration, waiting included
        while self.iteration < cfg.runner.max_epochs and not self.stop_requested:
            # DRAIN: whatever the workers have finished
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0) if pending else ([], [])
            needed = (self.iteration + 1 - lag_bound) * n
            if not ready and (self.buffer.size < min_size or arrived < needed):
                if not pending:
                    raise ConfigError(
                        "algorithm.replay_buffer.min_buffer_size is never reached: the workers stop "
                        f"{lag_bound} collections ahead of the learner (algorithm.dagger.max_policy_lag)"
                    )
                self.hooks.phase("waiting for trajectories")
                ready, _ = ray.wait(list(pending), num_returns=1)
            stats.queue.append(len(ready))
            for ref in ready:
                w = pending.pop(ref)
                result = self._get(ref, "collecting", w)
                for trajectory in result["trajectories"]:
                    self.buffer.add(trajectory)
                self.results.env_steps += result["env_steps"]
                arrived += 1
                stats.add(result, self.iteration)
                launch(w)
            if self.buffer.size < min_size or arrived < needed or cfg.actor.update_epoch == 0:
                continue
            # LEARNER: one iteration, then publish
            self.hooks.phase("training")
            t = time.perf_counter()
            row = self.learner.train(self.buffer, cfg.actor.update_epoch)
            row["time/train_s"] = time.perf_counter() - t
            row["time/learner_updates_per_s"] = cfg.actor.update_epoch / max(row["time/train_s"], 1e-9)
            self.iteration += 1
            self._publish()
            for w in sorted(blocked):
                blocked.discard(w)
                launch(w)
            # EVAL: student only, with the weights just published
            self._evaluate_if_due(row)
            elapsed = time.perf_counter() - start
            self.results.train_time_s += elapsed
            row.update(stats.row())
            row.update({
                "train/dagger/beta": self.beta(self.iteration - 1),
                "train/replay_buffer/num_trajectories": self.buffer.num_trajectories,
                "train/replay_buffer/total_samples": self.buffer.total_samples,
                "train/replay_buffer/cache_size": self.buffer.size,
                "train/async/blocked_workers": len(blocked),
                "time/iteration_s": elapsed,
                "time/elapsed_s": time.perf_counter() - self._wall_start,
                "time/env_steps": self.results.env_steps,
            })
            stats = _WindowStats()
            start = time.perf_counter()
            metrics.log(self.iteration, row)
            if cfg.runner.save_interval > 0 and self.iteration % cfg.runner.save_interval == 0:
                self.save()
            self.hooks.iteration_done(self.iteration, cfg.runner.max_epochs, row)
        for ref in pending:
            ray.cancel(ref)


class _WindowStats:
    """Rollout statistics between two learner iterations."""

    def __init__(self):
        self.success_once: list[bool] = []
        self.success_at_end: list[bool] = []
        self.lengths: list[int] = []
        self.lags: list[int] = []
        self.queue: list[int] = []
        self.expert_frac: list[float] = []
        self.env_steps = 0
        self.env_seconds = 0.0
        self.timings = {"env": 0.0, "student": 0.0, "expert": 0.0}

    def add(self, result: dict, learner_version: int) -> None:
        ep = result["episodes"]
        self.success_once += ep.success_once
        self.success_at_end += ep.success_at_end
        self.lengths += ep.length
        self.lags.append(learner_version - result["version"])
        self.expert_frac.append(result["expert_action_frac"])
        self.env_steps += result["env_steps"]
        self.env_seconds += result["seconds"]
        for key in self.timings:
            self.timings[key] += result["timings"][key]

    def row(self) -> dict[str, float]:
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        return {
            "env/success_once": mean(self.success_once),
            "env/success_at_end": mean(self.success_at_end),
            "env/episode_len": mean(self.lengths),
            "env/num_trajectories": len(self.success_once),
            "train/dagger/expert_action_frac": mean(self.expert_frac),
            "train/async/policy_lag": mean(self.lags),
            "train/async/queue_size": float(max(self.queue)) if self.queue else 0.0,
            "time/rollout_env_steps": self.env_steps,
            "time/rollout_env_steps_per_s": self.env_steps / self.env_seconds if self.env_seconds else float("nan"),
            "time/rollout_env_s": self.timings["env"],
            "time/rollout_student_s": self.timings["student"],
            "time/rollout_expert_s": self.timings["expert"],
        }
