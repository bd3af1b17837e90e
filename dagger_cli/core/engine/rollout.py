"""Beta-mixed rollouts with expert relabelling, and student-only evaluation.

Each step: flip the expert/student coins (per env, or one per batch), let the chosen policy act, and ask the expert
to label the same observations in the same step (one batched call). Episodes begin and end here, not in the env:
every iteration resets all envs with seeds drawn from (run seed, iteration), so an iteration's rollouts depend only
on the weights, the iteration and the seed, and a resumed run repeats exactly what an uninterrupted one would do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from dagger_cli.core.config import TRAIN_SEED_RANGE
from dagger_cli.core.errors import ConfigError
from dagger_cli.core.protocols import Obs, Policy, VecEnv
from dagger_cli.core.engine.query_gate import QueryGate
from dagger_cli.core.engine.replay_buffer import flatten_obs

_COIN_STREAM, _SEED_STREAM = 2, 3


@contextmanager
def torch_threads(n: int = 1):
    """`n` torch threads inside the block. One while env workers run: batch-of-a-few inference gains nothing from
    more, and idle OpenMP threads spinning on the other cores slow the simulator down."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def visible(obs: Obs, env: VecEnv, policy=None) -> Obs:
    """`obs` as `policy` may read it: without the env's `privileged_keys`, unless the policy `reads_privileged`
    (a scripted expert that reads the simulator); with `policy` None, as the replay buffer stores it."""
    hidden = getattr(env, "privileged_keys", ())
    if not hidden or not isinstance(obs, dict) or getattr(policy, "reads_privileged", False):
        return obs
    return {k: v for k, v in obs.items() if k not in hidden}


def training_seeds(env: VecEnv, drawn: list[int]) -> list[int]:
    """The reset seeds `env` runs for a draw of training seeds (its optional `training_seeds`, else the draw)."""
    steer = getattr(env, "training_seeds", None)
    return drawn if steer is None else steer(drawn)


def sample_shapes(env: VecEnv, expert: Policy) -> dict[str, tuple[int, ...]]:
    """The shape of one sample of each field a collection stores but the metadata: the observations as the buffer
    keeps them (one reset of `env` shows them), the expert's label chunk and the executed chunk."""
    obs = env.reset(training_seeds(env, [TRAIN_SEED_RANGE[0] + i for i in range(env.num_envs)]))
    shapes = {key: tuple(np.asarray(value).shape[1:]) for key, value in flatten_obs(visible(obs, env)).items()}
    shapes["expert_action"] = tuple(expert.action_shape)
    shapes["action"] = (env.num_action_chunks, env.action_dim)
    return shapes


def take(obs: Obs, index: np.ndarray) -> Obs:
    """Rows `index` of a batched observation (array or dict of arrays)."""
    if isinstance(obs, dict):
        return {k: v[index] for k, v in obs.items()}
    return obs[index]


@dataclass
class EpisodeStats:
    """Per finished episode: success at any step, success at its last step, and its length in env steps; and the
    episodes a rollout's end cut short (`unfinished`, of which `unfinished_success` had succeeded so far)."""

    success_once: list[bool] = field(default_factory=list)
    success_at_end: list[bool] = field(default_factory=list)
    length: list[int] = field(default_factory=list)
    unfinished: int = 0
    unfinished_success: int = 0

    def add(self, success_once: bool, success_at_end: bool, length: int) -> None:
        self.success_once.append(bool(success_once))
        self.success_at_end.append(bool(success_at_end))
        self.length.append(int(length))

    def extend(self, other: "EpisodeStats") -> None:
        for name in ("success_once", "success_at_end", "length"):
            getattr(self, name).extend(getattr(other, name))
        self.unfinished += other.unfinished
        self.unfinished_success += other.unfinished_success

    @property
    def count(self) -> int:
        return len(self.success_once)

    def metrics(self) -> dict[str, float]:
        """The training episodes' `env/*` metrics. `env/success_once` is over finished episodes, which favours short
        successful ones when episodes end at success; `env/success_once_with_unfinished` also counts the episodes
        the iteration's end cut short, by their outcome so far."""
        total = self.count + self.unfinished
        successes = sum(self.success_once) + self.unfinished_success
        return {
            "env/success_once": self.rate("success_once"),
            "env/success_at_end": self.rate("success_at_end"),
            "env/episode_len": float(np.mean(self.length)) if self.count else float("nan"),
            "env/num_trajectories": self.count,
            "env/unfinished_episodes": self.unfinished,
            "env/success_once_with_unfinished": successes / total if total else float("nan"),
        }

    def rate(self, name: str) -> float:
        values = getattr(self, name)
        return float(np.mean(values)) if values else float("nan")


