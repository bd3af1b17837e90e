"""The synchronous DAgger runner: collect → add → train → evaluate → checkpoint, one iteration at a time."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dagger_cli.core import checkpoint
from dagger_cli.core.beta import BetaSchedule
from dagger_cli.core.config import Config
from dagger_cli.core.learner import Learner
from dagger_cli.core.metrics import MetricsLogger
from dagger_cli.core.protocols import Policy, TrainablePolicy, VecEnv
from dagger_cli.core.replay_buffer import ReplayBuffer, unflatten_obs
from dagger_cli.core.rollout import Rollout, evaluate


@contextmanager
def torch_threads(n: int = 1):
    """`n` torch threads inside the block. One while env workers run: batch-of-a-few inference gains nothing from
    more, and idle OpenMP threads spinning on the other cores slow the simulator down."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def evaluate_policy(env: VecEnv, policy: Policy, seeds: list[int], max_episode_steps: int):
    """`rollout.evaluate` on one torch thread, with sampling policies (π₀'s flow-matching noise comes from torch's
    global generator) drawing from a generator seeded by the first reset seed: an evaluation repeats exactly, and
    training's random stream is left as it was."""
    with torch_threads(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds[0] if seeds else 0)
        return evaluate(env, policy, seeds, max_episode_steps)


def fit_norm_stats_if_needed(student: TrainablePolicy, buffer: ReplayBuffer) -> bool:
    """A student that has no normalisation stats (a new task) takes them from the expert-labelled data stored so
    far, i.e. the first iteration's; see `TrainablePolicy.fit_norm_stats`."""
    if not getattr(student, "needs_norm_stats", False) or buffer.size == 0:
        return False
    stored = buffer.stored()
    student.fit_norm_stats(unflatten_obs(stored), stored["expert_action"])
    return True


def _eval_row(prefix: str, result: dict[str, Any]) -> dict[str, float]:
    """Metric names for an evaluation summary: `eval/success_once`, ...; durations go under `time/`."""
    row = {f"{prefix}/{k}": v for k, v in result.items() if k not in ("seconds", "success_once_ci95")}
    row[f"time/{prefix}_s"] = result["seconds"]
    return row


class RunnerHooks:
    """What a front end wants to hear about; the default hears nothing."""

    def phase(self, text: str) -> None:
        """A new phase started (collect, train, eval, save)."""

    def evaluated(self, label: str, result: dict[str, Any]) -> None:
        """An evaluation before training finished (`label`: "initial student" or "expert")."""

    def iteration_done(self, iteration: int, total: int, metrics: dict[str, float]) -> None:
        """Iteration `iteration` (1-based) of `total` finished with `metrics`."""


@dataclass
class RunResults:
    """What the run has measured so far; checkpointed with everything else."""

    student_init: dict[str, Any] | None = None
    expert: dict[str, Any] | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    env_steps: int = 0
    collections: int = 0
    """async: rollout collections started (each seeds its own episodes)"""


