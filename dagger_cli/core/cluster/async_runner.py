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
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dagger_cli.core.config import Config
from dagger_cli.core.errors import ConfigError, DaggerError
from dagger_cli.core.io.metrics import MetricsLogger
from dagger_cli.core.protocols import RunnerHooks, TrainablePolicy
from dagger_cli.core.cluster.ray_cluster import KEPT_VERSIONS, connect, release
from dagger_cli.core.engine.rollout import EpisodeStats, EvalResult, Rollout, sample_shapes, torch_threads
from dagger_cli.core.engine.run_evaluation import evaluate_policy
from dagger_cli.core.engine.run_state import RunState, SeedSamples


class RolloutWorker:
    """Runs in a Ray actor: env + student + expert, collecting labelled trajectories or evaluating on request."""

    def __init__(self, cfg: Config, worker_id: int, build: Callable):
        self.cfg, self.worker_id = cfg, worker_id
        self.env, self.student, self.expert = build(cfg, worker_id)
        self.rollout = Rollout.for_run(self.env, self.student, self.expert, cfg)
        self.version: int | None = None
        """the weights version loaded into the student"""
        self._weights: dict[int, dict] = {}  # the newest KEPT_VERSIONS versions received (zero-copy object store views)
        self.receipts: dict[int, int] = {}
        """times each weights version was received (once, unless evicted and needed again)"""
        self.tasks = 0
        """collections and evaluation chunks run"""

    def ping(self) -> int:
        return self.worker_id

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        return sample_shapes(self.env, self.expert)

    def counts(self) -> dict[str, Any]:
        return {"receipts": self.receipts, "tasks": self.tasks}

    def receive(self, version: int, weights: dict) -> None:
        """Weights of `version`, sent to each worker once (`AsyncRunner._send`); tasks name only the version."""
        self._weights[version] = weights
        self.receipts[version] = self.receipts.get(version, 0) + 1
        for old in sorted(self._weights)[:-KEPT_VERSIONS]:
            del self._weights[old]

    def _use(self, version: int) -> None:
        self.tasks += 1
        if version != self.version:
            self.student.load_state_dict(unpack_weights(self._weights[version]))
            self.version = version

    def collect(self, version: int, beta: float, index: int) -> dict[str, Any]:
        self._use(version)
        start = time.perf_counter()
        with torch_threads():
            r = self.rollout.collect(
                self.cfg.env.max_steps_per_rollout_epoch, beta, iteration=index, seed=self.cfg.seed, policy_version=version
            )
        return {
            "worker": self.worker_id, "index": index, "version": version, "trajectories": r.trajectories,
            "episodes": r.episodes,
            "env_steps": r.env_steps, "expert_action_frac": r.expert_action_frac, "timings": r.timings,
            "expert_queries": r.expert_queries, "observations": r.env_steps // self.env.num_action_chunks,
            "student_uncertainty": r.student_uncertainty,
            "seconds": time.perf_counter() - start,
        }

    def evaluate(self, version: int | None, seeds: list[int], record: int = 0) -> EvalResult:
        """The student with the weights of `version`, or the expert when `version` is None, one episode per seed;
        the first `record` filmed."""
        policy = self.expert
        if version is not None:
            self._use(version)
            policy = self.student
        else:
            self.tasks += 1
        return evaluate_policy(self.env, policy, seeds, self.cfg.env.max_episode_steps, record)

    def close(self) -> None:
        self.env.close()


