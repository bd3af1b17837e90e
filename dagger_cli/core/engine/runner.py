"""The synchronous DAgger runner: collect → add → train → evaluate → checkpoint, one iteration at a time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dagger_cli.core.config import Config
from dagger_cli.core.io.metrics import MetricsLogger
from dagger_cli.core.protocols import Policy, RunnerHooks, TrainablePolicy, VecEnv
from dagger_cli.core.engine.rollout import Rollout, sample_shapes, torch_threads
from dagger_cli.core.engine.run_evaluation import evaluate_policy
from dagger_cli.core.engine.run_state import RunState, SeedSamples


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
        seed_samples: SeedSamples | None = None,
    ):
        self.state = RunState(cfg, run_dir, student, hooks, seed_samples,
                              sample_shapes=lambda: sample_shapes(env, expert))
        self.env = env
        self.expert = expert
        self.tensorboard = tensorboard
        self.rollout = Rollout.for_run(env, student, expert, cfg)

    def evaluate(self, policy: Policy, final: bool = False):
        """Policy alone on the evaluation seeds (all of them when `final`, else env.eval.interim_episodes), its
        first runner.eval_video_episodes episodes filmed."""
        cfg = self.state.cfg
        seeds = cfg.env.eval.seeds_for(final)
        return evaluate_policy(self.env, policy, seeds, cfg.env.max_episode_steps, cfg.runner.eval_video_episodes)

    # MAIN LOOP
    def run(self, started_at: float | None = None) -> dict[str, Any]:
        """Runs until runner.max_epochs or a stop request; `started_at` (perf_counter) dates the wall time. Returns
        the summary it writes."""
        s = self.state
        metrics = s.start(self.tensorboard, started_at)
        try:
            if s.progress.resumed_from is None:
                self._initial_evaluations(metrics)
            while s.progress.going_on:
                self._iteration(metrics)
            if s.progress.iteration > 0 and s.checkpoint.last_saved != s.progress.iteration:
                s.save()
        finally:
            metrics.close()
            s.close()
        return s.write_summary()

    def _initial_evaluations(self, metrics: MetricsLogger) -> None:
        s = self.state
        row: dict[str, float] = {}
        for what in s.evaluation.initial_pending():
            s.hooks.phase(f"evaluating the {what}")
            row.update(s.evaluation.record_initial(what, self.evaluate(self.expert if what == "expert" else s.student)))
        if row:
            metrics.log(0, row, videos=s.evaluation.take_videos())

    def _iteration(self, metrics: MetricsLogger) -> None:
        s = self.state
        cfg, progress, k = s.cfg, s.progress, s.progress.iteration
        start = time.perf_counter()
        beta = s.beta(k)

        # ROLLOUT: beta-mixed actions, expert labels
        s.hooks.phase(f"collecting (beta {beta:.3f})")
        with torch_threads():
            result = self.rollout.collect(
                cfg.env.max_steps_per_rollout_epoch, beta, iteration=k, seed=cfg.seed, policy_version=k
            )
        s.add(result.trajectories, fit=k + 1 >= cfg.norm_stats_iterations)
        progress.count_env_steps(result.env_steps)
        progress.count_expert_queries(result.expert_queries)
        collected = time.perf_counter()

        # LEARNER: update_epoch steps once the buffer holds min_buffer_size samples
        row: dict[str, float] = {}
        if s.ready_to_train() and cfg.actor.update_epoch > 0:
            s.hooks.phase("training")
            row.update(s.train())
        trained = time.perf_counter()
        iteration = progress.advance()

        # EVAL: student only
        if s.evaluation.due(iteration, progress.finished):
            s.hooks.phase("evaluating the student")
            row.update(s.evaluation.record(iteration, self.evaluate(s.student, final=progress.finished)))
        evaluated = time.perf_counter()
        progress.count_train_time(evaluated - start)

        row.update(
            {
                **result.episodes.metrics(),
                "train/dagger/beta": beta,
                "train/dagger/expert_action_frac": result.expert_action_frac,
                **result.query_metrics(self.env.num_action_chunks),
                "train/dagger/expert_queries_total": progress.expert_queries,
                **s.buffer_metrics(),
                "time/rollout_s": collected - start,
                **{f"time/rollout_{part}_s": seconds for part, seconds in result.timings.items()},
                "time/train_s": trained - collected,
                "time/iteration_s": evaluated - start,
                "time/elapsed_s": progress.elapsed(evaluated),
                "time/env_steps": progress.env_steps,
                "time/env_steps_per_s": result.env_steps / max(collected - start, 1e-9),
            }
        )
        metrics.log(iteration, row, videos=s.evaluation.take_videos())
        save = cfg.runner.save_interval
        if save > 0 and iteration % save == 0:
            s.save()
        s.hooks.iteration_done(iteration, cfg.runner.max_epochs, row)