class SyncRunner:
    """Runs DAgger iterations on one process: the env workers and the learner take turns."""

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        env: VecEnv,
        student: TrainablePolicy,
        expert: Policy,
        hooks: RunnerHooks | None = None,
        tensorboard: bool = True,
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.env = env
        self.student = student
        self.expert = expert
        self.hooks = hooks or RunnerHooks()
        self.tensorboard = tensorboard
        d = cfg.algorithm.dagger
        self.beta = BetaSchedule.from_config(d)
        self.buffer = ReplayBuffer(cfg.algorithm.replay_buffer.sample_window_size)
        self.learner = Learner(student, cfg.actor, cfg.seed, cfg.runner.max_epochs * cfg.actor.update_epoch)
        self.rollout = None if env is None else Rollout(  # async runners collect on their workers
            env,
            student,
            expert,
            max_episode_steps=cfg.env.max_episode_steps,
            terminate_on_success=cfg.env.terminate_on_success,
            mixing=d.mixing,
            only_save_expert=d.only_save_expert,
        )
        self.iteration = 0
        """iterations completed"""
        self.results = RunResults()
        self.stop_requested = False
        """set (e.g. by a Ctrl-C handler) to stop cleanly after the current iteration"""
        self._resumed_from: int | None = None
        self._last_saved: int | None = None
        self._saved_evals = 0
        self._wall_start = time.perf_counter()

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / "checkpoints"

    # EVALUATION
    def evaluate(self, policy: Policy) -> dict[str, Any]:
        e = self.cfg.env
        return evaluate_policy(self.env, policy, e.eval.seeds, e.max_episode_steps).summary()

    # CHECKPOINT
    def save(self) -> Path:
        self.hooks.phase("saving checkpoint")
        learner_tensors, learner_meta = self.learner.state_dict()
        learner_tensors["rng/torch"] = torch.get_rng_state()
        buffer_arrays, buffer_meta = self.buffer.state_dict()
        state = {
            "beta": self.beta(max(0, self.iteration - 1)),
            "next_beta": self.beta(self.iteration),
            "policy_version": self.iteration,
            "learner": learner_meta,
            "replay_buffer": buffer_meta,
            "results": self.results.__dict__,
        }
        self._last_saved = self.iteration
        self._saved_evals = len(self.results.evals)
        return checkpoint.save_checkpoint(
            self.checkpoint_root,
            self.iteration,
            torch_tensors={"student": self.student.state_dict(), "learner": learner_tensors},
            numpy_arrays={"replay_buffer": buffer_arrays},
            state=state,
            keep=self.cfg.runner.keep_checkpoints,
        )

    def restore(self, ckpt: Path) -> None:
        """Loads everything a checkpoint holds; the next `run` continues at its iteration with its beta."""
        state = checkpoint.read_state(ckpt)
        self.student.load_state_dict(checkpoint.read_tensors(ckpt, "student"))
        learner = checkpoint.read_tensors(ckpt, "learner")
        torch.set_rng_state(learner.pop("rng/torch"))
        self.learner.load_state_dict(learner, state["learner"])
        self.buffer.load_state_dict(checkpoint.read_tensors(ckpt, "replay_buffer", "np"), state["replay_buffer"])
        self.results = RunResults(**state["results"])
        self.iteration = int(state["iteration"])
        self._resumed_from = self._last_saved = self.iteration

    # MAIN LOOP
    def run(self, started_at: float | None = None) -> dict[str, Any]:
        """Runs until runner.max_epochs or a stop request; `started_at` (perf_counter) dates the wall time."""
        cfg, r = self.cfg, self.cfg.runner
        wall_start = self._wall_start = started_at if started_at is not None else time.perf_counter()
        metrics = MetricsLogger(self.run_dir, resume_step=self._resumed_from, tensorboard=self.tensorboard)
        try:
            if self._resumed_from is None:
                metrics.add_text("config", "```\n" + cfg.to_yaml() + "\n```")
                self._initial_evaluations(metrics)
            while self.iteration < r.max_epochs and not self.stop_requested:
                self._iteration(metrics)
            if self.iteration > 0 and self._last_saved != self.iteration:
                self.save()
        finally:
            metrics.close()
        summary = self.summary(wall_time_s=time.perf_counter() - wall_start)
        if self.iteration >= r.max_epochs:
            checkpoint.write_json(self.run_dir / "summary.json", summary)
        return summary

    def _initial_evaluations(self, metrics: MetricsLogger) -> None:
        r = self.cfg.runner
        row: dict[str, float] = {}
        if r.eval_student_init and self.results.student_init is None:
            self.hooks.phase("evaluating the initial student")
            self.results.student_init = self.evaluate(self.student)
            self.hooks.evaluated("initial student", self.results.student_init)
            row.update(_eval_row("eval", self.results.student_init))
        if r.eval_expert and self.results.expert is None:
            self.hooks.phase("evaluating the expert")
            self.results.expert = self.evaluate(self.expert)
            self.hooks.evaluated("expert", self.results.expert)
            row.update(_eval_row("eval_expert", self.results.expert))
        if row:
            metrics.log(0, row)

    def _iteration(self, metrics: MetricsLogger) -> None:
        cfg, k = self.cfg, self.iteration
        start = time.perf_counter()
        beta = self.beta(k)

        # ROLLOUT: beta-mixed actions, expert labels
        self.hooks.phase(f"collecting (beta {beta:.3f})")
        with torch_threads():
            result = self.rollout.collect(
                cfg.env.max_steps_per_rollout_epoch, beta, iteration=k, seed=cfg.seed, policy_version=k
            )
        for trajectory in result.trajectories:
            self.buffer.add(trajectory)
        if fit_norm_stats_if_needed(self.student, self.buffer):
            self.hooks.phase("student norm stats computed from the expert's labels")
        self.results.env_steps += result.env_steps
        collected = time.perf_counter()

        # LEARNER: update_epoch steps once the buffer holds min_buffer_size samples
        row: dict[str, float] = {}
        if self.buffer.size >= cfg.algorithm.replay_buffer.min_buffer_size and cfg.actor.update_epoch > 0:
            self.hooks.phase("training")
            row.update(self.learner.train(self.buffer, cfg.actor.update_epoch))
        trained = time.perf_counter()
        self.iteration = k + 1

        # EVAL: student only
        self._evaluate_if_due(row)
        evaluated = time.perf_counter()
        self.results.train_time_s += evaluated - start

        ep = result.episodes
        row.update(
            {
                **ep.metrics(),
                "train/dagger/beta": beta,
                "train/dagger/expert_action_frac": result.expert_action_frac,
                "train/replay_buffer/num_trajectories": self.buffer.num_trajectories,
                "train/replay_buffer/total_samples": self.buffer.total_samples,
                "train/replay_buffer/cache_size": self.buffer.size,
                "time/rollout_s": collected - start,
                "time/rollout_env_s": result.timings["env"],
                "time/rollout_student_s": result.timings["student"],
                "time/rollout_expert_s": result.timings["expert"],
                "time/train_s": trained - collected,
                "time/iteration_s": evaluated - start,
                "time/elapsed_s": evaluated - self._wall_start,
                "time/env_steps": self.results.env_steps,
                "time/env_steps_per_s": result.env_steps / max(collected - start, 1e-9),
            }
        )
        metrics.log(self.iteration, row)
        save = cfg.runner.save_interval
        if save > 0 and self.iteration % save == 0:
            self.save()
        self.hooks.iteration_done(self.iteration, cfg.runner.max_epochs, row)

    def _eval_due(self) -> bool:
        """Student-only evaluation is due every runner.val_check_interval iterations and after the last."""
        interval, last = self.cfg.runner.val_check_interval, self.cfg.runner.max_epochs
        return self.iteration == last or (interval > 0 and self.iteration % interval == 0)

    def _evaluate_if_due(self, row: dict[str, float]) -> None:
        """Adds eval/* to `row` when an evaluation is due."""
        if self._eval_due():
            self.hooks.phase("evaluating the student")
            ev = self.evaluate(self.student)
            self.results.evals.append({"iteration": self.iteration, **ev})
            row.update(_eval_row("eval", ev))

    def summary(self, wall_time_s: float | None = None) -> dict[str, Any]:
        res = self.results
        final = res.evals[-1] if res.evals else None
        return {
            "preset": self.cfg.name,
            "seed": self.cfg.seed,
            "run_dir": str(self.run_dir),
            "iterations": self.iteration,
            "max_epochs": self.cfg.runner.max_epochs,
            "student_init_sr": res.student_init["success_once"] if res.student_init else None,
            "expert_sr": res.expert["success_once"] if res.expert else None,
            "student_final_sr": final["success_once"] if final else None,
            "student_final_success_at_end": final["success_at_end"] if final else None,
            "student_final_ci95": final["success_once_ci95"] if final else None,
            "eval_episodes": final["episodes"] if final else None,
            "train_time_s": res.train_time_s,
            "wall_time_s": wall_time_s,
            "env_steps": res.env_steps,
        }
