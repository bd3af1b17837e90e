"""The `dagger` command: assembles one module per subcommand. Nothing heavy is imported here."""

from __future__ import annotations

from typing import Annotated

import typer

from dagger_cli import __version__
from dagger_cli.cli import check, eval as eval_cmd, export, fetch, presets, report, train
from dagger_cli.cli._output import set_debug

app = typer.Typer(
    name="dagger",
    help="DAgger fine-tuning of embodied robot policies: train, evaluate and report, driven by bundled presets.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dagger {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also DAGGER_DEBUG=1).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    set_debug(debug)


app.command("train", epilog=train.EXAMPLES)(train.train)
app.command("eval", epilog=eval_cmd.EXAMPLES)(eval_cmd.evaluate)
app.command("check", epilog=check.EXAMPLES)(check.check)
app.command("report", epilog=report.EXAMPLES)(report.report)
app.command("export", epilog=export.EXAMPLES)(export.export)
app.command("fetch", epilog=fetch.EXAMPLES)(fetch.fetch)
app.add_typer(presets.app, name="presets")


def main() -> None:
    app()
