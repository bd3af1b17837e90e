"""Option types and completion shared by the commands (no heavy imports here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def complete_preset(incomplete: str) -> list[str]:
    from dagger_cli.core.config_loader import preset_names

    return [name for name in preset_names() if name.startswith(incomplete)]


PresetArg = Annotated[
    Optional[str],
    typer.Argument(help="Bundled preset name (see `dagger presets`).", autocompletion=complete_preset, show_default=False),
]
PresetOpt = Annotated[
    Optional[str],
    typer.Option("--preset", help="Bundled preset whose env and models to use.", autocompletion=complete_preset),
]
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", help="YAML file overlaid on the preset.", exists=False, dir_okay=False),
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        help="Override one key, dotted, value parsed as YAML (repeatable): --set runner.max_epochs=20",
        metavar="KEY=VALUE",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; no progress.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed (overrides the preset's `seed`).")]


def examples(*lines: str) -> str:
    """An epilog listing examples, rendered by Typer's Rich help."""
    body = "\n\n".join(f"  [bold]$[/] {line}" for line in lines)
    return f"[bold]Examples[/]\n\n{body}"
