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
    """One run's results: the summary.json its runner wrote with its latest checkpoint (or at its end)."""
    from dagger_cli import runs

    cfg = runs.run_config(run_dir)  # a run dir, readable (one line otherwise)
    summary = runs.read_summary(run_dir)
    if summary is None:
        return {"preset": cfg.name, "seed": cfg.seed, "run_dir": str(run_dir), "status": "not started",
                "iterations": 0, "max_epochs": cfg.runner.max_epochs, "student_init_sr": None, "expert_sr": None,
                "student_final_sr": None, "train_time_s": None}
    row = {**summary, "run_dir": str(run_dir), "max_epochs": cfg.runner.max_epochs}
    if row["status"] == "finished" and row["iterations"] < cfg.runner.max_epochs:
        row["status"] = "stopped"  # resumed with a longer runner.max_epochs and not run on yet
    return row
