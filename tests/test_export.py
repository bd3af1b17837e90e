"""`dagger export RUN --format checkpoint`: the MLP student as a checkpoint directory of its own (π₀'s two layouts
are tested in test_pi0_lerobot.py)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from dagger_cli.core.io import checkpoint
from test_cli import dagger
from test_report import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("export") / "run"
    train(run_dir, **{"runner.max_epochs": 2})
    return run_dir


def test_an_mlp_student_exports_as_safetensors_and_config(run, tmp_path):
    out = tmp_path / "mlp"
    result = dagger("export", str(run), "--format", "checkpoint", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == str(out)
    exported = load_file(str(out / "model.safetensors"))
    trained = load_file(str(checkpoint.list_checkpoints(run / "checkpoints")[-1] / "student.safetensors"))
    assert exported.keys() == trained.keys() and all(torch.equal(exported[k], trained[k]) for k in trained)
    config = json.loads((out / "config.json").read_text())
    assert config == {"model_type": "mlp", "obs_dim": 2, "action_dim": 1, "num_action_chunks": 1, "hidden_dim": 32}
    # AND the export is a weights dir that a student (runner.ckpt_path, --ckpt with --preset) loads
    from dagger_cli import assembly
    from dagger_cli.core.io.run_dir import run_config

    student = assembly.student(run_config(run), "cpu", out)
    assert all(torch.equal(v, trained[k]) for k, v in student.module.state_dict().items())


@pytest.mark.parametrize("args, message", [
    (["--format", "lerobot-checkpoint"], "--format lerobot-checkpoint: a mlp student exports as checkpoint"),
    (["--out", "{run}"], "exists and is not empty"),
])
def test_bad_exports_are_one_line(run, args, message):
    result = dagger("export", str(run), *[a.format(run=run) for a in args])
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
