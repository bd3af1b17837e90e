"""`dagger export RUN_DIR --format lerobot|checkpoint|lerobot-checkpoint`: the run's aggregated samples as a LeRobot
v3.0 dataset, or the trained student as a self-contained checkpoint directory that `--ckpt`, `model_path` and the
model's own loaders read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dagger_cli.cli._common import JsonOpt, examples
from dagger_cli.cli._output import Output, handle_errors

EXAMPLES = examples(
    "dagger export runs/libero-spatial/20261124-101500 --format lerobot --out datasets/libero-dagger",
    "dagger export runs/libero-spatial/20261124-101500 --format lerobot --only-expert-labels",
    "dagger export runs/pick-cube/20261124-101500 --format checkpoint --out exported/pick-cube-mlp",
    "dagger export runs/libero-spatial/20261124-101500 --format lerobot-checkpoint --out exported/pi0-lerobot",
)


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run dir (its latest checkpoint) or a checkpoint dir.",
                                            show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="lerobot (the replay buffer as a LeRobot v3.0 dataset), "
                                                      "checkpoint (openpi's layout for π₀; safetensors + config.json "
                                                      "for the MLP) or lerobot-checkpoint (π₀, LeRobot's layout).")]
    = "checkpoint",
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory to write (default RUN_DIR/export/FORMAT).")]
    = None,
    only_expert_labels: Annotated[bool, typer.Option("--only-expert-labels",
                                                     help="lerobot: only the steps the expert executed "
                                                          "(HG-DAgger's training data).")] = False,
    fps: Annotated[float, typer.Option("--fps", help="lerobot: frames (policy decisions) per second.")] = 10.0,
    lossless: Annotated[bool, typer.Option("--lossless", help="lerobot: bit-exact RGB video (larger).")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Write the run's replay buffer as a LeRobot dataset, or its student as a checkpoint directory of its own."""
    output = Output(json_mode)
    with handle_errors():
        if fmt == "lerobot":
            result = _export_dataset(output, run_dir, out, only_expert_labels, fps, lossless)
        else:
            result = _export(output, run_dir, fmt, out)
    output.result(result, lambda console: console.print(f"{result['format']}: {result['path']}"))


def _export(output: Output, run_dir: Path, fmt: str, out: Path | None) -> dict:
    from dagger_cli import runs
    from dagger_cli.core.errors import UsageError
    from dagger_cli.core.registry import policy_adapter

    source = runs.resolve_student(run_dir, None, [])
    cfg = source.config
    adapter = policy_adapter(cfg.actor.model.model_type)
    if fmt not in adapter.export_formats:
        known = ", ".join(adapter.export_formats) or "none"
        raise UsageError(f"--format {fmt}: a {adapter.name} student exports as {known}")
    from dagger_cli.policies import build_student

    student = build_student(cfg, "cpu", source.weights)
    if getattr(student, "needs_norm_stats", False):
        from dagger_cli.core.errors import CheckpointError

        raise CheckpointError(f"{source.weights}: the student has no norm stats yet (saved before its first iteration)")
    target = _target(out, run_dir, fmt)
    output.log(f"[dim]exporting {source.weights} as {fmt}[/]")
    path = adapter.export(student, cfg.actor.model, target, fmt)
    return {"format": fmt, "path": str(path), "from": str(source.weights), "preset": cfg.name}


def _target(out: Path | None, run_dir: Path, fmt: str) -> Path:
    from dagger_cli.core.errors import UsageError

    target = out or Path(run_dir) / "export" / fmt
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"--out {target}: exists and is not empty")
    return target


def _export_dataset(output: Output, run_dir: Path, out: Path | None, only_expert: bool, fps: float,
                    lossless: bool) -> dict:
    from dagger_cli import runs
    from dagger_cli.core.errors import UsageError
    from dagger_cli.core.run_state import checkpoint_samples
    from dagger_cli.interop import lerobot_dataset

    if fps <= 0:
        raise UsageError(f"--fps must be positive, got {fps}")
    source = runs.resolve_student(run_dir, None, [])
    if source.checkpoint_dir is None:
        raise UsageError(f"{run_dir}: not a run dir or checkpoint dir")
    target = _target(out, run_dir, "lerobot")
    output.log(f"[dim]exporting the replay buffer of {source.checkpoint_dir} as a LeRobot dataset[/]")
    info = lerobot_dataset.export(checkpoint_samples(source.checkpoint_dir), target, fps, only_expert, lossless)
    return {"format": "lerobot", "path": str(target), "from": str(source.checkpoint_dir),
            "episodes": info["total_episodes"], "frames": info["total_frames"], "tasks": info["total_tasks"]}