def pack_weights(state: dict[str, torch.Tensor]) -> dict[str, tuple[np.ndarray, str]]:
    """A state dict as numpy arrays (bf16 as int16 bits), which Ray's object store hands to every worker on a node
    without a copy; torch tensors would be unpickled into each worker's memory."""
    packed = {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            packed[name] = (tensor.view(torch.int16).numpy(), "bfloat16")
        else:
            packed[name] = (tensor.numpy(), "")
    return packed


def unpack_weights(packed: dict[str, tuple[np.ndarray, str]]) -> dict[str, torch.Tensor]:
    """Tensors over the (read-only) arrays, for `load_state_dict`, which copies them into the model."""
    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        for name, (array, dtype) in packed.items():
            tensor = torch.from_numpy(array)
            out[name] = tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor
    return out


def rollout_worker_gpus(cfg: Config, cluster_gpus: float) -> float:
    """cluster.rollout_worker_gpus, else (unset) the cluster's GPUs shared by the workers, at most one each, so that
    env, student and expert of a worker share its GPU (RLinf colocates them); none on a CPU run. A shared GPU is
    split in 1/k (k workers on it), the only fractions that pack: 3 workers on 2 GPUs get 0.5 each, not 0.667."""
    c = cfg.cluster
    if c.rollout_worker_gpus is not None:
        return c.rollout_worker_gpus
    if cfg.runner.device == "cpu" or not cluster_gpus:
        return 0.0
    if cluster_gpus < 1:
        return cluster_gpus / c.num_rollout_workers
    return 1.0 / math.ceil(c.num_rollout_workers / math.floor(cluster_gpus))


def workers_that_fit(nodes: list[dict[str, float]], cpus: float, gpus: float) -> int:
    """How many rollout workers asking `cpus` CPUs and `gpus` GPUs Ray can place on nodes with these total
    resources: a fraction of a GPU must fit inside one GPU (two 0.667 asks never share one)."""
    fit = 0
    for node in nodes:
        slots = []
        if cpus > 0:
            slots.append(math.floor(node.get("CPU", 0.0) / cpus + 1e-9))
        if 0 < gpus < 1:
            slots.append(math.floor(node.get("GPU", 0.0) + 1e-9) * math.floor(1 / gpus + 1e-9))
        elif gpus >= 1:
            slots.append(math.floor(node.get("GPU", 0.0) / gpus + 1e-9))
        fit += min(slots) if slots else 1 << 30
    return fit


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


class RolloutWorkerGroup:
    """Ray (an embedded local instance, or the cluster at cluster.ray_address / RAY_ADDRESS) and one actor per
    rollout worker. `start` returns at once; the actors build their envs and models while this process goes on."""

    def __init__(self, cfg: Config, build: Callable):
        self.cfg, self.build = cfg, build
        self.actors: list = []
        self._own_ray = False
        self.worker_gpus = 0.0

    def start(self) -> "RolloutWorkerGroup":
        wcfg = worker_config(self.cfg)  # an uneven env split fails before Ray starts
        self._own_ray = connect(self.cfg, "dagger train --async")
        import ray

        c = self.cfg.cluster
        self.worker_gpus = rollout_worker_gpus(self.cfg, ray.cluster_resources().get("GPU", 0))
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        fit = workers_that_fit(nodes, c.rollout_worker_cpus, self.worker_gpus)
        if fit < c.num_rollout_workers:  # else the workers that do not fit stay pending and wait_ready never returns
            release([], self._own_ray)
            self._own_ray = False
            raise ConfigError(
                f"cluster.num_rollout_workers={c.num_rollout_workers}: the Ray cluster places {fit} workers of "
                f"cluster.rollout_worker_cpus={c.rollout_worker_cpus:g} and cluster.rollout_worker_gpus="
                f"{self.worker_gpus:g} (a GPU fraction must fit inside one GPU); lower one of them"
            )
        actor = ray.remote(num_cpus=c.rollout_worker_cpus, num_gpus=self.worker_gpus)(RolloutWorker)
        self.actors = [actor.remote(wcfg, i, self.build) for i in range(c.num_rollout_workers)]
        return self

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
        release(self.actors, self._own_ray)
        self.actors, self._own_ray = [], False


@dataclasses.dataclass
class _Evaluation:
    """One policy's evaluation, handed out in chunks of episodes to whichever worker is free."""

    what: str
    """student, initial student or expert"""
    version: int | None
    """the student's weights version; None for the expert"""
    chunks: deque
    """(episodes to film, seed list) not yet handed out"""
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
                 hooks: RunnerHooks | None = None, tensorboard: bool = True,
                 seed_samples: SeedSamples | None = None):
        def shapes():
            return ray_get(workers.actors[0].sample_shapes.remote(), "starting", 0)

        self.state = RunState(cfg, run_dir, student, hooks, seed_samples, sample_shapes=shapes)
        self.workers = workers
        self.tensorboard = tensorboard
        self._version_refs: dict[int, Any] = {}  # weights in the object store, of the versions tasks may still need
        self._sent: list[list[int]] = [[] for _ in range(cfg.cluster.num_rollout_workers)]  # versions each worker holds
        self._rows: deque[_Row] = deque()
        n = cfg.cluster.num_rollout_workers
        per_worker = cfg.env.num_envs // n
        self._chunk = per_worker * math.ceil(4 / per_worker)  # evaluation episodes per task
        self._inflight: dict = {}  # ref -> (worker, "collect", version) or (worker, "eval", _Evaluation)
        self._idle: set[int] = set(range(n))
        self._collects = [0] * n  # collections each worker has started, counted like learner iterations
        self._delivered = [-1] * n  # newest weights version each worker has delivered a collection with
        self._arrived: list = []  # (worker, version, result) of collections not yet in the buffer
        self._first_round: set[int] = set()  # a student without norm stats: iteration 0's collections not yet in
        self._first_round_range = range(0)
        self._stats = _WindowStats()

    def _get(self, refs, what: str, worker: int | None = None):
        last = self.state.checkpoint.last_saved
        saved = f"; last checkpoint: iteration {last}" if last else ""
        return ray_get(refs, what, worker, saved)

    # MAIN LOOP
    def run(self, started_at: float | None = None) -> dict[str, Any]:
        """Runs until runner.max_epochs or a stop request and the last evaluation; returns the summary it writes."""
        s = self.state
        metrics = s.start(self.tensorboard, started_at)
        try:
            self.workers.wait_ready()
            self._publish()
            self._loop(metrics)
            self._finish_evaluations(metrics)
            if s.progress.iteration > 0 and not s.checkpoint.holds_everything:
                s.save()  # again if evaluations came in after this iteration's checkpoint
        finally:
            metrics.close()
            s.close()
        return s.write_summary()

    def _loop(self, metrics: MetricsLogger) -> None:
        """The learner trains in a thread, so that this one keeps handing out tasks the moment workers are free;
        collections that arrive meanwhile enter the buffer once the iteration is done."""
        import ray

        cfg, progress = self.state.cfg, self.state.progress
        n = len(self.workers.actors)
        self._collects = [progress.iteration] * n
        self._delivered = [progress.iteration - 1] * n  # a resumed buffer holds the previous weights' data
        if self.state.needs_norm_stats:  # fitted, as in sync mode, on the first actor.norm_stats_iterations
            first = progress.collections  # iterations: every worker's first that many collections
            self._first_round_range = range(first, first + n * cfg.norm_stats_iterations)
            self._first_round = set(self._first_round_range)
        self._dispatch()  # collections first
        if progress.resumed_from is None:
            self._queue_initial_evaluations()
            self._dispatch()
        start = time.perf_counter()  # of the current learner iteration, waiting included
        training = None
        with ThreadPoolExecutor(1, thread_name_prefix="learner") as learner:
            while training is not None or progress.going_on:
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
        cfg, progress = self.state.cfg, self.state.progress
        iteration = progress.advance()
        self._publish()
        # EVAL: student only, these weights, in the workers' spare time
        due = self.state.evaluation.due(iteration, progress.finished)
        evals = [self._evaluation("student", iteration, final=progress.finished)] if due else []
        self._rows.append(_Row(iteration, row, evals))
        self._dispatch()
        elapsed = time.perf_counter() - start
        progress.count_train_time(elapsed)
        row.update(self._stats.row())
        row.update({
            "train/dagger/beta": self.state.beta(iteration - 1),
            **self.state.buffer_metrics(),
            "train/async/blocked_workers": sum(not self._may_collect(w) for w in range(len(self._collects))),
            "time/iteration_s": elapsed,
            "time/env_steps": progress.env_steps,
            "train/dagger/expert_queries_total": progress.expert_queries,
        })
        self._stats = _WindowStats()
        if progress.going_on and cfg.runner.save_interval > 0 and iteration % cfg.runner.save_interval == 0:
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
        """Worker w may start another collection: the run goes on and it stays within max_policy_lag, or the
        collections the norm stats are fitted on are not all handed out yet (the learner waits for them)."""
        progress = self.state.progress
        if not progress.going_on:
            return False
        if self._first_round and progress.collections < self._first_round_range.stop:
            return True
        return self._collects[w] <= progress.iteration + self.state.cfg.algorithm.dagger.max_policy_lag

    def _may_train(self) -> bool:
        """Enough data, every worker has delivered data of weights >= iteration - lag, and nothing older than
        iteration + 1 - lag is still being collected (it would arrive more than lag versions old)."""
        lag, iteration = self.state.cfg.algorithm.dagger.max_policy_lag, self.state.progress.iteration
        if not self.state.ready_to_train() or self._first_round:
            return False
        if min(self._delivered) < iteration - lag:
            return False
        return all(task[2] >= iteration + 1 - lag for task in self._inflight.values() if task[1] == "collect")

    def _dispatch(self) -> None:
        """Gives every free worker its next task: a collection if allowed, else the oldest evaluation's next chunk.
        An evaluation of weights the learner has already replaced goes first: evaluations use the time the learner
        trains, and fall at most one iteration behind."""
        actors, progress = self.workers.actors, self.state.progress
        for w in sorted(self._idle):
            pending = [ev for row in self._rows for ev in row.evals if ev.chunks]
            late = pending and (pending[0].version or 0) < progress.iteration
            if not late and self._may_collect(w):
                index, version = progress.next_collection(), progress.iteration
                self._collects[w] += 1
                self._send(w, version)
                ref = actors[w].collect.remote(version, self.state.beta(version), index)
                self._inflight[ref] = (w, "collect", version)
            else:
                if not pending:
                    continue
                ev = pending[0]
                ev.started = ev.started or time.perf_counter()
                ev.outstanding += 1
                if ev.version is not None:
                    self._send(w, ev.version)
                record, seeds = ev.chunks.popleft()
                self._inflight[actors[w].evaluate.remote(ev.version, seeds, record)] = (w, "eval", ev)
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
        """Arrived collections into the replay buffer (never while the learner samples from it). A student without
        norm stats is fitted once iteration 0's collections, one per worker, are all in, on exactly those (not on
        whichever arrived first); the learner waits for it."""
        for w, version, result in self._arrived:
            waiting = bool(self._first_round)
            self.state.add(result["trajectories"], fit=not waiting)
            self._first_round.discard(result["index"])
            if waiting and not self._first_round:
                self.state.fit_norm_stats(self._first_round_range)
            self.state.progress.count_env_steps(result["env_steps"])
            self.state.progress.count_expert_queries(result.get("expert_queries", 0))
            self._delivered[w] = max(self._delivered[w], version)
            self._stats.add(result, self.state.progress.iteration)
        self._arrived = []

    def _publish(self) -> None:
        """The new weights into the object store once; workers receive them when their next task needs them."""
        import ray

        pending = {ev.version for row in self._rows for ev in row.evals if ev.chunks}
        self._version_refs = {v: ref for v, ref in self._version_refs.items() if v in pending}
        self._version_refs[self.state.progress.iteration] = ray.put(pack_weights(self.state.student.state_dict()))

    def _send(self, w: int, version: int) -> None:
        """Worker w receives `version` unless it holds it (it keeps the newest KEPT_VERSIONS, as this mirrors)."""
        held = self._sent[w]
        if version in held:
            return
        self.workers.actors[w].receive.remote(version, self._version_refs[version])  # runs before its next task
        held.append(version)
        held.sort()
        del held[:-KEPT_VERSIONS]

    # EVALUATION: episodes shared out over the workers in chunks
    def _evaluation(self, what: str, version: int | None, final: bool = False) -> _Evaluation:
        seeds, film = self.state.cfg.env.eval.seeds_for(final), self.state.cfg.runner.eval_video_episodes
        chunks = deque((max(0, film - i), seeds[i : i + self._chunk]) for i in range(0, len(seeds), self._chunk))
        return _Evaluation(what, version, chunks)

    def _queue_initial_evaluations(self) -> None:
        """The initial student and the expert, as row 0."""
        version = self.state.progress.iteration
        evals = [self._evaluation(what, None if what == "expert" else version)
                 for what in self.state.evaluation.initial_pending()]
        if evals:
            self._rows.append(_Row(0, {}, evals))

    def _flush(self, metrics: MetricsLogger) -> None:
        """Logs the rows whose evaluations are all in, in iteration order."""
        while self._rows and all(ev.done for ev in self._rows[0].evals):
            row = self._rows.popleft()
            evaluation = self.state.evaluation
            for ev in row.evals:
                merged = EvalResult.merge(ev.parts, seconds=ev.finished - ev.started)
                if ev.what == "student":
                    row.metrics.update(evaluation.record(row.iteration, merged))
                else:
                    row.metrics.update(evaluation.record_initial(ev.what, merged))
            if row.iteration == 0:
                metrics.log(0, row.metrics, videos=evaluation.take_videos())
                continue
            row.metrics["time/elapsed_s"] = self.state.progress.elapsed()
            metrics.log(row.iteration, row.metrics, videos=evaluation.take_videos())
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
        self.queries = self.observations = 0
        self.uncertainty: list[float] = []

    def add(self, result: dict, learner_version: int) -> None:
        self.episodes.extend(result["episodes"])
        self.lags.append(learner_version - result["version"])
        self.expert_frac.append(result["expert_action_frac"])
        self.env_steps += result["env_steps"]
        self.env_seconds += result["seconds"]
        self.queries += result.get("expert_queries", 0)
        self.observations += result.get("observations", 0)
        self.uncertainty.append(result.get("student_uncertainty", float("nan")))
        for key, seconds in result["timings"].items():
            self.timings[key] = self.timings.get(key, 0.0) + seconds

    def row(self) -> dict[str, float]:
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        return {
            **self.episodes.metrics(),
            "train/dagger/expert_action_frac": mean(self.expert_frac),
            "train/dagger/expert_queries": self.queries,
            "train/dagger/query_rate": self.queries / self.observations if self.observations else float("nan"),
            "train/dagger/student_uncertainty": mean([u for u in self.uncertainty if not math.isnan(u)]),
            "train/async/policy_lag": mean(self.lags),
            "train/async/policy_lag_max": float(max(self.lags)) if self.lags else float("nan"),
            "train/async/queue_size": float(max(self.queue)) if self.queue else 0.0,
            "time/rollout_env_steps": self.env_steps,
            "time/rollout_env_steps_per_s": self.env_steps / self.env_seconds if self.env_seconds else float("nan"),
            **{f"time/rollout_{part}_s": seconds for part, seconds in self.timings.items()},
        }
