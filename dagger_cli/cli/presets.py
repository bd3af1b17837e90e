"""`dagger presets` and `dagger presets show NAME`."""

from __future__ import annotations

import typer

from dagger_cli.cli._common import JsonOpt, complete_preset, examples
from dagger_cli.cli._output import Output, handle_errors

app = typer.Typer(
    help="List the bundled presets, or print one.",
    invoke_without_command=True,
    epilog=examples("dagger presets", "dagger presets show pick-cube > my.yaml"),
)


@app.callback()
def list_presets(ctx: typer.Context, json_mode: JsonOpt = False) -> None:
    """List bundled presets with a one-line description."""
    if ctx.invoked_subcommand is not None:
        return
    out = Output(json_mode)
    with handle_errors():
        from dagger_cli.core.config_loader import preset_description, preset_names

        rows = [{"name": name, "description": preset_description(name)} for name in preset_names()]

    def human(console):
        from rich.table import Table

        table = Table(box=None, show_header=False, pad_edge=False)
        for row in rows:
            table.add_row(f"[bold]{row['name']}[/]", row["description"])
        console.print(table)

    out.result({"presets": rows}, human)


@app.command("show", epilog=examples("dagger presets show pick-cube"))
def show(name: str = typer.Argument(..., help="Preset name.", autocompletion=complete_preset)) -> None:
    """Print a preset's YAML."""
    with handle_errors():
        from dagger_cli.core.config_loader import preset_path

        text = preset_path(name).read_text()
    typer.echo(text, nl=False)
