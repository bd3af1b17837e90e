"""`dagger fetch`: π₀ checkpoints, the PaliGemma tokenizer and LeRobot datasets from the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dagger_cli.cli._common import JsonOpt, examples
from dagger_cli.cli._output import Output, handle_errors

EXAMPLES = examples(
    "dagger fetch --list",
    "dagger fetch pi0-libero",
    "dagger fetch openpi-tokenizer",
    "dagger fetch pi0-robotwin --local-dir ckpts/pi0-robotwin --json",
    "dagger fetch RLinf/RLinf-Pi0-LIBERO-Spatial-Object-Goal-SFT --include '*.json' --revision main",
    "dagger fetch lerobot/pick-cube-demos --repo-type dataset",
    "HF_HUB_OFFLINE=1 dagger fetch pi0-libero",
)


def complete_alias(incomplete: str) -> list[str]:
    from dagger_cli.core.registry import fetch_aliases

    return [name for name in fetch_aliases() if name.startswith(incomplete)]


def fetch(
    name: Annotated[
        Optional[str],
        typer.Argument(
            help="An alias (see --list) or a Hub repo id owner/name.",
            metavar="NAME|REPO_ID",
            autocompletion=complete_alias,
            show_default=False,
        ),
    ] = None,
    local_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--local-dir",
            help="Where the files go (default $DAGGER_HOME/checkpoints/REPO_ID, $DAGGER_HOME/datasets/REPO_ID for a "
            "dataset; the tokenizer: $OPENPI_DATA_HOME).",
            file_okay=False,
        ),
    ] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit (default main).")] = None,
    include: Annotated[
        Optional[list[str]], typer.Option("--include", help="Only files matching GLOB (repeatable).", metavar="GLOB")
    ] = None,
    repo_type: Annotated[
        str, typer.Option("--repo-type", help="model, or dataset (a LeRobot dataset to seed a run with).")
    ] = "model",
    list_: Annotated[bool, typer.Option("--list", help="List the aliases and where they go.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Download a π₀ checkpoint, the tokenizer or a LeRobot dataset from the Hub (honours HF_ENDPOINT, HF_TOKEN,
    HF_HUB_OFFLINE)."""
    out = Output(json_mode)
    with handle_errors():
        from dagger_cli import fetching
        from dagger_cli.core.errors import UsageError

        if repo_type not in ("model", "dataset"):
            raise UsageError(f"--repo-type {repo_type}: expected model or dataset")
        if list_:
            if name is not None:
                raise UsageError("--list takes no NAME")
            rows = fetching.list_aliases()
        elif name is None:
            raise UsageError("missing NAME: an alias (see `dagger fetch --list`) or a Hub repo id owner/name")
        else:
            result = fetching.fetch(name, local_dir, revision, list(include or []), progress=out.progress_enabled,
                                    repo_type=repo_type)

    if list_:
        out.result({"aliases": rows}, lambda console: _table(console, rows))
        return

    from rich.markup import escape

    for warning in result.warnings:
        out.log(f"[yellow]warning:[/] {escape(warning)}")
    out.log(escape(result.summary))
    out.result(result.to_json(), lambda console: console.out(str(result.local_dir), highlight=False))


def _table(console, rows) -> None:
    from rich.markup import escape
    from rich.table import Table

    home = str(Path.home())
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for row in rows:
        where = row["local_dir"]
        where = "~" + where[len(home) :] if where.startswith(home + "/") else where
        mark = "  [green]downloaded[/]" if row["downloaded"] else ""
        table.add_row(
            f"[bold]{row['name']}[/]",
            f"{row['repo_id']}\n[dim]{row['description']} → {row['config_key']}[/]\n{escape(where)}{mark}",
        )
    console.print(table)
