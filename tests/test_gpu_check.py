"""`bench/gpu_check.py --dry-run`: every part of the one-shot GPU check at small sizes on the CPU, so that the
script a GPU session runs once is known to work. The parts that whole other tests already run are run here only as
far as the bench's own code goes: (d)'s and (f)'s `dagger train pick-cube` runs (tests/test_cli_sim.py trains
pick-cube on the real ManiSkill, sync and async) go to a stand-in `dagger` that loads their config as dagger does, and
(c) runs once, in the failing-part test."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HAVE_LIBERO, HAVE_MANISKILL, HAVE_PI0

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"

STAND_IN = """#!{python}
\"\"\"`dagger train` for (d)'s and (f)'s runs: the config loaded as `dagger train` loads it (an unknown key or bad value
fails here as there), the call recorded, and the metrics.jsonl of a run: (d)'s (run dir pick-cube-gpu-sim) stays at
50%, (f)'s reach 100% at iteration 1.\"\"\"
import json, sys
from pathlib import Path

from dagger_cli.core.config_loader import load_config

args = sys.argv[1:]
run_dir = Path(args[args.index("--run-dir") + 1])
cfg = load_config(args[1], overrides=[args[i + 1] for i, a in enumerate(args) if a == "--set"])
with open({log!r}, "a") as log:
    log.write(json.dumps({{"args": args, "run": run_dir.name, "epochs": cfg.runner.max_epochs,
                          "episodes": cfg.env.eval.num_episodes, "val_check_interval": cfg.runner.val_check_interval,
                          "sim_backend": cfg.env.sim_backend, "num_envs": cfg.env.num_envs}}) + "\\n")
run_dir.mkdir(parents=True)
sr = 0.5 if run_dir.name == "pick-cube-gpu-sim" else 1.0
rows = [{{"step": 0}}, {{"step": 1, "eval/success_once": sr, "time/elapsed_s": 7.0}}]
(run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
print(json.dumps({{"iterations": 1}}))
"""


@pytest.mark.sim
@pytest.mark.skipif(
    not (HAVE_PI0 and HAVE_MANISKILL and HAVE_LIBERO), reason="needs the pi0, maniskill and libero extras"
)
def test_dry_run_runs_every_part(tmp_path):
    # GIVEN a `dagger` on PATH that stands in for the whole runs of (d) and (f)
    bin_dir, log = tmp_path / "bin", tmp_path / "stand-in.jsonl"
    bin_dir.mkdir()
    stand_in = bin_dir / "dagger"
    stand_in.write_text(STAND_IN.format(python=sys.executable, log=str(log)))
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
    # AND (d) ran `dagger train pick-cube` on ManiSkill's CPU simulation with 2 envs, then (f) sync and --async, each
    # with a config dagger accepts (the dry run's sizes win), and reported each run's time to 95%
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["run"], "--async" in c["args"]) for c in calls] == [
        ("pick-cube-gpu-sim", False), ("pick-cube-sync", False), ("pick-cube-async", True)]
    assert all(c["args"][:2] == ["train", "pick-cube"] and c["epochs"] == 1 and c["val_check_interval"] == 1
               for c in calls)
    assert (calls[0]["sim_backend"], calls[0]["num_envs"]) == ("cpu", 2)
    assert [c["episodes"] for c in calls[1:]] == [2, 2]
    assert rows[6]["measured"] == "pick-cube, ManiSkill cpu simulation, 2 envs"
    assert rows[6]["result"].startswith("not reached (final 50%, ")
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


@pytest.mark.skipif(not HAVE_PI0, reason="needs the pi0 extra")
def test_dry_run_covers_pi05(tmp_path):
    """(g): a tiny π0.5 student's learner step beside a resident π0.5 expert (libero-spatial-pi05's expert kind,
    horizon 10), then both sample_actions latencies, the expert at the preset's 10 denoising steps."""
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--parts", "g", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["part"] for r in rows] == ["(g)"] * 5
    assert rows[0]["measured"] == "π0.5 learner step, full fine-tune, micro-batch 2" and "s/step" in rows[0]["result"]
    assert [r["measured"] for r in rows[1:]] == [
        f"sample_actions, π0.5 {who} in bfloat16, batch {batch}, {steps} steps"
        for who, steps in (("student", 4), ("expert", 10)) for batch in (1, 4)]
