"""Which process writes a run, and whether it still lives: a run killed (SIGKILL, OOM, power) leaves its summary at
`running`; the writer's pid, host and start time in it let a reader tell that the run died."""

from __future__ import annotations

import os
import socket
from typing import Any


def _started(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks after boot, state letter) of a process from /proc (Linux); None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # the name before ")" may hold spaces
        return int(fields[19]), fields[0]
    except (OSError, ValueError, IndexError):
        return None


def identity() -> dict[str, Any]:
    """This process as a summary records it: `pid`, `host` and (Linux) `pid_started`, which tells a reused pid."""
    started = _started(os.getpid())
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_started": started[0] if started else None}


def liveness(record: dict[str, Any]) -> str:
    """'alive', 'gone' or 'unknown' (no pid recorded, or written on another host) for a record of `identity()`."""
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return "unknown"
    now = _started(pid)
    if now is not None:
        start, state = now
        if state in ("Z", "X"):  # exited, not yet reaped by its parent
            return "gone"
        if record.get("pid_started") is not None and start != record["pid_started"]:
            return "gone"  # the pid now names another process
    return "alive"