@dataclass
class RolloutResult:
    trajectories: list[dict[str, np.ndarray]]
    """labelled samples, one dict per contiguous episode segment of one env"""
    episodes: EpisodeStats
    """episodes that ended inside this rollout (mixed policy)"""
    env_steps: int
    """env steps taken, all envs together"""
    expert_action_frac: float
    """fraction of policy calls whose action the expert chose"""
    timings: dict[str, float]
    """seconds spent in env / student / expert (this process), and `worker_<part>` where the env's workers report
    their parts (`VecEnv.worker_seconds`, summed over workers)"""
    expert_queries: int = 0
    """observations the expert was asked to label (all envs; every visited one unless gated or only_save_expert)"""
    student_uncertainty: float = float("nan")
    """gated: the mean uncertainty score of the student where it acted"""

    def query_metrics(self, chunks: int) -> dict[str, float]:
        """`train/dagger/expert_queries` and `query_rate` (of the observations visited, `chunks` env steps each)."""
        visited = self.env_steps // chunks
        return {
            "train/dagger/expert_queries": self.expert_queries,
            "train/dagger/query_rate": self.expert_queries / visited if visited else float("nan"),
            "train/dagger/student_uncertainty": self.student_uncertainty,
        }


def checked_actions(actions, rows: int, policy: Policy, who: str) -> np.ndarray:
    """`policy.act`'s output for `rows` observations, which must be shaped (rows, *policy.action_shape)."""
    actions = np.asarray(actions, dtype=np.float32)
    expected = (rows, *policy.action_shape)
    if actions.shape != expected:
        raise ValueError(f"the {who} returned actions of shape {actions.shape}, expected {expected}")
    return actions


def check_action_shape(env: VecEnv, policy: Policy, who: str) -> None:
    """A policy must predict at least the actions the env executes per step, each of the env's size."""
    horizon, dim = policy.action_shape
    if dim != env.action_dim:
        raise ConfigError(f"the {who} predicts {dim}-D actions but the env takes {env.action_dim}-D ones")
    if horizon < env.num_action_chunks:
        raise ConfigError(
            f"actor.model.num_action_chunks: the env executes {env.num_action_chunks} actions per step but the "
            f"{who} predicts only {horizon}"
        )


def _stage(steps: dict[str, np.ndarray], k: int, record: dict[str, np.ndarray], calls: int) -> None:
    """Puts step `k`'s record into the (calls, envs, ...) staging arrays, made at the first step. Text is staged as
    Python strings, so no step's prompt is cut to the width of the first step's."""
    if not steps:
        for key, value in record.items():
            value = np.asarray(value)
            dtype = object if value.dtype.kind in "UO" else value.dtype
            steps[key] = np.zeros((calls, *value.shape), dtype=dtype)
    for key, value in record.items():
        value, array = np.asarray(value), steps[key]
        if value.shape != array.shape[1:]:
            raise ValueError(f"observation field {key!r} changed shape from {array.shape[1:]} to {value.shape}")
        if array.dtype != object and not np.can_cast(value.dtype, array.dtype, casting="same_kind"):
            raise ValueError(f"observation field {key!r} changed dtype from {array.dtype} to {value.dtype}")
        array[k] = value


