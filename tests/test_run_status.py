"""A run's status as `dagger report` shows it: a run killed mid-way (its summary.json still says `running`) is shown
as `died`; a live run stays `running`."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from conftest import PointEnv, PointExpert, point_config
from dagger_cli.core.io import process
from dagger_cli.core.protocols import RunnerHooks
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.policies.mlp import MLPPolicy
from test_cli import dagger

TESTS = Path(__file__).resolve().parent

SETS = {"runner.max_epochs": 3, "runner.save_interval": 1, "env.eval.num_episodes": 2}

KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import PointEnv, PointExpert, point_config
from dagger_cli.core.protocols import RunnerHooks
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.policies.mlp import MLPPolicy

class KilledAfterFirstCheckpoint(RunnerHooks):
    def iteration_done(self, iteration, total, metrics):
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or `kill -9` would

cfg = point_config(**{sets!r})
run_dir = Path({run_dir!r})
run_dir.mkdir()
(run_dir / "config.yaml").write_text(cfg.to_yaml())
SyncRunner(cfg, run_dir, PointEnv(2), MLPPolicy(cfg.actor.model), PointExpert(), KilledAfterFirstCheckpoint(),
           tensorboard=False).run()
"""


def report(run_dir: Path) -> tuple[dict, str]:
    """(`dagger report --json`'s row for the run, the human table)"""
    result = dagger("report", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    human = dagger("report", str(run_dir), env={"COLUMNS": "300"})
    assert human.returncode == 0, human.stderr
    return json.loads(result.stdout)["runs"][0], human.stdout


def test_a_killed_run_is_reported_as_died(tmp_path):
    run_dir = tmp_path / "run"
    script = textwrap.dedent(KILLED_RUN).format(tests=str(TESTS), sets=SETS, run_dir=str(run_dir))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    written = json.loads((run_dir / "summary.json").read_text())
    assert written["status"] == "running" and written["iterations"] == 1  # what the dead run left
    row, human = report(run_dir)
    assert row["status"] == "died" and row["process"] == "gone" and row["pid"] == written["pid"]
    assert "died at 1/3" in human


class ReportWhileRunning(RunnerHooks):
    """Runs `dagger report` on the run from inside it, after its first checkpoint."""

    def __init__(self, run_dir):
        self.run_dir, self.seen = run_dir, None

    def iteration_done(self, iteration, total, metrics):
        if iteration == 1:
            self.seen = report(self.run_dir)


def test_a_live_run_is_reported_as_running(tmp_path):
    cfg = point_config(**SETS)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    torch.manual_seed(cfg.seed)
    hooks = ReportWhileRunning(run_dir)
    SyncRunner(cfg, run_dir, PointEnv(2), MLPPolicy(cfg.actor.model), PointExpert(), hooks, tensorboard=False).run()
    row, human = hooks.seen
    assert row["status"] == "running" and row["process"] == "alive" and row["pid"] == os.getpid()
    assert "running at 1/3" in human
    # AND the finished run is finished, whatever became of its process
    assert json.loads(dagger("report", str(run_dir), "--json").stdout)["runs"][0]["status"] == "finished"


def test_liveness_of_reaped_reused_and_foreign_pids():
    me = process.identity()
    assert process.liveness(me) == "alive"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process.liveness({**me, "pid": child.pid}) == "gone"
    if me["pid_started"] is not None:  # Linux: a pid that now names another process
        assert process.liveness({**me, "pid_started": me["pid_started"] - 1}) == "gone"
    assert process.liveness({**me, "host": socket.gethostname() + "-elsewhere"}) == "unknown"
    assert process.liveness({"status": "running"}) == "unknown"  # written before summaries named their writer
