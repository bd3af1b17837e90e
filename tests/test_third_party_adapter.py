"""A third-party package adds an env and a policy through entry points alone: `tests/plugins/dagger-pointmass`,
installed here with pip into a folder of its own, is used by `dagger presets`, `check`, `train` and `eval`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import dagger

PLUGIN = Path(__file__).resolve().parent / "plugins" / "dagger-pointmass"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """PYTHONPATH for a pip install of the example package (its dist-info carries the entry points)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PLUGIN)], check=True, capture_output=True, timeout=300)
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def test_its_preset_is_listed_and_shown(plugin_env):
    listed = json.loads(dagger("presets", "--json", env=plugin_env).stdout)["presets"]
    assert {"name": "point-mass", "description": "linear student on a gymnasium point-mass task (a third-party "
            "adapter's preset)"} in listed
    shown = dagger("presets", "show", "point-mass", env=plugin_env)
    assert shown.returncode == 0 and "type: point-mass" in shown.stdout


def test_check_runs_its_probe_then_the_generic_checks(plugin_env):
    result = dagger("check", "point-mass", "--json", env=plugin_env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert list(checks) == ["config", "torch", "gymnasium", "env", "student", "expert"]
    assert "point-mass needs nothing else" in checks["gymnasium"]["detail"]
    assert checks["student"]["detail"].startswith("linear, 10 parameters, random init")
    assert "labels an observation with a (1, 2) action" in checks["expert"]["detail"]


def test_train_and_eval_through_the_entry_points(plugin_env, tmp_path):
    # GIVEN the plugin's preset; WHEN DAgger trains its linear student on its env
    run = tmp_path / "run"
    result = dagger("train", "point-mass", "--run-dir", str(run), "--json", env=plugin_env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # THEN the student goes from failing to solving the task, and `dagger eval` reproduces its final evaluation
    assert summary["student_init_sr"] <= 0.2 and summary["expert_sr"] == 1.0 and summary["student_final_sr"] >= 0.9
    evaluated = json.loads(dagger("eval", "--ckpt", str(run), "--json", env=plugin_env).stdout)
    assert evaluated["success_once"] == summary["student_final_sr"] and evaluated["episodes"] == 20


def test_its_config_section_is_as_strict_as_the_built_in_ones(plugin_env, tmp_path):
    typo = dagger("train", "point-mass", "--run-dir", str(tmp_path / "a"), "--set", "env.goal_radus=0.1", env=plugin_env)
    assert typo.returncode == 2 and "unknown key 'env.goal_radus' (did you mean 'env.goal_radius'?)" in typo.stderr
    bad = dagger("train", "point-mass", "--run-dir", str(tmp_path / "b"), "--set", "env.goal_radius=-1", env=plugin_env)
    assert bad.returncode == 2 and "env.goal_radius: must be positive, got -1.0" in bad.stderr
    wrong_type = dagger("train", "point-mass", "--run-dir", str(tmp_path / "c"), "--set", "env.speed=fast",
                        env=plugin_env)
    assert wrong_type.returncode == 2 and "env.speed: expected a number, got 'fast'" in wrong_type.stderr


def test_without_the_package_its_names_are_unknown(tmp_path):
    preset = dagger("train", "point-mass", "--run-dir", str(tmp_path / "a"))
    assert preset.returncode == 2 and "unknown preset 'point-mass'" in preset.stderr
    config = tmp_path / "c.yaml"
    config.write_text("env:\n  type: point-mas\n")
    result = dagger("train", "pick-cube", "--config", str(config), "--run-dir", str(tmp_path / "b"))
    assert result.returncode == 2 and "env.type: no env adapter 'point-mas'" in result.stderr
    assert "installed: libero, maniskill, robotwin" in result.stderr
