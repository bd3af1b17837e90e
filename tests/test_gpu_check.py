"""`bench/gpu_check.py --dry-run`: every part of the one-shot GPU check at small sizes on the CPU, so that the
script a GPU session runs once is known to work."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HAVE_LIBERO, HAVE_MANISKILL, HAVE_PI0

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"


@pytest.mark.sim
@pytest.mark.skipif(
    not (HAVE_PI0 and HAVE_MANISKILL and HAVE_LIBERO), reason="needs the pi0, maniskill and libero extras"
)
def test_dry_run_runs_every_part(tmp_path):
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--json", str(out)], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["part"] for r in rows] == ["(a)", "(a)", "(b)", "(b)", "(b)", "(b)", "(c)", "(d)", "(e)", "(f)", "(f)"]
    assert "FAILED" not in result.stdout
    by_part = {r["part"]: r["result"] for r in rows}
    assert "falls" in by_part["(c)"] and "env steps/s" in by_part["(e)"]
    assert "s/step" in rows[0]["result"] and "ms/sample" in rows[2]["result"]


def test_a_failing_part_is_one_line_and_the_rest_go_on(tmp_path):
    # GIVEN no `dagger` on PATH for the whole-run parts: (d) fails, and (c) still runs
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--parts", "d", "c"],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/nonexistent", "HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("(d)") and "FAILED" in line and "FileNotFoundError" in line for line in lines)
    assert any(line.startswith("(c)") and "falls" in line for line in lines) or not HAVE_PI0
