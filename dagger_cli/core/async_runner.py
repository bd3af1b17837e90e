"""Asynchronous DAgger on Ray: rollout workers collect and evaluate while the learner, in this process, trains.

- Rollout workers are Ray actors, each with its share of the envs, a student and the expert; beta mixing and
  relabelling are `Rollout.collect`, exactly as in sync mode.
- Each collection uses the newest published weights (version = learner iterations) and beta(version), so beta falls
  per unit of training as in sync mode. Workers pick up new weights between collections.
- Staleness bound L = `max_policy_lag`, both ways: a worker starts its c-th collection only with weights of version
  >= c - L (it pauses otherwise), and the learner starts iteration k + 1 only while no collection made with weights
  older than k + 1 - L is outstanding. Data thus reaches the learner at most L versions old
  (`train/async/policy_lag`, mean and max). L = 0 trains every iteration on the previous weights' data, as sync mode
  does, with evaluation overlapped and the workers' envs stepping side by side.
- Scheduling: each worker has one task at a time, handed out by this process while the learner trains in a thread:
  a collection when the bound allows, else the next chunk of evaluation episodes. Evaluation uses the weights of
  the iteration it reports, runs in the workers' spare time, and goes ahead of collections once the learner has
  replaced those weights, so it falls at most one iteration behind. An iteration's metrics row is logged once its
  evaluation is in, rows stay in iteration order, and the run ends only after the last evaluation.
- A crashed worker ends the run with one line naming it; the last checkpoint stays as it was.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dagger_cli.core.config import Config
from dagger_cli.core.errors import ConfigError, DaggerError
from dagger_cli.core.metrics import MetricsLogger
from dagger_cli.core.protocols import TrainablePolicy
from dagger_cli.core.rollout import EpisodeStats, EvalResult, Rollout
from dagger_cli.core.run_state import RunnerHooks, RunState, eval_row, evaluate_policy, torch_threads


class RolloutWorker:
    """Runs in a Ray actor: env + student + expert, collecting labelled trajectories or evaluating on request."""

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
        with torch_threads():
            r = self.rollout.collect(
                self.cfg.env.max_steps_per_rollout_epoch, beta, iteration=index, seed=self.cfg.seed, policy_version=version
            )
        return {
            "worker": self.worker_id, "version": version, "trajectories": r.trajectories, "episodes": r.episodes,
            "env_steps": r.env_steps, "expert_action_frac": r.expert_action_frac, "timings": r.timings,
            "seconds": time.perf_counter() - start,
        }

    def evaluate(self, version: int | None, weights: dict | None, seeds: list[int]) -> EvalResult:
        """The student with `weights`, or the expert when `weights` is None, one episode per seed."""
        policy = self.expert
        if weights is not None:
            self._sync(version, weights)
            policy = self.student
        return evaluate_policy(self.env, policy, seeds, self.cfg.env.max_episode_steps)

    def close(self) -> None:
        self.env.close()


def worker_config(cfg: Config) -> Config:
    """The config one rollout worker runs: its share of env.num_envs."""
    n = cfg.cluster.num_rollout_workers
    if cfg.env.num_envs % n:
        raise ConfigError(f"env.num_envs {cfg.env.num_envs} is not a multiple of cluster.num_rollout_workers {n}")
    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, num_envs=cfg.env.num_envs // n))


def ray_get(refs, what: str, worker: int | None = None, note: str = ""):
    """`ray.get`, with a worker's failure as one DaggerError line naming the worker."""
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
        raise DaggerError(f"{who} failed while {what}: {line}{note}") from None


FORWARDED_ENV = ("DAGGER_HOME", "HF_HOME", "HF_HUB_OFFLINE")
"""variables every rollout worker reads, passed to the workers of a joined cluster with those its adapters name"""


def forwarded_env(cfg: Config) -> dict[str, str]:
    """The variables set here that the run's rollout workers need: the generic ones, and those the env adapter and
    the policy adapters declare (`worker_env`)."""
    from dagger_cli.core.registry import SCRIPTED, env_adapter, policy_adapter

    names = list(FORWARDED_ENV) + list(env_adapter(cfg.env.type).worker_env)
    for model in (cfg.actor.model, cfg.rollout.expert_model):
        if model.model_type != SCRIPTED:
            names += policy_adapter(model.model_type).worker_env
    return {k: os.environ[k] for k in dict.fromkeys(names) if k in os.environ}


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A HOST:PORT nobody listens on is one error line (ray.init would retry for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray:// client addresses: Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise DaggerError(f"cannot join the Ray cluster at {address}: nothing answers there ({e.strerror or e}); "
                          "start it with `ray start --head` or fix cluster.ray_address / --ray-address / RAY_ADDRESS") from None


