"""Output and errors for every command: results on stdout (JSON with --json), progress and logs on stderr.

A `DaggerError` becomes one line on stderr and its exit code; any other exception becomes one line naming its type
and exit 1, with the traceback only under `--debug` or `DAGGER_DEBUG=1`.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import typer
from rich.console import Console

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CHECK_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_state = {"debug": False}


def set_debug(debug: bool) -> None:
    _state["debug"] = debug or os.environ.get("DAGGER_DEBUG", "") not in ("", "0")


def debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("DAGGER_DEBUG", "") not in ("", "0")


class Output:
    """Where a command writes: `result` to stdout, everything else to stderr."""

    def __init__(self, json_mode: bool = False):
        self.json_mode = json_mode
        self.out = Console(soft_wrap=True)
        self.err = Console(stderr=True, soft_wrap=True)

    @property
    def progress_enabled(self) -> bool:
        """Rich progress only for a person watching: stderr is a terminal and no --json."""
        return not self.json_mode and self.err.is_terminal

    def log(self, message: str) -> None:
        """A log line on stderr (silent under --json)."""
        if not self.json_mode:
            self.err.print(message, highlight=False)

    def result(self, data: Any, human: Callable[[Console], None] | None = None) -> None:
        """The command's result: one JSON object under --json, else `human(console)` on stdout."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, default=_json_default) + "\n")
            sys.stdout.flush()
        elif human is not None:
            human(self.out)
        else:
            self.out.print(data)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def error_line(message: str) -> None:
    from rich.markup import escape

    # escaped: a message's brackets ("pip install 'dagger-cli[wandb]'") are text, not rich markup
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turns failures into one stderr line and an exit code."""
    from dagger_cli.core.errors import DaggerError

    try:
        yield
    except typer.Exit:
        raise
    except DaggerError as e:
        if debug_enabled():
            raise
        error_line(str(e))
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        error_line("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as e:
        if debug_enabled():
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        error_line(f"{type(e).__name__}: {message} (run with --debug for the traceback)")
        raise typer.Exit(EXIT_FAILURE) from None


def percent(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return f"{100 * value:.1f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
