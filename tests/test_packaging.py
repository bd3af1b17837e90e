"""The package as a wheel delivers it, not as the editable install of the suite sees it: built from the sources
offline, installed into a folder of its own, it holds every package and data file of the tree, and its `dagger`
runs `presets`, `report` and `export --format lerobot` (a hand-written package list once left out
dagger_cli.interop and dagger_cli.report)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import PointEnv, PointExpert, point_config
from dagger_cli.core.engine.runner import SyncRunner
from dagger_cli.policies.mlp import MLPPolicy

pytest.importorskip("pyarrow")  # export --format lerobot writes parquet
pytest.importorskip("setuptools", minversion="70.1")  # builds the wheel here, offline (the test extra installs it)

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "dagger_cli", "presets"]


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    shown = " ".join("LAUNCH" if "\n" in str(c) else str(c) for c in cmd)
    assert result.returncode == 0, f"{shown}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    return result


def source_files(root: Path) -> set[str]:
    """What the wheel must hold: each file of the package in the checkout (git's list where there is one), the
    presets as dagger_cli/presets."""
    listed = subprocess.run(["git", "ls-files", "dagger_cli", "presets"], cwd=root, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        files = [f for f in listed.stdout.splitlines() if (root / f).is_file() and not (root / f).is_symlink()]
    else:
        files = [str(p.relative_to(root)) for p in [*(root / "dagger_cli").rglob("*"), *(root / "presets").rglob("*")]
                 if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts]
    return {f"dagger_cli/{f}" if f.startswith("presets/") else f for f in files}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The wheel built from a copy of the sources (pip, setuptools, no network) and installed into `site/`."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp / "dist"), str(src)])
    (wheel,) = (tmp / "dist").glob("dagger_cli-*.whl")
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(tmp / "site"),
         str(wheel)])
    return tmp / "site", wheel


def test_the_wheel_holds_every_package_and_data_file(site):
    _, wheel = site
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = source_files(ROOT) - names
    assert not missing, f"not in the wheel: {sorted(missing)}"


LAUNCH = """
import atexit, os, runpy, sys
# the checkout's editable install (a finder setuptools appends to sys.meta_path) would fill in what the wheel lacks
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
site = os.path.realpath(os.environ["PYTHONPATH"])

def imported_from_elsewhere():
    outside = sorted(name for name, m in list(sys.modules.items()) if name.split(".")[0] == "dagger_cli"
                     and getattr(m, "__file__", None) and not os.path.realpath(m.__file__).startswith(site + os.sep))
    if outside:
        sys.stderr.write(f"imported from outside {site}: {outside}\\n")
        sys.stderr.flush()
        os._exit(99)

atexit.register(imported_from_elsewhere)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
"""runs the installed console script (argv[1]) with nothing of dagger_cli imported from outside PYTHONPATH"""


def test_the_installed_wheel_reports_and_exports_a_run(site, tmp_path):
    target, _ = site
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("DAGGER_DEBUG", None)
    away = tmp_path / "elsewhere"  # not the checkout: nothing is imported from it
    away.mkdir()
    # GIVEN the installed package, not the checkout's editable one
    dagger = [sys.executable, "-c", LAUNCH, str(target / "bin" / "dagger")]
    where = run([sys.executable, "-c", "import dagger_cli, dagger_cli.presets; print(dagger_cli.__file__); "
                 "print(dagger_cli.presets.__file__)"], env=env, cwd=away).stdout.split()
    assert all(Path(p).resolve().is_relative_to(target.resolve()) for p in where), where
    presets = json.loads(run([*dagger, "presets", "--json"], env=env, cwd=away).stdout)["presets"]
    assert "pick-cube" in {p["name"] for p in presets}
    # AND a run (made here, with the point env)
    cfg = point_config(**{"runner.max_epochs": 1, "env.eval.num_episodes": 2})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    torch.manual_seed(cfg.seed)
    SyncRunner(cfg, run_dir, PointEnv(2), MLPPolicy(cfg.actor.model), PointExpert(), tensorboard=False).run()
    # WHEN the installed dagger reports it and exports its buffer as a LeRobot dataset
    report = json.loads(run([*dagger, "report", str(run_dir), "--json"], env=env, cwd=away).stdout)
    exported = json.loads(run([*dagger, "export", str(run_dir), "--format", "lerobot", "--out", str(tmp_path / "ds"),
                               "--json"], env=env, cwd=away).stdout)
    # THEN both work
    assert report["runs"][0]["status"] == "finished" and report["runs"][0]["iterations"] == 1
    assert exported["frames"] > 0 and (tmp_path / "ds" / "meta" / "info.json").is_file()
