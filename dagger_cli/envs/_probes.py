"""Helpers for the env adapters' `dagger check` probes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def run_probe(probe: str, timeout: float) -> tuple[int | None, str, str]:
    """Runs Python code `probe` in its own process group (a broken driver can hang or crash the process); on
    timeout kills the whole group and returns code None. Returns (exit code, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err
    return proc.returncode, out, err