def _token_auth_for_joining() -> None:
    """Ray >= 2.59 clusters want an auth token, and a driver sends its token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token) only in token mode, decided when Ray is imported; clusters without auth accept it too."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    found = token or (Path.home() / ".ray" / "auth_token").is_file()
    if found and "RAY_AUTH_MODE" not in os.environ and "ray" not in sys.modules:
        os.environ["RAY_AUTH_MODE"] = "token"


class RolloutWorkerGroup:
    """Ray (an embedded local instance, or the cluster at cluster.ray_address / RAY_ADDRESS) and one actor per
    rollout worker. `start` returns at once; the actors build their envs and models while this process goes on."""

    def __init__(self, cfg: Config, build: Callable):
        self.cfg, self.build = cfg, build
        self.actors: list = []
        self._own_ray = False

    def start(self) -> "RolloutWorkerGroup":
        wcfg = worker_config(self.cfg)  # an uneven env split fails before Ray starts
        address = self.cfg.cluster.ray_address or os.environ.get("RAY_ADDRESS")
        if address:
            _token_auth_for_joining()  # read when Ray is imported
        try:
            import ray
        except ImportError:
            raise DaggerError("dagger train --async needs Ray: pip install 'dagger-cli[ray]'") from None

        if not ray.is_initialized():
            if address:
                self._join(ray, address)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, namespace="dagger",
                         object_store_memory=256 * 1024**2)
                self._own_ray = True
        c = self.cfg.cluster
        actor = ray.remote(num_cpus=c.rollout_worker_cpus, num_gpus=c.rollout_worker_gpus)(RolloutWorker)
        self.actors = [actor.remote(wcfg, i, self.build) for i in range(c.num_rollout_workers)]
        return self

    def _join(self, ray, address: str) -> None:
        """Connects to a running cluster, passing on the variables its workers need (they would not see them)."""
        _check_reachable(address)
        forwarded = forwarded_env(self.cfg)
        try:
            ray.init(address=address, namespace="dagger", log_to_driver=False,
                     runtime_env={"env_vars": forwarded} if forwarded else None)
        except (ConnectionError, RuntimeError) as e:
            line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DaggerError(
                f"cannot join the Ray cluster at {address} ({line}); check the address (cluster.ray_address, "
                "--ray-address, RAY_ADDRESS) and that RAY_AUTH_TOKEN or ~/.ray/auth_token matches the cluster's"
            ) from None

    def wait_ready(self) -> None:
        """Blocks until every worker has built its env and models; a worker that cannot is one error line."""
        for i, actor in enumerate(self.actors):
            ray_get(actor.ping.remote(), "starting", i)

    def learner_threads(self) -> int:
        """cluster.learner_threads, else (embedded Ray) the CPUs the workers do not reserve, else torch's default."""
        c = self.cfg.cluster
        if c.learner_threads:
            return c.learner_threads
        if self._own_ray:
            return max(1, int((os.cpu_count() or 1) - c.num_rollout_workers * c.rollout_worker_cpus))
        return torch.get_num_threads()

    def shutdown(self, grace_s: float = 10.0) -> None:
        """Lets each worker close its envs (simulator worker processes), then ends the actors and an embedded Ray."""
        import ray

        if self.actors:
            ray.wait([a.close.remote() for a in self.actors], num_returns=len(self.actors), timeout=grace_s)
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._own_ray:
            ray.shutdown()
            self._own_ray = False


@dataclasses.dataclass
class _Evaluation:
    """One policy's evaluation, handed out in chunks of episodes to whichever worker is free."""

    what: str
    """student, initial student or expert"""
    version: int | None
    weights: Any
    """object ref of the student's weights; None for the expert"""
    chunks: deque
    """seed lists not yet handed out"""
    parts: list = dataclasses.field(default_factory=list)
    outstanding: int = 0
    started: float | None = None
    finished: float | None = None

    @property
    def done(self) -> bool:
        return not self.chunks and self.outstanding == 0