class Rollout:
    """Collects DAgger data: the beta-mixed policy acts, the expert labels every visited state."""

    def __init__(
        self,
        env: VecEnv,
        student: Policy,
        expert: Policy,
        max_episode_steps: int,
        terminate_on_success: bool = True,
        mixing: str = "env",
        only_save_expert: bool = False,
        gate: QueryGate | None = None,
        only_success: bool = False,
    ):
        if mixing not in ("env", "batch"):
            raise ValueError(f"mixing must be 'env' or 'batch', got {mixing!r}")
        for who, policy in (("expert", expert), ("student", student)):
            check_action_shape(env, policy, who)
        if gate is not None and not hasattr(student, "act_with_uncertainty"):
            raise ConfigError("algorithm.dagger.query: gated needs a student that scores its uncertainty (an mlp "
                              "with actor.model.ensemble_heads >= 2, or pi0)")
        self.env = env
        self.student = student
        self.expert = expert
        self.max_episode_steps = max_episode_steps
        self.terminate_on_success = terminate_on_success
        self.mixing = mixing
        self.only_save_expert = only_save_expert
        self.only_success = only_success
        self.gate = gate

    @classmethod
    def for_run(cls, env: VecEnv, student: Policy, expert: Policy, cfg) -> Rollout:
        """The rollout a run's config asks for (`env.*` episode limits, `algorithm.dagger.*` mixing and queries)."""
        d = cfg.algorithm.dagger
        gate = QueryGate(d.query_threshold, d.query_budget) if d.query == "gated" else None
        return cls(env, student, expert, cfg.env.max_episode_steps, cfg.env.terminate_on_success, d.mixing,
                   d.only_save_expert, gate, d.only_success)

    def collect(self, num_steps: int, beta: float, iteration: int, seed: int, policy_version: int = 0) -> RolloutResult:
        """Runs every env for `num_steps` env steps at expert probability `beta`."""
        env, n = self.env, self.env.num_envs
        chunks = env.num_action_chunks
        coins = np.random.default_rng([seed, _COIN_STREAM, iteration])
        seeds = np.random.default_rng([seed, _SEED_STREAM, iteration])
        timings = {"env": 0.0, "student": 0.0, "expert": 0.0}
        worker_seconds = getattr(env, "worker_seconds", None)
        if worker_seconds is not None:
            worker_seconds()  # what an evaluation spent in between is not this rollout's
        all_envs = np.ones(n, dtype=bool)
        next_episode = 0

        def episode_seeds() -> list[int]:
            return training_seeds(env, [int(s) for s in seeds.integers(*TRAIN_SEED_RANGE, size=n)])

        def new_episode_ids(count: int) -> np.ndarray:
            nonlocal next_episode
            ids = iteration * 2**24 + next_episode + np.arange(count)
            next_episode += count
            return ids

        t = time.perf_counter()
        obs = env.reset(episode_seeds(), all_envs)
        timings["env"] += time.perf_counter() - t
        episode_id = new_episode_ids(n)
        elapsed = np.zeros(n, dtype=np.int64)
        success_once = np.zeros(n, dtype=bool)
        episodes = EpisodeStats()
        succeeded: dict[int, bool] = {}  # episode id -> success so far, for `only_success`

        calls = math.ceil(num_steps / chunks)
        steps: dict[str, np.ndarray] = {}
        queries, scores = 0, []
        if self.gate is not None:
            self.gate.start()
        for k in range(calls):
            # ALGO LOGIC: who acts
            if self.mixing == "env":
                expert_acts = coins.random(n) < beta
            else:
                expert_acts = np.full(n, coins.random() < beta)
            student_rows = ~expert_acts
            expert_label = np.zeros((n, *self.expert.action_shape), dtype=np.float32)
            executed = np.zeros((n, chunks, env.action_dim), dtype=np.float32)

            if self.gate is None:
                # ALGO LOGIC: expert labels (batched), student acts where the coin says so
                label_rows = expert_acts if self.only_save_expert else all_envs
                self._label(obs, label_rows, expert_acts, expert_label, executed, timings)
                self._student_acts(obs, student_rows, executed, timings)
            else:
                # ALGO LOGIC: the student acts and scores itself; the expert labels where it acts and where the
                # gate says the student is unsure
                label_rows = expert_acts.copy()
                score = self._student_acts(obs, student_rows, executed, timings, scored=True)
                if score is not None:
                    scores.append(score)
                    label_rows[student_rows] = self.gate.choose(score, (calls - k) * n * (1.0 - beta))
                self._label(obs, label_rows, expert_acts, expert_label, executed, timings)
            queries += int(label_rows.sum())

            # BOOKKEEPING: remember this step's sample
            record = {
                **flatten_obs(visible(obs, env)),
                "expert_action": expert_label,
                "action": executed,
                "expert_used": expert_acts,
                "labelled": label_rows.copy(),
                "episode_id": episode_id.copy(),
            }
            _stage(steps, k, record, calls)

            # ENV STEP
            t = time.perf_counter()
            obs, success = env.step(executed)
            timings["env"] += time.perf_counter() - t
            success = np.asarray(success, dtype=bool).reshape(n, chunks)
            elapsed += chunks
            success_once |= success.any(axis=1)
            done = elapsed >= self.max_episode_steps
            if self.terminate_on_success:
                done |= success_once
            if done.any():
                for i in np.flatnonzero(done):
                    episodes.add(success_once[i], success[i, -1], elapsed[i])
                    succeeded[int(episode_id[i])] = bool(success_once[i])
                if k < calls - 1:
                    t = time.perf_counter()
                    obs = env.reset(episode_seeds(), done)
                    timings["env"] += time.perf_counter() - t
                    episode_id[done] = new_episode_ids(int(done.sum()))
                    elapsed[done] = 0
                    success_once[done] = False
        if calls:  # episodes the last step did not end are cut short here
            running = ~done
            episodes.unfinished += int(running.sum())
            episodes.unfinished_success += int((success_once & running).sum())
            succeeded.update(zip(episode_id[running].tolist(), success_once[running].tolist()))

        if worker_seconds is not None:
            timings.update({f"worker_{part}": seconds for part, seconds in worker_seconds().items()})
        trajectories = self._split(steps, beta, iteration, policy_version, succeeded if self.only_success else None)
        return RolloutResult(
            trajectories=trajectories,
            episodes=episodes,
            env_steps=calls * chunks * n,
            expert_action_frac=float(steps["expert_used"].mean()) if steps else 0.0,
            timings=timings,
            expert_queries=queries,
            student_uncertainty=float(np.concatenate(scores).mean()) if scores else float("nan"),
        )

    def _student_acts(self, obs: Obs, student_rows: np.ndarray, executed: np.ndarray, timings: dict[str, float],
                      scored: bool = False) -> np.ndarray | None:
        """The student acts on `student_rows` of `obs` (one batched call) and executes its chunk there; `scored`:
        it also scores its uncertainty, returned per row (None where no row is the student's)."""
        if not student_rows.any():
            return None
        t = time.perf_counter()
        rows = np.flatnonzero(student_rows)
        seen = take(visible(obs, self.env, self.student), rows)
        score = None
        if scored:
            actions, score = self.student.act_with_uncertainty(seen)
            score = np.asarray(score, dtype=np.float64).reshape(len(rows))
        else:
            actions = self.student.act(seen)
        actions = checked_actions(actions, len(rows), self.student, "student")
        executed[rows] = actions[:, :self.env.num_action_chunks]
        timings["student"] += time.perf_counter() - t
        return score

    def _label(self, obs: Obs, label_rows: np.ndarray, expert_acts: np.ndarray, expert_label: np.ndarray,
               executed: np.ndarray, timings: dict[str, float]) -> None:
        """The expert labels `label_rows` of `obs` (one batched call) and executes its chunk where it acts."""
        if not label_rows.any():
            return
        t = time.perf_counter()
        rows = np.flatnonzero(label_rows)
        seen = take(visible(obs, self.env, self.expert), rows)
        expert_label[rows] = checked_actions(self.expert.act(seen), len(rows), self.expert, "expert")
        timings["expert"] += time.perf_counter() - t
        executed[expert_acts] = expert_label[expert_acts, :self.env.num_action_chunks]

    def _split(self, steps: dict[str, np.ndarray], beta: float, iteration: int, version: int,
               succeeded: dict[int, bool] | None = None) -> list[dict]:
        """Per env, cuts the (calls, envs) step arrays into labelled trajectories, one per episode segment; with
        `succeeded` (episode id -> its outcome; `only_success`), only the segments of episodes that succeeded."""
        trajectories = []
        if not steps:
            return trajectories
        n = steps["episode_id"].shape[1]
        for i in range(n):
            keep = steps["labelled"][:, i]
            episode = steps["episode_id"][:, i]
            boundaries = np.flatnonzero(np.diff(episode)) + 1
            for rows in np.split(np.arange(len(episode)), boundaries):
                if succeeded is not None and not succeeded[int(episode[rows[0]])]:
                    continue
                rows = rows[keep[rows]]
                if len(rows) == 0:
                    continue
                sample = {key: v[rows, i] for key, v in steps.items() if key != "labelled"}
                sample["beta"] = np.full(len(rows), beta, dtype=np.float32)
                sample["iteration"] = np.full(len(rows), iteration, dtype=np.int32)
                sample["policy_version"] = np.full(len(rows), version, dtype=np.int32)
                trajectories.append(sample)
        return trajectories


