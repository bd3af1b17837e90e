"""`bench/gpu_check.py --dry-run`: every part of the one-shot GPU check at small sizes on the CPU, so that the
script a GPU session runs once is known to work. The parts that whole other tests already run are run here only as
far as the bench's own code goes: (f)'s sync and async `dagger train pick-cube` runs (tests/test_cli_sim.py trains
pick-cube both ways on the real ManiSkill) go to a stand-in `dagger` that checks their config as dagger does, and
(c) runs once, in the failing-part test."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HAVE_LIBERO, HAVE_MANISKILL, HAVE_PI0

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"

STAND_IN = """#!{python}
\"\"\"`dagger` for (f)'s runs (run dirs pick-cube-sync and pick-cube-async): the config loaded as `dagger train` loads
it (an unknown key or bad value fails here as there), the call recorded, and the metrics of a run that reaches 100% at
iteration 1. Any other call is the real dagger's.\"\"\"
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
run_dir = Path(args[args.index("--run-dir") + 1])
if not run_dir.name.startswith(("pick-cube-sync", "pick-cube-async")):
    os.execv({real!r}, [{real!r}, *args])
from dagger_cli.core.config import load_config

cfg = load_config(args[1], overrides=[args[i + 1] for i, a in enumerate(args) if a == "--set"])
with open({log!r}, "a") as log:
    log.write(json.dumps({{"args": args, "epochs": cfg.runner.max_epochs, "episodes": cfg.env.eval.num_episodes,
                          "val_check_interval": cfg.runner.val_check_interval}}) + "\\n")
run_dir.mkdir(parents=True)
rows = [{{"step": 0}}, {{"step": 1, "eval/success_once": 1.0, "time/elapsed_s": 7.0}}]
(run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
print(json.dumps({{"iterations": 1}}))
"""


@pytest.mark.sim
@pytest.mark.skipif(
    not (HAVE_PI0 and HAVE_MANISKILL and HAVE_LIBERO), reason="needs the pi0, maniskill and libero extras"
)
def test_dry_run_runs_every_part(tmp_path):
    # GIVEN a `dagger` on PATH that stands in for (f)'s two whole runs and is the real one for (d)'s
    bin_dir, log = tmp_path / "bin", tmp_path / "stand-in.jsonl"
    bin_dir.mkdir()
    stand_in = bin_dir / "dagger"
    stand_in.write_text(STAND_IN.format(python=sys.executable, real=shutil.which("dagger"), log=str(log)))
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]])}
    out = tmp_path / "rows.json"
    # WHEN every part but (c) runs (test_a_failing_part_is_one_line_and_the_rest_go_on runs it)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--parts", "a", "b", "d", "e", "f", "--json", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["part"] for r in rows] == ["(a)", "(a)", "(b)", "(b)", "(b)", "(b)", "(d)", "(e)", "(f)", "(f)"]
    assert "FAILED" not in result.stdout
    by_part = {r["part"]: r["result"] for r in rows}
    assert "env steps/s" in by_part["(e)"]
    assert "s/step" in rows[0]["result"] and "ms/sample" in rows[2]["result"]
    # AND (f) ran `dagger train pick-cube` sync then --async, with configs dagger accepts (the dry run's sizes win),
    # and reported each run's time to 95%
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert ["--async" in c["args"] for c in calls] == [False, True]
    assert all(c["args"][:2] == ["train", "pick-cube"] and c["epochs"] == 1 and c["episodes"] == 2
               and c["val_check_interval"] == 1 for c in calls)
    assert [r["measured"] for r in rows[-2:]] == [f"pick-cube {m}, {os.cpu_count()} cores" for m in ("sync", "async")]
    assert all(r["result"].startswith("7 s to 100% (iteration 1; run ") for r in rows[-2:])


def test_a_failing_part_is_one_line_and_the_rest_go_on(tmp_path):
    # GIVEN no `dagger` on PATH for the whole-run parts: (d) fails, and (c) still runs
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--parts", "d", "c"],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/nonexistent", "HOME": str(tmp_path), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("(d)") and "FAILED" in line and "FileNotFoundError" in line for line in lines)
    # AND (c), the loss on one batch, falls (the dry run's one run of it)
    assert any(line.startswith("(c)") and "falls" in line for line in lines) or not HAVE_PI0
