"""`dagger export RUN_DIR --format lerobot|checkpoint|lerobot-checkpoint`: the run's aggregated samples as a LeRobot
v3.0 dataset, or the trained student as a self-contained checkpoint directory that `--ckpt`, `model_path` and the
model's own loaders read; `--push-to-hub` then uploads it.

An export directory records what it holds (`.dagger-export.json`); the same export into it again writes nothing, so
a push that failed is retried by re-running the command."""

from __future__ import annotations

import json
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
    "HF_TOKEN=hf_... dagger export runs/libero-spatial/20261124-101500 --format lerobot --repo-id me/libero-dagger "
    "--push-to-hub",
)
MARKER = ".dagger-export.json"


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run dir (its latest checkpoint) or a checkpoint dir.",
                                            show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="lerobot (the replay buffer as a LeRobot v3.0 dataset), "
                                                      "checkpoint (openpi's layout for π₀; safetensors + config.json "
                                                      "for the MLP) or lerobot-checkpoint (π₀, LeRobot's layout).")]
    = "checkpoint",
    out: Annotated[Optional[Path], typer.Option("--out", help="Directory to write (default RUN_DIR/export/FORMAT; "
                                                              "lerobot with --repo-id: $HF_LEROBOT_HOME/REPO_ID).")]
    = None,
    repo_id: Annotated[Optional[str], typer.Option("--repo-id", help="The Hub repo (owner/name) to push to; lerobot: "
                                                                     "also the dataset's local name.")] = None,
    push_to_hub: Annotated[bool, typer.Option("--push-to-hub", help="Upload the export to --repo-id (HF_TOKEN, "
                                                                   "HF_ENDPOINT apply).")] = False,
    private: Annotated[bool, typer.Option("--private", help="--push-to-hub: create the repo private.")] = False,
    only_expert_labels: Annotated[bool, typer.Option("--only-expert-labels",
                                                     help="lerobot: only the steps the expert executed "
                                                          "(HG-DAgger's training data).")] = False,
    fps: Annotated[Optional[float], typer.Option("--fps", help="lerobot: frames (policy decisions) per second; "
                                                            "default: the env's control rate over "
                                                            "actor.model.num_action_chunks (the decisions' real "
                                                            "rate).", show_default=False)] = None,
    lossless: Annotated[bool, typer.Option("--lossless", help="lerobot: bit-exact RGB video (larger).")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Write the run's replay buffer as a LeRobot dataset, or its student as a checkpoint directory of its own."""
    output = Output(json_mode)
    with handle_errors():
        from dagger_cli.core.errors import UsageError

        if push_to_hub and not repo_id:
            raise UsageError("--push-to-hub needs --repo-id OWNER/NAME")
        if private and not push_to_hub:
            raise UsageError("--private applies to --push-to-hub")
        if fmt == "lerobot":
            if out is None and repo_id:
                from dagger_cli.publishing import lerobot_home

                out = lerobot_home() / repo_id
            result = _export_dataset(output, run_dir, out, only_expert_labels, fps, lossless)
        else:
            result = _export(output, run_dir, fmt, out)
        if push_to_hub:
            from dagger_cli import publishing
            from dagger_cli.interop.lerobot_dataset import CODEBASE_VERSION

            dataset = fmt == "lerobot"
            output.log(f"[dim]pushing {result['path']} to {repo_id}[/]")
            pushed = publishing.push(Path(result["path"]), repo_id, "dataset" if dataset else "model", private,
                                     tag=CODEBASE_VERSION if dataset else None, ignore=[MARKER],
                                     again=f"dagger export {run_dir} --format {fmt} --out {result['path']} "
                                           f"--repo-id {repo_id} --push-to-hub")
            result["pushed"] = pushed.to_json()

    def show(console) -> None:
        console.print(f"{result['format']}: {result['path']}")
        if "pushed" in result:
            console.print(f"pushed: {result['pushed']['url']}")

    output.result(result, show)


def _export(output: Output, run_dir: Path, fmt: str, out: Path | None) -> dict:
    from dagger_cli import assembly
    from dagger_cli.core.errors import UsageError
    from dagger_cli.core.registry import policy_adapter

    source = assembly.student_source(run_dir, None, [])
    cfg = source.config
    adapter = policy_adapter(cfg.actor.model.model_type)
    if fmt not in adapter.export_formats:
        known = ", ".join(adapter.export_formats) or "none"
        raise UsageError(f"--format {fmt}: a {adapter.name} student exports as {known}")
    student = assembly.trained_student(source, "cpu")
    record = {"format": fmt, "from": str(source.weights)}
    target, done = _target(out, run_dir, record)
    if done is not None:
        output.log(f"[dim]{target} already holds this export[/]")
        return done
    output.log(f"[dim]exporting {source.weights} as {fmt}[/]")
    path = adapter.export(student, cfg.actor.model, target, fmt)
    return _done(Path(path), {**record, "path": str(path), "preset": cfg.name})


def _target(out: Path | None, run_dir: Path, record: dict) -> tuple[Path, dict | None]:
    """The directory to write, and what it already holds when that is this very export (else None); a directory
    holding anything else is an error."""
    from dagger_cli.core.errors import UsageError

    from dagger_cli.core.io.run_dir import EXPORT_DIR

    target = out or Path(run_dir) / EXPORT_DIR / record["format"]
    if target.exists() and any(target.iterdir()):
        try:
            done = json.loads((target / MARKER).read_text())
        except (OSError, ValueError):
            done = None
        if done is None or {k: done.get(k) for k in record} != record:
            raise UsageError(f"--out {target}: exists and is not empty")
        return target, done
    return target, None


def _done(target: Path, result: dict) -> dict:
    """Records what `target` now holds (written last: an export cut short is not taken for done)."""
    from dagger_cli.core.io.files import write_json

    write_json(target / MARKER, result)
    return result


FALLBACK_FPS = 10.0
"""--fps of an env whose adapter does not say its control rate"""


def default_fps(cfg) -> float:
    """A frame is one policy decision, which executes actor.model.num_action_chunks control steps: the env's control
    rate (LIBERO's and ManiSkill's 20 Hz) over that, so that timestamps are the simulated seconds."""
    from dagger_cli.core.registry import env_adapter

    hz = env_adapter(cfg.env.type).control_hz
    return hz / cfg.actor.model.num_action_chunks if hz else FALLBACK_FPS


def _export_dataset(output: Output, run_dir: Path, out: Path | None, only_expert: bool, fps: float | None,
                    lossless: bool) -> dict:
    from dagger_cli import assembly
    from dagger_cli.core.errors import UsageError
    from dagger_cli.core.engine.run_checkpoint import checkpoint_buffer
    from dagger_cli.interop import lerobot_dataset

    if fps is not None and fps <= 0:
        raise UsageError(f"--fps must be positive, got {fps}")
    source = assembly.student_source(run_dir, None, [])
    if source.checkpoint_dir is None:
        raise UsageError(f"{run_dir}: not a run dir or checkpoint dir")
    if fps is None:
        fps = default_fps(source.config)
    record = {"format": "lerobot", "from": str(source.checkpoint_dir), "only_expert_labels": only_expert, "fps": fps,
              "lossless": lossless}
    target, done = _target(out, run_dir, record)
    if done is not None:
        output.log(f"[dim]{target} already holds this export[/]")
        return done
    output.log(f"[dim]exporting the replay buffer of {source.checkpoint_dir} as a LeRobot dataset[/]")
    with checkpoint_buffer(source.checkpoint_dir) as buffer:  # read in place, read-only, a chunk at a time
        info = lerobot_dataset.export(buffer, target, fps, only_expert, lossless)
    return _done(target, {**record, "path": str(target), "episodes": info["total_episodes"],
                          "frames": info["total_frames"], "tasks": info["total_tasks"]})