@dataclass
class Video:
    """One recorded evaluation episode, encoded (so that a remote worker sends kilobytes, not frames)."""

    seed: int
    success: bool
    frames: int
    mp4: bytes

    @property
    def name(self) -> str:
        return f"seed{self.seed:07d}-{'success' if self.success else 'failure'}.mp4"


@dataclass
class EvalResult:
    episodes: EpisodeStats
    seconds: float
    tasks: list = field(default_factory=list)
    """per episode: the env's task name, or None (an env without `episode_tasks`)"""
    videos: list = field(default_factory=list)
    """`Video`s of the first episodes asked for"""
    no_video: bool = False
    """video was asked for and the env renders no frames"""

    @classmethod
    def merge(cls, parts: list["EvalResult"], seconds: float) -> "EvalResult":
        """One result from parts evaluated apart, which took `seconds` of wall time together."""
        merged = cls(EpisodeStats(), seconds)
        for part in parts:
            merged.episodes.extend(part.episodes)
            merged.tasks.extend(part.tasks)
            merged.videos.extend(part.videos)
            merged.no_video |= part.no_video
        return merged

    def summary(self) -> dict[str, float]:
        from dagger_cli.core.engine.stats import wilson_interval

        n = self.episodes.count
        once = self.episodes.rate("success_once")
        low, high = wilson_interval(int(round(once * n)), n)
        summary = {
            "success_once": once,
            "success_at_end": self.episodes.rate("success_at_end"),
            "episodes": n,
            "success_once_ci95": [low, high],
            "episode_len": float(np.mean(self.episodes.length)) if n else float("nan"),
            "seconds": self.seconds,
        }
        if any(t is not None for t in self.tasks):
            summary["tasks"] = self.per_task()
        return summary

    def per_task(self) -> dict[str, dict[str, float]]:
        """{task: {success_once, episodes}}, in the order tasks first appear."""
        out: dict[str, dict[str, float]] = {}
        for task, success in zip(self.tasks, self.episodes.success_once):
            entry = out.setdefault(str(task), {"success_once": 0.0, "episodes": 0})
            entry["success_once"] += success
            entry["episodes"] += 1
        for entry in out.values():
            entry["success_once"] /= entry["episodes"]
        return out


