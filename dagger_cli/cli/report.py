"""`dagger report RUN_DIR...`: results of finished (or interrupted) runs, seeds aggregated, as a table, JSON, CSV, a
plot of the learning curves or a self-contained HTML report."""

from __future__ import annotations

import csv
import io
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from dagger_cli.cli._common import JsonOpt, examples
from dagger_cli.cli._output import Output, duration, handle_errors, percent

EXAMPLES = examples(
    "dagger report runs/pick-cube/*",
    "dagger report runs/pick-cube/* --plot curves.png --x env_steps",
    "dagger report runs/gated/* runs/always/* --html report.html --x expert_queries",
    "dagger report runs/pick-cube/* runs/pick-cube-pi0/* --html report.html",
    "dagger report runs/pick-cube/20261124-101500 --json",
)


class XAxis(str, Enum):
    iteration = "iteration"
    env_steps = "env_steps"
    wall = "wall"
    expert_queries = "expert_queries"


CSV_COLUMNS = ["kind", "config", "seeds", "status", "student_init_sr", "expert_sr", "train_time_s", "expert_queries",
               "student_final_sr", "student_final_sr_low", "student_final_sr_high", "run_dir"]


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories.", show_default=False)],
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the learning curves to this PNG.")] = None,
    x: Annotated[XAxis, typer.Option("--x", help="The curves' x-axis.")] = XAxis.iteration,
    html_path: Annotated[Optional[Path], typer.Option("--html", help="Write a self-contained HTML report.")] = None,
    csv_mode: Annotated[bool, typer.Option("--csv", help="Print the numbers as CSV (runs, then configs).")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Config | Student init SR | Expert SR | Training time | Student final SR, one row per run, and per config the
    mean and 95% interval over its seeds (runs whose configs differ only in the seed)."""
    out = Output(json_mode)
    with handle_errors():
        from dagger_cli.report.runs import group_runs, load_run

        groups = group_runs([load_run(Path(d)) for d in run_dirs])
        written = {}
        if plot is not None:
            from dagger_cli.report.plot import plot_groups

            written["plot"] = str(plot_groups(groups, plot, x.value))
        if html_path is not None:
            from dagger_cli.report.html import write_html

            written["html"] = str(write_html(groups, html_path, x.value))
    rows = [r.row for g in groups for r in g.runs]
    configs = [g.summary() for g in groups]
    for what, path in written.items():
        out.log(f"{what}: {path}")
    if csv_mode:
        sys.stdout.write(_csv(rows, configs))
        return

    def human(console):
        from rich.table import Table

        table = Table()
        for title in ("Config", "Student init SR", "Expert SR", "Training time", "Student final SR", "Run"):
            table.add_column(title)
        for row in rows:
            final = percent(row["student_final_sr"])
            if row["status"] != "finished":
                status = row["status"]
                if row.get("process") == "unknown" and row.get("host"):
                    status += f" on {row['host']}, unchecked"  # another host's process cannot be looked up here
                final += f" ({status} at {row['iterations']}/{row['max_epochs']})"
            table.add_row(f"{row['preset']} (seed {row['seed']})", percent(row["student_init_sr"]),
                          percent(row["expert_sr"]), duration(row["train_time_s"]), final, row["run_dir"])
        console.print(table)
        if any(len(c["seeds"]) > 1 for c in configs) or len(configs) > 1:
            agg = Table(title="per config: mean (95% interval over seeds)")
            for title in ("Config", "Seeds", "Student init SR", "Expert SR", "Training time", "Student final SR"):
                agg.add_column(title)
            for c in configs:
                agg.add_row(c["config"], ", ".join(map(str, c["seeds"])), _with_ci(c, "student_init_sr"),
                            _with_ci(c, "expert_sr"), duration(c["train_time_s"]), _with_ci(c, "student_final_sr"))
            console.print(agg)
        for c in configs:
            if c.get("tasks"):
                tasks = Table(title=f"{c['config']}: per-task success (final evaluation)")
                tasks.add_column("Task")
                tasks.add_column("Student final SR")
                for task, entry in c["tasks"].items():
                    tasks.add_row(task, percent(entry["success_once"]))
                console.print(tasks)

    out.result({"runs": rows, "configs": configs, **written}, human)


def _with_ci(config: dict, key: str) -> str:
    ci = config.get(f"{key}_ci95")
    text = percent(config.get(key))
    return text + (f" ({percent(ci[0])}–{percent(ci[1])})" if ci else "")


def _csv(rows: list[dict], configs: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        low, high = row.get("student_final_ci95") or (None, None)
        writer.writerow({**row, "kind": "run", "config": row["preset"], "seeds": row["seed"],
                         "student_final_sr_low": low, "student_final_sr_high": high})
    for c in configs:
        low, high = c.get("student_final_sr_ci95") or (None, None)
        writer.writerow({**c, "kind": "config", "seeds": " ".join(map(str, c["seeds"])), "status": "",
                         "student_final_sr_low": low, "student_final_sr_high": high, "run_dir": " ".join(c["runs"])})
    return buffer.getvalue()
