"""`dagger train`: run DAgger from a preset, or resume a run."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from dagger_cli.cli._common import ConfigOpt, JsonOpt, PresetArg, SeedOpt, SetOpt, examples
from dagger_cli.cli._output import EXIT_INTERRUPTED, Output, duration, handle_errors, percent

EXAMPLES = examples(
    "dagger train pick-cube",
    "dagger train pick-cube --set runner.max_epochs=20 --set algorithm.dagger.beta_decay=0.8 --seed 1",
    "dagger train pick-cube --config my-overrides.yaml --run-dir runs/ablation-1",
    "dagger train --resume runs/pick-cube/20261124-101500",
    "dagger train pick-cube --async",
    "dagger train pick-cube --async --ray-address auto",
    "dagger train pick-cube --json > summary.json",
)


def train(
    preset: PresetArg = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    run_dir: Annotated[
        Optional[Path], typer.Option("--run-dir", help="Where the run goes (default runs/PRESET/TIMESTAMP).")
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option("--resume", help="Continue RUN_DIR from its last checkpoint.", metavar="RUN_DIR")
    ] = None,
    async_mode: Annotated[
        bool, typer.Option("--async", help="Collect on Ray rollout workers while the learner trains.")
    ] = False,
    ray_address: Annotated[
        Optional[str], typer.Option("--ray-address", help="Join this Ray cluster (default: RAY_ADDRESS, else local).")
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Train a student with DAgger: the expert acts with probability beta, labels every state, beta decays."""
    started = time.perf_counter()
    out = Output(json_mode)
    with handle_errors():
        overrides = list(set_ or []) + ([f"cluster.ray_address={ray_address}"] if ray_address else [])
        summary = _train(out, preset, config, overrides, seed, run_dir, resume, started, async_mode)
    stopped = summary["iterations"] < summary["max_epochs"]

    def human(console):
        from rich.table import Table

        table = Table(title=f"{summary['preset']} (seed {summary['seed']})", show_header=False, box=None)
        table.add_row("Student init SR", percent(summary["student_init_sr"]))
        table.add_row("Expert SR", percent(summary["expert_sr"]))
        table.add_row("Student final SR", _final(summary))
        table.add_row("Iterations", f"{summary['iterations']} / {summary['max_epochs']}")
        table.add_row("Env steps", str(summary["env_steps"]))
        table.add_row("Training time", duration(summary["train_time_s"]))
        table.add_row("Wall time", duration(summary["wall_time_s"]))
        table.add_row("Run dir", summary["run_dir"])
        console.print(table)

    out.result(summary, human)
    if stopped:
        raise typer.Exit(EXIT_INTERRUPTED)


def _final(summary: dict) -> str:
    if summary["student_final_sr"] is None:
        return "–"
    low, high = summary["student_final_ci95"]
    return (
        f"{percent(summary['student_final_sr'])} success_once "
        f"(95% CI {percent(low)}–{percent(high)}, {summary['eval_episodes']} episodes; "
        f"success_at_end {percent(summary['student_final_success_at_end'])})"
    )


def _train(out, preset, config, overrides, seed, run_dir, resume, started, async_mode) -> dict:
    from dagger_cli import assembly
    from dagger_cli.core.errors import UsageError

    if seed is not None:
        overrides = overrides + [f"seed={seed}"]
    if resume is not None:
        if config is not None or run_dir is not None:
            raise UsageError("--resume continues a run with its saved config; drop --config and --run-dir")
        plan = assembly.resumed_run(resume, preset, overrides, async_mode,
                                    warn=lambda line: out.log(f"[yellow]warning:[/] {line}"))
    elif preset is None:
        raise UsageError("missing PRESET (see `dagger presets`), or --resume RUN_DIR")
    else:
        plan = assembly.new_run(preset, config, overrides, run_dir, async_mode)
    cfg, target = plan.config, plan.run_dir
    model = cfg.actor.model.model_type
    out.log(f"[dim]loading {cfg.name}: {cfg.env.task}, {cfg.env.num_envs} envs, {model} student[/]")
    hooks = _Hooks(out)
    with assembly.runner(plan, hooks, sys.argv) as runner:
        progress = runner.state.progress
        if plan.loaded is not None:
            out.log(f"resuming {target} at iteration {progress.iteration} from {plan.loaded.path.name} "
                    f"(beta {runner.state.beta(progress.iteration):.3f})")
        else:
            out.log(f"run dir {target}" + (" (async, Ray)" if plan.async_mode else ""))
        previous = signal.signal(signal.SIGINT, _stop_handler(progress, out))
        try:
            with hooks:
                summary = runner.run(started_at=started)
        finally:
            signal.signal(signal.SIGINT, previous)
    if progress.stop_requested and not progress.finished:
        out.log(f"stopped at iteration {progress.iteration}; continue with: dagger train --resume {target}")
    return summary


def _stop_handler(progress, out):
    def handler(signum, frame):
        if progress.stop_requested:
            raise KeyboardInterrupt
        progress.request_stop()
        out.log("[yellow]stopping after this iteration (Ctrl-C again to abort without saving)[/]")

    return handler


class _Hooks:
    """Rich progress on a terminal; one plain log line per iteration otherwise (none under --json)."""

    def __init__(self, out: Output):
        self.out = out
        self.progress = None
        self.task = None

    def __enter__(self):
        if self.out.progress_enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]DAgger[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=self.out.err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("starting", total=None)
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def phase(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)

    def evaluated(self, label: str, result: dict) -> None:
        self._print(f"{label} SR {percent(result['success_once'])} ({result['episodes']} episodes, {result['seconds']:.1f} s)")

    def note(self, text: str) -> None:
        self._print(f"[yellow]{text}[/]")

    def _print(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line, highlight=False)
        else:
            self.out.log(line)

    def iteration_done(self, iteration: int, total: int, m: dict) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=iteration, total=total)
        line = (
            f"iter {iteration:>3}/{total}  beta {m['train/dagger/beta']:.3f}  "
            f"mixed-policy SR {percent(m['env/success_once'])}  "
            f"loss {m.get('train/dagger/actor_loss', float('nan')):.4f}  "
            f"buffer {m['train/replay_buffer/cache_size']}"
        )
        if "eval/success_once" in m:
            line += f"  [bold]student eval SR {percent(m['eval/success_once'])}[/]"
        line += f"  ({m['time/iteration_s']:.1f} s)"
        self._print(line)
