"""`dagger report RUN_DIR...`: the results table of finished (or interrupted) runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dagger_cli.cli._common import JsonOpt, examples
from dagger_cli.cli._output import Output, duration, handle_errors, percent

EXAMPLES = examples("dagger report runs/pick-cube/*", "dagger report runs/pick-cube/20261124-101500 --json")


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories.", show_default=False)],
    json_mode: JsonOpt = False,
) -> None:
    """Config | Student init SR | Expert SR | Training time | Student final SR, one row per run."""
    out = Output(json_mode)
    with handle_errors():
        rows = [run_row(Path(d)) for d in run_dirs]

    def human(console):
        from rich.table import Table

        table = Table()
        for title in ("Config", "Student init SR", "Expert SR", "Training time", "Student final SR", "Run"):
            table.add_column(title)
        for row in rows:
            final = percent(row["student_final_sr"])
            if row["status"] != "finished":
                final += f" ({row['status']} at {row['iterations']}/{row['max_epochs']})"
            table.add_row(
                f"{row['preset']} (seed {row['seed']})",
                percent(row["student_init_sr"]),
                percent(row["expert_sr"]),
                duration(row["train_time_s"]),
                final,
                row["run_dir"],
            )
        console.print(table)

    out.result({"runs": rows}, human)


def run_row(run_dir: Path) -> dict:
    """One run's results: its summary.json when finished, else what its last checkpoint recorded."""
    from dagger_cli import runs
    from dagger_cli.core.checkpoint import read_state

    cfg = runs.run_config(run_dir)
    summary = runs.read_summary(run_dir)
    if summary is not None:
        return {**summary, "status": "finished", "run_dir": str(run_dir)}
    row = {
        "preset": cfg.name,
        "seed": cfg.seed,
        "run_dir": str(run_dir),
        "iterations": 0,
        "max_epochs": cfg.runner.max_epochs,
        "student_init_sr": None,
        "expert_sr": None,
        "student_final_sr": None,
        "train_time_s": None,
        "status": "not started",
    }
    ckpt = runs.latest_checkpoint(run_dir)
    if ckpt is not None:
        state = read_state(ckpt)
        results = state["results"]
        last = results["evals"][-1] if results["evals"] else None
        row.update(
            iterations=state["iteration"],
            student_init_sr=(results["student_init"] or {}).get("success_once"),
            expert_sr=(results["expert"] or {}).get("success_once"),
            student_final_sr=last["success_once"] if last else None,
            train_time_s=results["train_time_s"],
            status="stopped",
        )
    return row