@dataclasses.dataclass
class _Row:
    """An iteration's metrics, logged once its evaluations are in."""

    iteration: int
    metrics: dict[str, float]
    evals: list[_Evaluation]


class AsyncRunner:
    """Overlaps collection and evaluation (Ray actors) with training (this process). Each worker has one task at
    a time; a free worker collects if the staleness bound lets it, else takes the next chunk of evaluation episodes,
    so evaluations run in the time the learner trains instead of holding up the data it waits for."""

    def __init__(self, cfg: Config, run_dir: Path, student: TrainablePolicy, workers: RolloutWorkerGroup,
                 hooks: RunnerHooks | None = None, tensorboard: bool = True):
        self.state = RunState(cfg, run_dir, student, hooks)
        self.workers = workers
        self.tensorboard = tensorboard
        self._weights_ref = None
        self._rows: deque[_Row] = deque()
        n = cfg.cluster.num_rollout_workers
        per_worker = cfg.env.num_envs // n
        self._chunk = per_worker * math.ceil(4 / per_worker)  # evaluation episodes per task
        self._inflight: dict = {}  # ref -> (worker, "collect", version) or (worker, "eval", _Evaluation)
        self._idle: set[int] = set(range(n))
        self._collects = [0] * n  # collections each worker has started, counted like learner iterations
        self._delivered = [-1] * n  # newest weights version each worker has delivered a collection with
        self._arrived: list = []  # (worker, version, result) of collections not yet in the buffer
        self._stats = _WindowStats()

    def _get(self, refs, what: str, worker: int | None = None):
        saved = f"; last checkpoint: iteration {self.state.last_saved}" if self.state.last_saved else ""
        return ray_get(refs, what, worker, saved)

    # MAIN LOOP
    def run(self, started_at: float | None = None) -> dict[str, Any]:
        """Runs until runner.max_epochs or a stop request and the last evaluation; returns the summary it writes."""
        s = self.state
        s.wall_start = started_at if started_at is not None else time.perf_counter()
        metrics = s.open_metrics(self.tensorboard)
        try:
            self.workers.wait_ready()
            self._publish()
            self._loop(metrics)
            self._finish_evaluations(metrics)
            if s.iteration > 0 and (s.last_saved, s.saved_evals) != (s.iteration, len(s.results.evals)):
                s.save()  # again if evaluations came in after this iteration's checkpoint
        finally:
            metrics.close()
        return s.write_summary()

    def _loop(self, metrics: MetricsLogger) -> None:
        """The learner trains in a thread, so that this one keeps handing out tasks the moment workers are free;
        collections that arrive meanwhile enter the buffer once the iteration is done."""
        import ray

        cfg = self.state.cfg
        n = len(self.workers.actors)
        self._collects = [self.state.iteration] * n
        self._delivered = [self.state.iteration - 1] * n  # a resumed buffer holds the previous weights' data
        self._dispatch()  # collections first
        if self.state.resumed_from is None:
            self._queue_initial_evaluations()
            self._dispatch()
        start = time.perf_counter()  # of the current learner iteration, waiting included
        training = None
        with ThreadPoolExecutor(1, thread_name_prefix="learner") as learner:
            while training is not None or (self.state.iteration < cfg.runner.max_epochs and not self.state.stop_requested):
                # RECEIVE: whatever the workers have finished; free workers get their next task
                if self._inflight:
                    self._receive(ray.wait(list(self._inflight), num_returns=len(self._inflight), timeout=0)[0])
                if training is None:
                    self._absorb()
                self._flush(metrics)
                if training is not None:
                    if not training.done():
                        if self._inflight:
                            ray.wait(list(self._inflight), num_returns=1, timeout=0.05)
                        else:
                            wait([training], timeout=0.05)
                        continue
                    self._iteration_done(training.result(), start, metrics)
                    training, start = None, time.perf_counter()
                    continue
                if not self._may_train():
                    if not self._inflight:
                        raise ConfigError(
                            "algorithm.replay_buffer.min_buffer_size is never reached: with "
                            f"algorithm.dagger.max_policy_lag {cfg.algorithm.dagger.max_policy_lag} the workers "
                            f"collect {cfg.algorithm.dagger.max_policy_lag + 1} times each before the first learner "
                            "iteration"
                        )
                    self.state.hooks.phase("waiting for trajectories")
                    ray.wait(list(self._inflight), num_returns=1)
                    continue
                # LEARNER: one iteration in the thread
                self.state.hooks.phase("training")
                training = learner.submit(self._train, self.workers.learner_threads())

    def _train(self, threads: int) -> dict[str, float]:
        t = time.perf_counter()
        with torch_threads(threads):
            row = self.state.train()
        row["time/train_s"] = time.perf_counter() - t
        row["time/learner_updates_per_s"] = self.state.cfg.actor.update_epoch / max(row["time/train_s"], 1e-9)
        return row

    def _iteration_done(self, row: dict[str, float], start: float, metrics: MetricsLogger) -> None:
        """Publishes the new weights, queues their evaluation, and checkpoints."""
        cfg = self.state.cfg
        self.state.iteration += 1
        self._publish()
        # EVAL: student only, these weights, in the workers' spare time
        evals = [self._evaluation("student", self.state.iteration, self._weights_ref)] if self.state.eval_due() else []
        self._rows.append(_Row(self.state.iteration, row, evals))
        self._dispatch()
        elapsed = time.perf_counter() - start
        self.state.results.train_time_s += elapsed
        row.update(self._stats.row())
        row.update({
            "train/dagger/beta": self.state.beta(self.state.iteration - 1),
            **self.state.buffer_metrics(),
            "train/async/blocked_workers": sum(not self._may_collect(w) for w in range(len(self._collects))),
            "time/iteration_s": elapsed,
            "time/env_steps": self.state.results.env_steps,
        })
        self._stats = _WindowStats()
        last = self.state.iteration >= cfg.runner.max_epochs or self.state.stop_requested
        if not last and cfg.runner.save_interval > 0 and self.state.iteration % cfg.runner.save_interval == 0:
            self.state.save()  # the last one waits for the last evaluation, so that its results hold it

    def _finish_evaluations(self, metrics: MetricsLogger) -> None:
        """After the last iteration: the outstanding evaluations (collections still running are received too)."""
        import ray

        while any(not ev.done for row in self._rows for ev in row.evals):
            self.state.hooks.phase("evaluating the student")
            self._dispatch()
            self._receive(ray.wait(list(self._inflight), num_returns=1)[0])
        self._absorb()
        self._flush(metrics)

    # SCHEDULING
    def _may_collect(self, w: int) -> bool:
        """Worker w may start another collection: the run goes on and it stays within max_policy_lag."""
        if self.state.iteration >= self.state.cfg.runner.max_epochs or self.state.stop_requested:
            return False
        return self._collects[w] <= self.state.iteration + self.state.cfg.algorithm.dagger.max_policy_lag

    def _may_train(self) -> bool:
        """Enough data, every worker has delivered data of weights >= iteration - lag, and nothing older than
        iteration + 1 - lag is still being collected (it would arrive more than lag versions old)."""
        lag = self.state.cfg.algorithm.dagger.max_policy_lag
        if self.state.buffer.size < self.state.cfg.algorithm.replay_buffer.min_buffer_size:
            return False
        if min(self._delivered) < self.state.iteration - lag:
            return False
        return all(task[2] >= self.state.iteration + 1 - lag for task in self._inflight.values() if task[1] == "collect")

    def _dispatch(self) -> None:
        """Gives every free worker its next task: a collection if allowed, else the oldest evaluation's next chunk.
        An evaluation of weights the learner has already replaced goes first: evaluations use the time the learner
        trains, and fall at most one iteration behind."""
        actors = self.workers.actors
        for w in sorted(self._idle):
            pending = [ev for row in self._rows for ev in row.evals if ev.chunks]
            late = pending and (pending[0].version or 0) < self.state.iteration
            if not late and self._may_collect(w):
                index = self.state.results.collections  # unique per collection: seeds its episodes and coins
                self.state.results.collections += 1
                self._collects[w] += 1
                ref = actors[w].collect.remote(self.state.iteration, self._weights_ref, self.state.beta(self.state.iteration), index)
                self._inflight[ref] = (w, "collect", self.state.iteration)
            else:
                if not pending:
                    continue
                ev = pending[0]
                ev.started = ev.started or time.perf_counter()
                ev.outstanding += 1
                self._inflight[actors[w].evaluate.remote(ev.version, ev.weights, ev.chunks.popleft())] = (w, "eval", ev)
            self._idle.discard(w)

    def _receive(self, refs: list) -> None:
        """Takes finished tasks back (collections wait in `_arrived` for `_absorb`) and re-dispatches."""
        for ref in refs:
            w, kind, payload = self._inflight.pop(ref)
            self._idle.add(w)
            if kind == "eval":
                payload.parts.append(self._get(ref, f"evaluating the {payload.what}", w))
                payload.outstanding -= 1
                if payload.done:
                    payload.finished = time.perf_counter()
            else:
                self._arrived.append((w, payload, self._get(ref, "collecting", w)))
        self._stats.queue.append(len(self._arrived))
        self._dispatch()

    def _absorb(self) -> None:
        """Arrived collections into the replay buffer (never while the learner samples from it)."""
        for w, version, result in self._arrived:
            self.state.add(result["trajectories"])
            self.state.results.env_steps += result["env_steps"]
            self._delivered[w] = max(self._delivered[w], version)
            self._stats.add(result, self.state.iteration)
        self._arrived = []

    def _publish(self) -> None:
        import ray

        self._weights_ref = ray.put(self.state.student.state_dict())

    # EVALUATION: episodes shared out over the workers in chunks
    def _evaluation(self, what: str, version: int | None, weights) -> _Evaluation:
        seeds = self.state.cfg.env.eval.seeds
        chunks = deque(seeds[i : i + self._chunk] for i in range(0, len(seeds), self._chunk))
        return _Evaluation(what, version, weights, chunks)

    def _queue_initial_evaluations(self) -> None:
        """The initial student and the expert, as row 0."""
        r, evals = self.state.cfg.runner, []
        if r.eval_student_init and self.state.results.student_init is None:
            evals.append(self._evaluation("initial student", self.state.iteration, self._weights_ref))
        if r.eval_expert and self.state.results.expert is None:
            evals.append(self._evaluation("expert", None, None))
        if evals:
            self._rows.append(_Row(0, {}, evals))

    def _flush(self, metrics: MetricsLogger) -> None:
        """Logs the rows whose evaluations are all in, in iteration order."""
        while self._rows and all(ev.done for ev in self._rows[0].evals):
            row = self._rows.popleft()
            for ev in row.evals:
                result = EvalResult.merge(ev.parts, seconds=ev.finished - ev.started).summary()
                if ev.what == "student":
                    row.metrics.update(self.state.record_eval(row.iteration, result))
                    continue
                setattr(self.state.results, "expert" if ev.what == "expert" else "student_init", result)
                self.state.hooks.evaluated(ev.what, result)
                row.metrics.update(eval_row("eval_expert" if ev.what == "expert" else "eval", result))
            if row.iteration == 0:
                metrics.log(0, row.metrics)
                continue
            row.metrics["time/elapsed_s"] = time.perf_counter() - self.state.wall_start
            metrics.log(row.iteration, row.metrics)
            self.state.hooks.iteration_done(row.iteration, self.state.cfg.runner.max_epochs, row.metrics)