def evaluate(env: VecEnv, policy: Policy, seeds: Sequence[int], max_episode_steps: int, record: int = 0) -> EvalResult:
    """Runs `policy` alone for one full-length episode per reset seed (no early termination), noting each episode's
    task where the env names it (`episode_tasks`) and recording the first `record` episodes where it renders frames
    (`video_frames`); with `record` = 0 no frame is asked for."""
    check_action_shape(env, policy, "policy")
    start = time.perf_counter()
    result = EvalResult(EpisodeStats(), 0.0)
    compute_privileged = getattr(env, "compute_privileged", None)
    if compute_privileged is not None:  # no simulated expert labels while a policy that cannot read them acts
        compute_privileged(bool(getattr(policy, "reads_privileged", False)))
    try:
        _evaluate_into(result, env, policy, seeds, max_episode_steps, record)
    finally:
        if compute_privileged is not None:
            compute_privileged(True)
    result.seconds = time.perf_counter() - start
    return result


def episode_order(env: VecEnv, seeds: Sequence[int]) -> list[int]:
    """The order evaluation runs the episodes in (indices into `seeds`, in rounds of `env.num_envs`, env i taking
    the round's i-th). Where the env names an episode's group (`episode_group(seed)`, e.g. a LIBERO task, whose change
    rebuilds a worker's simulation), each env is dealt a contiguous block of the seeds sorted by group, so it changes
    group a few times instead of at nearly every episode; otherwise the given order."""
    group_of = getattr(env, "episode_group", None)
    if group_of is None:
        return list(range(len(seeds)))
    n = env.num_envs
    ranked = sorted(range(len(seeds)), key=lambda j: group_of(int(seeds[j])))
    size = math.ceil(len(seeds) / n)
    blocks = [ranked[i * size : (i + 1) * size] for i in range(n)]
    return [block[r] for r in range(size) for block in blocks if r < len(block)]


