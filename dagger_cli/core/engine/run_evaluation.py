"""A run's evaluations: the initial student and the expert before training, the student after iterations; each
policy alone on the fixed evaluation seeds (`evaluate_policy`), its filmed episodes under `videos/<label>/`, its
metric row, and its result kept for the summary and the checkpoint.

The runners evaluate (sync: on its env; async: in chunks on the rollout workers) and hand the results here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagger_cli.core.config import Config
from dagger_cli.core.protocols import Policy, RunnerHooks, VecEnv
from dagger_cli.core.engine.rollout import evaluate, torch_threads
from dagger_cli.core.io.run_dir import VIDEOS_DIR

INITIAL = {"initial student": ("student_init", "eval", "0"), "expert": ("expert", "eval_expert", "expert")}
"""the evaluations before training: what -> (the result's name, the metrics' prefix, the videos' label)"""


def evaluate_policy(env: VecEnv, policy: Policy, seeds: list[int], max_episode_steps: int, record: int = 0):
    """`rollout.evaluate` on one torch thread, with sampling policies (a flow-matching student draws its noise from
    torch's global generator) drawing from a generator seeded by the first reset seed: an evaluation repeats
    exactly, and training's random stream is left as it was."""
    import torch

    with torch_threads(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds[0] if seeds else 0)
        return evaluate(env, policy, seeds, max_episode_steps, record)


def eval_row(prefix: str, result: dict[str, Any]) -> dict[str, float]:
    """Metric names for an evaluation summary: `eval/success_once`, ..., `eval/task/<task>/success_once` for an env
    that names its tasks; durations go under `time/`."""
    row = {f"{prefix}/{k}": v for k, v in result.items() if k not in ("seconds", "success_once_ci95", "tasks")}
    for task, entry in result.get("tasks", {}).items():
        row[f"{prefix}/task/{task}/success_once"] = entry["success_once"]
    row[f"time/{prefix}_s"] = result["seconds"]
    return row


def save_videos(result, folder: Path) -> list[Path]:
    """An evaluation's recorded episodes as mp4 files in `folder` (seed and outcome in the name)."""
    if not result.videos:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for video in result.videos:
        path = folder / video.name
        path.write_bytes(video.mp4)
        paths.append(path)
    return paths


class RunEvaluation:
    def __init__(self, cfg: Config, run_dir: Path, hooks: RunnerHooks):
        self.cfg, self.run_dir, self.hooks = cfg, Path(run_dir), hooks
        self.student_init: dict[str, Any] | None = None
        self.expert: dict[str, Any] | None = None
        self.evals: list[dict[str, Any]] = []
        """the student's evaluations after iterations, oldest first (each with its `iteration`)"""
        self._unlogged_videos: dict[str, list[Path]] = {}
        self._said_no_video = False

    @property
    def final(self) -> dict[str, Any] | None:
        return self.evals[-1] if self.evals else None

    def due(self, iteration: int, finished: bool) -> bool:
        """Student-only evaluation is due every runner.val_check_interval iterations and after the last."""
        interval = self.cfg.runner.val_check_interval
        return finished or (interval > 0 and iteration % interval == 0)

    def initial_pending(self) -> list[str]:
        """The evaluations before training that the config asks for and the run does not hold yet ("initial
        student", "expert")."""
        r = self.cfg.runner
        wanted = {"initial student": r.eval_student_init, "expert": r.eval_expert}
        return [what for what, on in wanted.items() if on and getattr(self, INITIAL[what][0]) is None]

    def keep_videos(self, result, label: str, prefix: str) -> None:
        """The evaluation's videos under `RUN_DIR/videos/<label>/`, held for the next metrics row as
        `<prefix>/videos` (`take_videos`); an env that renders nothing is said once."""
        if result.no_video and not self._said_no_video:
            self.hooks.note("runner.eval_video_episodes: this env renders no frames; no video is recorded")
            self._said_no_video = True
        paths = save_videos(result, self.run_dir / VIDEOS_DIR / label)
        if paths:
            self._unlogged_videos[f"{prefix}/videos"] = paths

    def take_videos(self) -> dict[str, list[Path]]:
        """The videos saved since the last call, by metric name (`eval/videos`, `eval_expert/videos`), for the
        metrics row of their evaluations (W&B logs them)."""
        videos, self._unlogged_videos = self._unlogged_videos, {}
        return videos

    def record_initial(self, what: str, evaluation) -> dict[str, float]:
        """An evaluation before training (`what`: a key of INITIAL) with its videos; returns its metrics."""
        name, prefix, label = INITIAL[what]
        self.keep_videos(evaluation, label, prefix)
        result = evaluation.summary()
        setattr(self, name, result)
        self.hooks.evaluated(what, result)
        return eval_row(prefix, result)

    def record(self, iteration: int, evaluation) -> dict[str, float]:
        """The student's evaluation after `iteration`, with its videos; returns its metrics."""
        self.keep_videos(evaluation, str(iteration), "eval")
        result = evaluation.summary()
        self.evals.append({"iteration": iteration, **result})
        return eval_row("eval", result)

    # CHECKPOINT
    def state_dict(self) -> dict[str, Any]:
        return {"student_init": self.student_init, "expert": self.expert, "evals": self.evals}

    def restore(self, results: dict[str, Any]) -> None:
        self.student_init, self.expert, self.evals = results["student_init"], results["expert"], list(results["evals"])
