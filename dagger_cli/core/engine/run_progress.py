"""How far a run has got: iterations done, rollout collections started, env steps and training time counted, a
clean stop asked for, the wall clock; and the summary of it all (`summary.json`, which `dagger report` reads).

The runners move it on through its methods; a checkpoint saves and restores it (`RunCheckpoint`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagger_cli.core.io import process
from dagger_cli.core.config import Config
from dagger_cli.core.io.run_dir import write_summary

if TYPE_CHECKING:
    from dagger_cli.core.engine.run_evaluation import RunEvaluation


class RunProgress:
    def __init__(self, cfg: Config, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.iteration = 0
        """iterations completed (= the version of the student's weights)"""
        self.env_steps = 0
        self.expert_queries = 0
        """observations the expert was asked to label, all iterations"""
        self.train_time_s = 0.0
        self.collections = 0
        """async: rollout collections started (each seeds its own episodes)"""
        self.stop_requested = False
        """set by `request_stop` (a Ctrl-C handler) to stop cleanly after the current iteration"""
        self.resumed_from: int | None = None
        """the iteration of the checkpoint the run was resumed from"""
        self.wall_start = time.perf_counter()

    @property
    def finished(self) -> bool:
        return self.iteration >= self.cfg.runner.max_epochs

    @property
    def going_on(self) -> bool:
        """Neither finished nor asked to stop: another iteration (or collection) may start."""
        return not self.finished and not self.stop_requested

    def start_clock(self, at: float | None = None) -> None:
        """The wall time counts from `at` (a `time.perf_counter()`; default now)."""
        self.wall_start = at if at is not None else time.perf_counter()

    def elapsed(self, at: float | None = None) -> float:
        """Wall time from the start to `at` (a `time.perf_counter()`; default now)."""
        return (at if at is not None else time.perf_counter()) - self.wall_start

    def request_stop(self) -> None:
        self.stop_requested = True

    def advance(self) -> int:
        """The learner finished one more iteration; returns its number (the new weights' version)."""
        self.iteration += 1
        return self.iteration

    def count_train_time(self, seconds: float) -> None:
        """An iteration's collecting, training and evaluating took `seconds`."""
        self.train_time_s += seconds

    def count_env_steps(self, steps: int) -> None:
        self.env_steps += steps

    def count_expert_queries(self, queries: int) -> None:
        self.expert_queries += queries

    def next_collection(self) -> int:
        """A new collection's index (unique in the run: it seeds the collection's episodes and coins)."""
        self.collections += 1
        return self.collections - 1

    # CHECKPOINT
    def state_dict(self) -> dict[str, Any]:
        return {"train_time_s": self.train_time_s, "env_steps": self.env_steps, "collections": self.collections,
                "expert_queries": self.expert_queries}

    def restore(self, iteration: int, results: dict[str, Any]) -> None:
        self.iteration = self.resumed_from = int(iteration)
        self.train_time_s = results["train_time_s"]
        self.env_steps = results["env_steps"]
        self.collections = results.get("collections", 0)
        self.expert_queries = results.get("expert_queries", 0)

    # SUMMARY
    def summary(self, evaluation: RunEvaluation, status: str | None = None) -> dict[str, Any]:
        init, expert, final = evaluation.student_init, evaluation.expert, evaluation.final
        if status is None:
            status = "finished" if self.finished else "stopped"
        return {
            "preset": self.cfg.name,
            "seed": self.cfg.seed,
            "run_dir": str(self.run_dir),
            "status": status,
            "iterations": self.iteration,
            "max_epochs": self.cfg.runner.max_epochs,
            "student_init_sr": init["success_once"] if init else None,
            "expert_sr": expert["success_once"] if expert else None,
            "student_final_sr": final["success_once"] if final else None,
            "student_final_success_at_end": final["success_at_end"] if final else None,
            "student_final_ci95": final["success_once_ci95"] if final else None,
            "student_final_iteration": final["iteration"] if final else None,
            "student_final_tasks": final.get("tasks") if final else None,
            "eval_episodes": final["episodes"] if final else None,
            "train_time_s": self.train_time_s,
            "wall_time_s": self.elapsed(),
            "env_steps": self.env_steps,
            "expert_queries": self.expert_queries,
            **process.identity(),  # the writer: a reader tells a killed run (`running`, its process gone) by it
        }

    def write_summary(self, evaluation: RunEvaluation, status: str | None = None) -> dict[str, Any]:
        """`summary.json`: `running` with each checkpoint of a run under way (or killed: `run_dir.read_summary` says
        `died` when the writer's process is gone), `stopped` after a clean stop, `finished` after the last
        iteration."""
        summary = self.summary(evaluation, status)
        write_summary(self.run_dir, summary)
        return summary
