"""`dagger train --async --ray-address`: joining a Ray cluster started apart (`ray start --head`), as on a cluster."""

import json
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import requires_maniskill
from test_cli import dagger
from test_cli_sim import SMALL

pytest.importorskip("ray")
pytestmark = [requires_maniskill, pytest.mark.sim]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster():
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    start = ["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             f"--temp-dir={temp}", "--disable-usage-stats"]
    result = subprocess.run(start, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(temp, ignore_errors=True)


def test_train_async_joins_an_existing_cluster(cluster, tmp_path):
    # GIVEN a Ray cluster started apart; WHEN an async run joins it by address
    run = tmp_path / "run"
    result = dagger("train", "pick-cube", "--async", "--ray-address", cluster, "--run-dir", str(run), "--json",
                    "--set", "runner.max_epochs=2", "--set", "runner.eval_expert=false", *SMALL)
    # THEN the run finishes on it, and the cluster outlives the run (dagger only shuts down a Ray it started)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["iterations"] == 2
    alive = subprocess.run(["ray", "status", f"--address={cluster}"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "RAY_AUTH_MODE": "token"})
    assert alive.returncode == 0, alive.stderr


def test_an_unreachable_cluster_is_one_line(tmp_path):
    result = dagger("train", "pick-cube", "--async", "--ray-address", f"127.0.0.1:{free_port()}",
                    "--run-dir", str(tmp_path / "run"), "--set", "runner.max_epochs=1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot join the Ray cluster at 127.0.0.1:" in result.stderr and "nothing answers there" in result.stderr
    assert not (tmp_path / "run").exists()
