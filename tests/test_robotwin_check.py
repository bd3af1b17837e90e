"""`dagger check robotwin-adjust-bottle` on a machine without RoboTwin, its assets or an NVIDIA GPU: every check that
cannot pass says why and what to do; fake asset trees, a fake checkout and tiny π₀ models make the others pass."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from conftest import requires_pi0
from test_cli import dagger

PRESET = "robotwin-adjust-bottle"
FAKE_ROBOTWIN = Path(__file__).parent / "fake_robotwin"
CHECK_NAMES = ["config", "torch", "packages", "robotwin source", "assets", "environment", "planner", "seeds",
               "renderer", "env", "student", "expert"]
PINNED_REVISION = "c15cc97be71e35244b6605d2d84c187f8565cc4d"


def _installed(dist: str) -> bool:
    try:
        version(dist)
        return True
    except PackageNotFoundError:
        return False


def check_json(*args, env=None) -> tuple[dict, dict]:
    """`dagger check PRESET --json ARGS`: (the whole result, its checks by name); never a traceback, exit 3 on a
    failure."""
    result = dagger("check", PRESET, "--json", *args, env=env)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    payload = json.loads(result.stdout)
    assert result.returncode == (0 if payload["ok"] else 3), result.stderr
    return payload, {c["name"]: c for c in payload["checks"]}


def make_assets(root: Path) -> Path:
    """The asset layout RoboTwin reads for adjust_bottle on aloha-agilex (empty files where content is not read)."""
    emb = root / "assets" / "embodiments" / "aloha-agilex"
    bottle = root / "assets" / "objects" / "001_bottle"
    for folder in (root / "assets" / "background_texture" / "seen", emb / "urdf", bottle):
        folder.mkdir(parents=True)
    (emb / "urdf" / "arx5_description_isaac.urdf").write_text("<robot name='aloha'/>")
    (emb / "config.yml").write_text(
        "urdf_path: ./urdf/arx5_description_isaac.urdf\n"
        "move_group: [fl_link6, fr_link6]\nee_joints: [fl_joint6, fr_joint6]\n"
        "arm_joints_name: [[fl_joint1], [fr_joint1]]\ngripper_name: [fl, fr]\ngripper_bias: 0.12\n"
        "static_camera_list:\n  - name: head_camera\n    position: [0, -0.45, 1.35]\n"
    )
    for arm in ("left", "right"):
        (emb / f"curobo_{arm}_tmp.yml").write_text("robot_cfg: {}\n")
    for i in (13, 16):
        (bottle / f"model_data{i}.json").write_text("{}")
        (bottle / f"base{i}.glb").write_bytes(b"glTF")
    (root / ".robotwin-assets.json").write_text(json.dumps({"revision": PINNED_REVISION}))
    return root


def make_checkout(folder: Path) -> Path:
    """A RoboTwin checkout's layout: the shared fake runtime (tests/fake_robotwin), robotwin/ and envs/."""
    shutil.copytree(FAKE_ROBOTWIN, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.mark.skipif(_installed("rlinf-robotwin-runtime") or shutil.which("nvidia-smi") is not None,
                    reason="expects a machine without RoboTwin's runtime and without an NVIDIA GPU")
def test_check_as_shipped_fails_with_one_clear_line_per_problem(tmp_path):
    # GIVEN the preset as shipped, a home without assets or checkpoints, no RoboTwin, no NVIDIA GPU
    env = {"HOME": str(tmp_path), "ROBOTWIN_PATH": "", "ROBOTWIN_ASSETS_ROOT": "", "DAGGER_HOME": ""}
    # WHEN it is checked (human output)
    human = dagger("check", PRESET, env=env)
    # THEN it exits 3 without a traceback, and the RoboTwin lines say what is missing and how to get it
    assert human.returncode == 3, human.stdout + human.stderr
    assert "Traceback" not in human.stdout + human.stderr
    lines = {line[2:].split(":", 1)[0]: line for line in human.stdout.splitlines() if line[:1] in "✓✗"}
    assert lines["robotwin source"].startswith("✗") and "pip install --no-deps rlinf-robotwin-runtime" in lines[
        "robotwin source"]
    assert lines["assets"].startswith("✗") and f"{tmp_path}/.cache/dagger/robotwin does not exist" in lines["assets"]
    assert "robotwin-download-assets --output" in lines["assets"]
    assert lines["renderer"].startswith("✗") and "NVIDIA GPU" in lines["renderer"] and "Vulkan" in lines["renderer"]
    assert lines["env"].startswith("✗ env: skipped:")
    # WHEN it is checked with --json
    result, checks = check_json(env=env)
    # THEN ok is false (exit 3) and every check is there, in order
    assert result["ok"] is False and result["preset"] == PRESET
    assert [c["name"] for c in result["checks"]] == CHECK_NAMES
    assert not checks["robotwin source"]["ok"] and not checks["assets"]["ok"] and not checks["renderer"]["ok"]
    assert checks["student"]["detail"].endswith("fetch it with `dagger fetch pi0-robotwin`")


def test_check_passes_a_complete_asset_tree_and_names_a_missing_file(tmp_path):
    # GIVEN a complete asset tree for adjust_bottle on aloha-agilex
    root = make_assets(tmp_path / "robotwin")
    # WHEN the preset is checked against it
    _, checks = check_json("--set", f"env.assets_path={root}")
    # THEN the assets and environment lines pass, with the embodiment, the bottle models and the revision
    assert checks["assets"]["ok"], checks["assets"]
    assert "aloha-agilex" in checks["assets"]["detail"] and "001_bottle models 13/16" in checks["assets"]["detail"]
    assert "c15cc97b" in checks["assets"]["detail"]
    assert checks["environment"]["ok"] and f"ROBOTWIN_ASSETS_ROOT={root}" in checks["environment"]["detail"]
    assert "ROBOT_PLATFORM=ALOHA" in checks["environment"]["detail"]
    # GIVEN one of the two bottle models lacks its model data
    (root / "assets" / "objects" / "001_bottle" / "model_data16.json").unlink()
    # WHEN checked again
    _, checks = check_json("--set", f"env.assets_path={root}")
    # THEN the assets line fails naming that file and how to fetch the assets
    assert not checks["assets"]["ok"]
    assert "assets/objects/001_bottle/model_data16.json" in checks["assets"]["detail"]
    assert f"robotwin-download-assets --output {root}" in checks["assets"]["detail"]
    assert "model_data13" not in checks["assets"]["detail"]


def test_assets_check_names_a_missing_urdf_and_a_config_without_head_camera(tmp_path):
    from dagger_cli.envs.robotwin.probes import assets as _robotwin_assets
    from dagger_cli.core.config_loader import load_config

    # GIVEN a complete tree whose embodiment config names a URDF that is not there
    root = make_assets(tmp_path / "robotwin")
    cfg = load_config(PRESET, overrides=[f"env.assets_path={root}"])
    config = root / "assets" / "embodiments" / "aloha-agilex" / "config.yml"
    config.write_text(config.read_text().replace("arx5_description_isaac.urdf", "gone.urdf"))
    # WHEN / THEN the assets check fails naming the URDF path
    with pytest.raises(RuntimeError, match=r"urdf_path .*urdf/gone\.urdf does not exist"):
        _robotwin_assets(cfg)
    # GIVEN a config without the head camera
    config.write_text(config.read_text().replace("gone.urdf", "arx5_description_isaac.urdf").replace(
        "head_camera", "front_camera"))
    # WHEN / THEN it fails saying so
    with pytest.raises(RuntimeError, match="static_camera_list has no head_camera"):
        _robotwin_assets(cfg)


def test_robotwin_source_from_a_checkout(tmp_path, monkeypatch):
    # GIVEN ROBOTWIN_PATH pointing at a checkout with robotwin/envs/vector_env.py and the envs/ task files
    checkout = make_checkout(tmp_path / "RoboTwin")
    # WHEN the preset is checked
    _, checks = check_json(env={"ROBOTWIN_PATH": str(checkout)})
    # THEN the source line passes, naming ROBOTWIN_PATH (VectorEnv imported from it)
    assert checks["robotwin source"]["ok"], checks["robotwin source"]
    assert f"ROBOTWIN_PATH={checkout}" in checks["robotwin source"]["detail"]
    assert "VectorEnv imports" in checks["robotwin source"]["detail"]
    # AND (the preset's bundled seed lists, moved here from a check of their own) both lists load, with RLinf's counts
    # and how many of them RLinf's pick (4 workers of 16 envs) uses
    assert checks["seeds"]["ok"], checks["seeds"]
    assert "train 1000 seeds from train_seeds.json (bundled), 960 in RLinf's pick" in checks["seeds"]["detail"]
    assert "eval 150 seeds from eval_seeds.json (bundled), 128 in RLinf's pick" in checks["seeds"]["detail"]
    # GIVEN the checkout lacks the task's module
    (checkout / "envs" / "adjust_bottle.py").unlink()
    monkeypatch.setenv("ROBOTWIN_PATH", str(checkout))
    from dagger_cli.envs.robotwin.probes import source as _robotwin_source
    from dagger_cli.core.config_loader import load_config

    # WHEN / THEN the source check fails naming the file (before importing anything)
    with pytest.raises(RuntimeError, match=r"lacks envs/adjust_bottle\.py; point it at a RoboTwin checkout"):
        _robotwin_source(load_config(PRESET))


def test_seeds_line_names_the_key_and_the_bad_file(tmp_path):
    # GIVEN a training seeds file that is not JSON
    bad = tmp_path / "train_seeds.json"
    bad.write_text("{not json")
    # WHEN the preset is checked with it
    _, checks = check_json("--set", f"env.robotwin.train_seeds_path={bad}")
    # THEN the seeds line fails naming the key and the file, and says what to do
    assert not checks["seeds"]["ok"]
    assert "env.robotwin.train_seeds_path" in checks["seeds"]["detail"] and str(bad) in checks["seeds"]["detail"]
    assert "train_seeds_path=null" in checks["seeds"]["detail"]
    # AND the env line is skipped because of it, not attempted
    assert checks["env"]["detail"].startswith("skipped:")


@requires_pi0
def test_student_and_expert_build_tiny_pi0_and_name_missing_files(robotwin_checkpoint_dir, tokenizer_path, tmp_path):
    # GIVEN the tiny π₀ checkpoint with RoboTwin's 14-D norm stats and the test tokenizer for both models
    checkpoint_dir = robotwin_checkpoint_dir
    tiny = []
    for key in ("actor.model", "rollout.expert_model"):
        tiny += ["--set", f"{key}.model_path={checkpoint_dir}", "--set", f"{key}.pi0.variant=tiny",
                 "--set", f"{key}.pi0.tokenizer_path={tokenizer_path}"]
    # WHEN the preset is checked
    _, checks = check_json(*tiny)
    # THEN the student and expert lines pass (they need torch only, not RoboTwin)
    assert checks["student"]["ok"] and checks["expert"]["ok"], (checks["student"], checks["expert"])
    assert f"loaded {checkpoint_dir}" in checks["student"]["detail"] and "tiny π₀" in checks["expert"]["detail"]
    # GIVEN the student's tokenizer and the expert's checkpoint are missing
    missing = [*tiny, "--set", f"actor.model.pi0.tokenizer_path={tmp_path / 'tok.model'}",
               "--set", f"rollout.expert_model.model_path={tmp_path / 'expert'}"]
    # WHEN checked again
    _, checks = check_json(*missing)
    # THEN each line fails naming the missing file
    assert not checks["student"]["ok"] and str(tmp_path / "tok.model") in checks["student"]["detail"]
    assert not checks["expert"]["ok"] and str(tmp_path / "expert") in checks["expert"]["detail"]
    assert "rollout.expert_model.model_path" in checks["expert"]["detail"]


# RENDERER PROBE: how the subprocess's outcomes become lines (the real probe cannot succeed without a GPU)
def test_renderer_probe_that_hangs_is_killed_and_reported():
    import time

    from dagger_cli.envs.robotwin.probes import renderer as _robotwin_renderer

    # GIVEN a probe that never finishes WHEN it runs with a 1 s limit
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"SAPIEN hung rendering for 1 s \(known on some H100 hosts"):
        _robotwin_renderer(probe="import time; time.sleep(60)", timeout=1)
    # THEN it was killed at the limit
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(("error", "expected"), [
    ("RuntimeError: failed to find a rendering device", "no usable Vulkan device; RoboTwin needs an NVIDIA GPU"),
    ("RuntimeError: vk::PhysicalDevice::createDeviceUnique: ErrorExtensionNotPresent",
     "lacks VK_KHR_external_memory_fd/VK_KHR_external_semaphore_fd"),
    ("ModuleNotFoundError: No module named 'sapien'", "pip install 'sapien==3.0.0b1'"),
])
def test_renderer_maps_sapien_errors_to_what_to_do(error, expected):
    from dagger_cli.envs.robotwin.probes import renderer as _robotwin_renderer

    # GIVEN a probe failing as SAPIEN does WHEN it runs THEN the line says what it means
    probe = f"import sys; sys.exit({error!r})"
    with pytest.raises(RuntimeError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        _robotwin_renderer(probe=probe, timeout=30)


def test_renderer_reports_the_device_and_warns_on_a_cpu_one():
    from dagger_cli.envs.robotwin.probes import renderer as _robotwin_renderer

    # GIVEN probes that render a frame on a GPU and on lavapipe WHEN they run THEN the line names the device
    ok = "print('device: NVIDIA H100'); print('frame: (64, 64, 4)')"
    assert "ray-traced frame on NVIDIA H100" in _robotwin_renderer(probe=ok, timeout=30)
    cpu = "print('device: llvmpipe (LLVM 15.0.6, 256 bits)'); print('frame: (64, 64, 4)')"
    assert "warning: a CPU Vulkan device" in _robotwin_renderer(probe=cpu, timeout=30)
