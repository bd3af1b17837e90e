"""The synchronous DAgger runner: collect → add → train → evaluate → checkpoint, one iteration at a time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dagger_cli.core.config import Config
from dagger_cli.core.metrics import MetricsLogger
from dagger_cli.core.protocols import Policy, TrainablePolicy, VecEnv
from dagger_cli.core.rollout import Rollout, sample_shapes
from dagger_cli.core.run_state import RunnerHooks, RunState, SeedSamples, eval_row, evaluate_policy, torch_threads


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
        seed: SeedSamples | None = None,
    ):
        self.state = RunState(cfg, run_dir, student, hooks, seed)
        self.env = env
        self.expert = expert
        self.state.sample_shapes = lambda: sample_shapes(env, expert)
        self.tensorboard = tensorboard
        d = cfg.algorithm.dagger
        self.rollout = Rollout(
            env,
            student,
            expert,
            max_episode_steps=cfg.env.max_episode_steps,
            terminate_on_success=cfg.env.terminate_on_success,
            mixing=d.mixing,
            only_save_expert=d.only_save_expert,
        )

    def evaluate(self, policy: Policy, label: str, final: bool = False) -> dict[str, Any]:
        """Policy alone on the evaluation seeds (all of them when `final`, else env.eval.interim_episodes); its
        first runner.eval_video_episodes episodes filmed into `videos/<label>/`."""
        s = self.state
        e = s.cfg.env
        seeds = e.eval.seeds_for(final)
        result = evaluate_policy(self.env, policy, seeds, e.max_episode_steps, s.cfg.runner.eval_video_episodes)
        s.keep_videos(result, label)
        return result.summary()

    # MAIN LOOP
    def run(self, started_at: float | None = None) -> dict[str, Any]:
        """Runs until runner.max_epochs or a stop request; `started_at` (perf_counter) dates the wall time. Returns
        the summary it writes."""
        s = self.state
        s.wall_start = started_at if started_at is not None else time.perf_counter()
        metrics = s.start(self.tensorboard)
        try:
            if s.resumed_from is None:
                self._initial_evaluations(metrics)
            while not s.finished and not s.stop_requested:
                self._iteration(metrics)
            if s.iteration > 0 and s.last_saved != s.iteration:
                s.save()
        finally:
            metrics.close()
            s.close()
        return s.write_summary()

    def _initial_evaluations(self, metrics: MetricsLogger) -> None:
        s, r = self.state, self.state.cfg.runner
        row: dict[str, float] = {}
        if r.eval_student_init and s.results.student_init is None:
            s.hooks.phase("evaluating the initial student")
            s.results.student_init = self.evaluate(s.student, str(s.iteration))
            s.hooks.evaluated("initial student", s.results.student_init)
            row.update(eval_row("eval", s.results.student_init))
        if r.eval_expert and s.results.expert is None:
            s.hooks.phase("evaluating the expert")
            s.results.expert = self.evaluate(self.expert, "expert")
            s.hooks.evaluated("expert", s.results.expert)
            row.update(eval_row("eval_expert", s.results.expert))
        if row:
            metrics.log(0, row)

    def _iteration(self, metrics: MetricsLogger) -> None:
        s = self.state
        cfg, k = s.cfg, s.iteration
        start = time.perf_counter()
        beta = s.beta(k)

        # ROLLOUT: beta-mixed actions, expert labels
        s.hooks.phase(f"collecting (beta {beta:.3f})")
        with torch_threads():
            result = self.rollout.collect(
                cfg.env.max_steps_per_rollout_epoch, beta, iteration=k, seed=cfg.seed, policy_version=k
            )
        s.add(result.trajectories)
        s.results.env_steps += result.env_steps
        collected = time.perf_counter()

        # LEARNER: update_epoch steps once the buffer holds min_buffer_size samples
        row: dict[str, float] = {}
        if s.ready_to_train() and cfg.actor.update_epoch > 0:
            s.hooks.phase("training")
            row.update(s.train())
        trained = time.perf_counter()
        s.iteration = k + 1

        # EVAL: student only
        if s.eval_due():
            s.hooks.phase("evaluating the student")
            row.update(s.record_eval(s.iteration, self.evaluate(s.student, str(s.iteration), final=s.finished)))
        evaluated = time.perf_counter()
        s.results.train_time_s += evaluated - start

        row.update(
            {
                **result.episodes.metrics(),
                "train/dagger/beta": beta,
                "train/dagger/expert_action_frac": result.expert_action_frac,
                **s.buffer_metrics(),
                "time/rollout_s": collected - start,
                **{f"time/rollout_{part}_s": seconds for part, seconds in result.timings.items()},
                "time/train_s": trained - collected,
                "time/iteration_s": evaluated - start,
                "time/elapsed_s": evaluated - s.wall_start,
                "time/env_steps": s.results.env_steps,
                "time/env_steps_per_s": result.env_steps / max(collected - start, 1e-9),
            }
        )
        metrics.log(s.iteration, row)
        save = cfg.runner.save_interval
        if save > 0 and s.iteration % save == 0:
            s.save()
        s.hooks.iteration_done(s.iteration, cfg.runner.max_epochs, row)
