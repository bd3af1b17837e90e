"""`dagger eval`: the student alone, deterministic, on the preset's fixed evaluation seeds."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from dagger_cli.cli._common import JsonOpt, PresetOpt, SetOpt, examples
from dagger_cli.cli._output import Output, handle_errors, percent

EXAMPLES = examples(
    "dagger eval --ckpt runs/pick-cube/20261124-101500",
    "dagger eval --ckpt runs/pick-cube/20261124-101500/checkpoints/iter_000008 --episodes 256",
    "dagger eval --ckpt full_weights.pt --preset pick-cube --json",
)


def evaluate(
    ckpt: Annotated[
        Path,
        typer.Option("--ckpt", help="A run dir, a checkpoint dir, or a weights file (.safetensors / RLinf .pt)."),
    ],
    preset: PresetOpt = None,
    episodes: Annotated[Optional[int], typer.Option("--episodes", help="Episodes (default: the preset's).")] = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="First reset seed of the evaluation episodes (default: preset's).")
    ] = None,
    video: Annotated[
        Optional[Path], typer.Option("--video", help="Film the first episodes into this folder (mp4, one per episode).")
    ] = None,
    video_episodes: Annotated[int, typer.Option("--video-episodes", help="Episodes --video films.")] = 4,
    set_: SetOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Evaluate a student alone: success_once, success_at_end and a 95% Wilson interval, per task where the env
    names its tasks."""
    out = Output(json_mode)
    with handle_errors():
        result = _evaluate(out, ckpt, preset, episodes, seed, list(set_ or []), video, video_episodes)

    def human(console):
        low, high = result["success_once_ci95"]
        console.print(f"success_once    {percent(result['success_once'])}  (95% CI {percent(low)}–{percent(high)})")
        console.print(f"success_at_end  {percent(result['success_at_end'])}")
        console.print(f"episodes        {result['episodes']}")
        for task, entry in (result.get("tasks") or {}).items():
            console.print(f"  {percent(entry['success_once']):>7}  ({entry['episodes']} episodes)  {task}")
        for path in result.get("videos", []):
            console.print(f"video           {path}")

    out.result(result, human)


def _evaluate(out, ckpt, preset, episodes, seed, overrides, video: Path | None, video_episodes: int) -> dict:
    from dagger_cli import assembly
    from dagger_cli.core.errors import UsageError

    if video is not None and video_episodes <= 0:
        raise UsageError(f"--video-episodes must be positive, got {video_episodes}")

    if episodes is not None:
        if episodes <= 0:
            raise UsageError(f"--episodes must be positive, got {episodes}")
        overrides.append(f"env.eval.num_episodes={episodes}")
    if seed is not None:
        if seed < 0:
            raise UsageError(f"--seed must not be negative, got {seed}")
        overrides.append(f"env.eval.reset_seed_base={seed}")
    source = assembly.student_source(ckpt, preset, overrides)
    cfg = source.config

    from dagger_cli.core.engine.run_evaluation import evaluate_policy, save_videos

    policy = assembly.trained_student(source)
    out.log(f"[dim]evaluating {source.weights} on {cfg.env.task}: {cfg.env.eval.num_episodes} episodes[/]")
    e = cfg.env
    with contextlib.closing(assembly.env(cfg)) as env:
        evaluation = evaluate_policy(env, policy, e.eval.seeds, e.max_episode_steps, video_episodes if video else 0)
    result = evaluation.summary()
    if video is not None:
        if evaluation.no_video:
            out.log("[yellow]--video: this env renders no frames; no video is recorded[/]")
        result["videos"] = [str(p) for p in save_videos(evaluation, video)]
    return {"ckpt": str(source.weights), "preset": cfg.name, "reset_seed_base": cfg.env.eval.reset_seed_base, **result}