def _evaluate_into(result: EvalResult, env: VecEnv, policy: Policy, seeds: Sequence[int], max_episode_steps: int,
                   record: int) -> None:
    """Episodes in `episode_order`, results kept in the order of `seeds` (the first `record` of them filmed)."""
    n, chunks = env.num_envs, env.num_action_chunks
    frames_of = getattr(env, "video_frames", None) if record else None
    result.no_video = bool(record) and frames_of is None
    tasks_of = getattr(env, "episode_tasks", None)
    seeds = list(seeds)
    order = episode_order(env, seeds)
    outcomes: dict[int, tuple] = {}
    videos: dict[int, Video] = {}
    for first in range(0, len(order), n):
        index = order[first : first + n]
        active = len(index)
        batch = [seeds[j] for j in index]
        batch = batch + [batch[-1]] * (n - active)  # pad the last round; padded envs are not counted
        obs = env.reset(batch, np.ones(n, dtype=bool))
        tasks = list(tasks_of()) if tasks_of is not None else [None] * n
        filming = [i for i in range(active) if index[i] < record] if frames_of is not None else []
        film: dict[int, list[np.ndarray]] = {i: [] for i in filming}
        _film(film, frames_of, obs)
        success_once = np.zeros(n, dtype=bool)
        success = np.zeros((n, chunks), dtype=bool)
        elapsed = 0
        while elapsed < max_episode_steps:
            actions = checked_actions(policy.act(visible(obs, env, policy)), n, policy, "policy")
            obs, success = env.step(actions[:, :chunks])
            success = np.asarray(success, dtype=bool).reshape(n, chunks)
            success_once |= success.any(axis=1)
            elapsed += chunks
            _film(film, frames_of, obs)
        for i in range(active):
            outcomes[index[i]] = (success_once[i], success[i, -1], elapsed, tasks[i])
        for i, frames in film.items():
            from dagger_cli.core.io.video import encode_mp4

            stack = np.stack(frames)
            mp4 = encode_mp4(stack, getattr(env, "video_fps", 10.0))
            videos[index[i]] = Video(int(batch[i]), bool(success_once[i]), len(stack), mp4)
    for j in range(len(seeds)):
        once, at_end, elapsed, task = outcomes[j]
        result.episodes.add(once, at_end, elapsed)
        result.tasks.append(task)
    result.videos.extend(videos[j] for j in sorted(videos))


def _film(film: dict[int, list[np.ndarray]], frames_of, obs: Obs) -> None:
    """Appends this step's frame of each filmed env: its cameras side by side."""
    if not film:
        return
    from dagger_cli.core.io.video import side_by_side

    frames = side_by_side(frames_of(obs))
    for i, kept in film.items():
        kept.append(frames[i])