class _WindowStats:
    """Rollout statistics between two learner iterations."""

    def __init__(self):
        self.episodes = EpisodeStats()
        self.lags: list[int] = []
        self.queue: list[int] = []
        self.expert_frac: list[float] = []
        self.env_steps = 0
        self.env_seconds = 0.0
        self.timings = {"env": 0.0, "student": 0.0, "expert": 0.0}

    def add(self, result: dict, learner_version: int) -> None:
        self.episodes.extend(result["episodes"])
        self.lags.append(learner_version - result["version"])
        self.expert_frac.append(result["expert_action_frac"])
        self.env_steps += result["env_steps"]
        self.env_seconds += result["seconds"]
        for key in self.timings:
            self.timings[key] += result["timings"][key]

    def row(self) -> dict[str, float]:
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        return {
            **self.episodes.metrics(),
            "train/dagger/expert_action_frac": mean(self.expert_frac),
            "train/async/policy_lag": mean(self.lags),
            "train/async/policy_lag_max": float(max(self.lags)) if self.lags else float("nan"),
            "train/async/queue_size": float(max(self.queue)) if self.queue else 0.0,
            "time/rollout_env_steps": self.env_steps,
            "time/rollout_env_steps_per_s": self.env_steps / self.env_seconds if self.env_seconds else float("nan"),
            "time/rollout_env_s": self.timings["env"],
            "time/rollout_student_s": self.timings["student"],
            "time/rollout_expert_s": self.timings["expert"],
        }
