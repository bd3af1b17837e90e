"""`dagger check` probes of RoboTwin: packages and their pins, where RoboTwin comes from, the assets down to the
embodiment and the task's objects, the environment variables, the planner, the seed lists, and a ray-traced SAPIEN
frame in a subprocess with a timeout (SAPIEN can hang)."""

from __future__ import annotations

import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dagger_cli.core.registry import Probe
from dagger_cli.envs._probes import run_probe

ROBOTWIN_PINS = {"sapien": "3.0.0b1", "mplib": "0.2.1", "toppra": "0.6.3", "open3d": "0.18.0", "trimesh": "4.4.3",
                 "transforms3d": "0.4.2", "gymnasium": "0.29.1", "numpy": "1.26.4"}
ROBOTWIN_ASSETS_REVISION = "c15cc97be71e35244b6605d2d84c187f8565cc4d"  # what rlinf-robotwin-runtime accepts
ROBOTWIN_TASK_OBJECTS = {"adjust_bottle": ("001_bottle", (13, 16))}  # object folder, model ids the task draws
EMBODIMENT_KEYS = ("urdf_path", "move_group", "ee_joints", "arm_joints_name", "gripper_name", "gripper_bias",
                   "static_camera_list")
RENDER_TIMEOUT_S = 60
# SAPIEN as RoboTwin sets it up (ray-traced camera, OIDN denoiser), one 64×64 frame; stages print as they pass
RT_PROBE = """
import warnings; warnings.simplefilter("ignore")
import sapien
sapien.render.set_camera_shader_dir("rt")
sapien.render.set_ray_tracing_samples_per_pixel(4)
sapien.render.set_ray_tracing_path_depth(2)
sapien.render.set_ray_tracing_denoiser("oidn")
render = sapien.render.RenderSystem()
print("device:", getattr(render.device, "name", "?"), flush=True)
scene = sapien.Scene([sapien.physx.PhysxCpuSystem(), render])
scene.add_ground(0)
scene.set_ambient_light([0.5, 0.5, 0.5])
camera = scene.add_camera("probe", 64, 64, 1.0, 0.01, 10.0)
camera.set_local_pose(sapien.Pose([-1, 0, 0.5]))
scene.update_render()
camera.take_picture()
print("frame:", tuple(camera.get_picture("Color").shape), flush=True)
"""


def probes(cfg) -> list[Probe]:
    return [
        Probe("packages", packages),
        Probe("robotwin source", lambda: source(cfg)),
        Probe("assets", lambda: assets(cfg)),
        Probe("environment", lambda: environment(cfg)),
        Probe("planner", lambda: planner(cfg)),
        Probe("seeds", lambda: seeds(cfg)),
        Probe("renderer", renderer),
    ]


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def runtime_mode() -> str | None:
    """`checkout` when ROBOTWIN_PATH is set (it shadows the package), `runtime` when the package is installed."""
    if os.environ.get("ROBOTWIN_PATH"):
        return "checkout"
    return "runtime" if _version("rlinf-robotwin-runtime") else None


def packages() -> str:
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if py not in ("3.10", "3.11"):
        raise RuntimeError(f"Python {py}: RoboTwin's runtime needs Python 3.10 or 3.11; use a 3.10/3.11 environment")
    found = {name: _version(name) for name in ROBOTWIN_PINS}
    have = ", ".join(f"{n} {v}" for n, v in found.items() if v)
    missing = [n for n, v in found.items() if not v]
    if missing:
        pins = " ".join(f"'{n}=={ROBOTWIN_PINS[n]}'" for n in missing)
        raise RuntimeError(f"missing {', '.join(missing)}: pip install {pins} (RoboTwin's pins; docs/robotwin.md)"
                           + (f"; found {have}" if have else ""))
    warnings = [f"{n} {found[n]} is not RoboTwin's {ROBOTWIN_PINS[n]}" for n in ("sapien", "mplib", "gymnasium")
                if found[n] != ROBOTWIN_PINS[n]]
    if int(found["numpy"].split(".")[0]) >= 2:
        warnings.append(f"numpy {found['numpy']} (RoboTwin pins {ROBOTWIN_PINS['numpy']}, <2)")
    return f"Python {py}; {have}" + (f"; warning: {'; '.join(warnings)}" if warnings else "")


def source(cfg) -> str:
    import importlib.util

    from dagger_cli.core.errors import DaggerError
    from dagger_cli.envs.robotwin.env import INSTALL_HINT, import_vector_env

    runtime, mode = _version("rlinf-robotwin-runtime"), runtime_mode()
    if mode == "checkout":
        checkout = os.environ["ROBOTWIN_PATH"]
        files = ("robotwin/envs/vector_env.py", "envs/_base_task.py", f"envs/{cfg.env.task}.py")
        lacking = [f for f in files if not Path(checkout, f).is_file()]
        if lacking:
            raise RuntimeError(f"ROBOTWIN_PATH={checkout} lacks {', '.join(lacking)}; point it at a RoboTwin checkout "
                               "(RoboTwin-Platform/RoboTwin, branch RLinf_support) or unset it")
        source = f"checkout ROBOTWIN_PATH={checkout}"
        notes = _checkout_patch_warnings()
        if runtime:
            notes.append(f"it shadows the installed rlinf-robotwin-runtime {runtime}; unset ROBOTWIN_PATH to use that")
    elif mode == "runtime":
        source, notes = f"rlinf-robotwin-runtime {runtime}", []
    else:
        raise RuntimeError(f"RoboTwin is not installed (no rlinf-robotwin-runtime, ROBOTWIN_PATH unset); "
                           f"{INSTALL_HINT}")
    start = time.perf_counter()
    try:
        import_vector_env()
        if mode == "runtime" and importlib.util.find_spec(f"robotwin.envs.{cfg.env.task}") is None:
            raise RuntimeError(f"{source} has no task robotwin.envs.{cfg.env.task}; check env.task")
    except DaggerError:
        raise
    except Exception as e:  # noqa: BLE001 - RoboTwin's import chain can raise anything
        text = (str(e).strip().splitlines() or [""])[0]
        raise RuntimeError(f"{source}: importing VectorEnv failed ({type(e).__name__}: {text}); "
                           "see the packages line, or reinstall RoboTwin") from None
    detail = f"{source}; VectorEnv imports in {time.perf_counter() - start:.1f} s"
    return detail + (f"; warning: {'; '.join(notes)}" if notes else "")


def _checkout_patch_warnings() -> list[str]:
    """RoboTwin's install script patches SAPIEN's URDF loader and mplib's planner; a checkout relies on that."""
    import importlib.util

    patches = [("sapien", "wrapper/urdf_loader.py", lambda text: 'encoding="utf-8"' in text),
               ("mplib", "planner.py", lambda text: "or collide or not within_joint_limit" not in text)]
    warnings = []
    for package, file, applied in patches:
        spec = importlib.util.find_spec(package)
        path = Path(spec.submodule_search_locations[0], file) if spec and spec.submodule_search_locations else None
        if path and path.is_file() and not applied(path.read_text(errors="replace")):
            warnings.append(f"{path} lacks RoboTwin's patch (run its script/_install.sh patch step)")
    return warnings


def assets(cfg) -> str:
    from dagger_cli.envs.robotwin.env import assets_root

    root = assets_root(cfg.env.assets_path)
    fetch = f"fetch them with `robotwin-download-assets --output {root}` (from rlinf-robotwin-runtime)"
    if not root.is_dir():
        raise RuntimeError(f"env.assets_path {root} does not exist; {fetch}")
    embodiment = root / "assets" / "embodiments" / cfg.env.robotwin.embodiment
    needed = [root / "assets" / "background_texture", embodiment / "config.yml"]
    if runtime_mode() != "checkout":  # the runtime package reads them even with planner_backend mplib
        needed += [embodiment / "curobo_left_tmp.yml", embodiment / "curobo_right_tmp.yml"]
    missing = [str(p.relative_to(root)) for p in needed if not p.exists()]
    objects = _missing_task_objects(root, cfg.env.task)
    if missing or objects:
        raise RuntimeError(f"{root} lacks {', '.join(missing + objects)}; {fetch}")
    urdf = _embodiment_urdf(embodiment, fetch)
    folder, ids = ROBOTWIN_TASK_OBJECTS.get(cfg.env.task, (None, ()))
    used = f", {folder} models {'/'.join(map(str, ids))}" if folder else ""
    return f"{root}: {embodiment.name} ({urdf}){used}; {_assets_revision(root, fetch)}"


def _missing_task_objects(root: Path, task: str) -> list[str]:
    """The task's object files RoboTwin loads: model_data<id>.json and a mesh (base<id>.glb or textured<id>.obj,
    in the object folder or its visual/ and collision/)."""
    if task not in ROBOTWIN_TASK_OBJECTS:
        return []
    name, ids = ROBOTWIN_TASK_OBJECTS[task]
    folder = root / "assets" / "objects" / name
    missing = []
    for i in ids:
        if not (folder / f"model_data{i}.json").is_file():
            missing.append(f"assets/objects/{name}/model_data{i}.json")
        names = (f"base{i}.glb", f"textured{i}.obj")
        meshes = [d / n for d in (folder, folder / "visual", folder / "collision") for n in names]
        if not any(m.is_file() for m in meshes):
            missing.append(f"assets/objects/{name}/base{i}.glb (or textured{i}.obj)")
    return missing


def _embodiment_urdf(embodiment: Path, fetch: str) -> str:
    import yaml

    path = embodiment / "config.yml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RuntimeError(f"{path} is not readable YAML ({type(e).__name__}); {fetch}") from None
    lacking = [k for k in EMBODIMENT_KEYS if k not in data] if isinstance(data, dict) else list(EMBODIMENT_KEYS)
    if lacking:
        raise RuntimeError(f"{path} lacks {', '.join(lacking)}; {fetch}")
    cameras = [c.get("name") if isinstance(c, dict) else c for c in data["static_camera_list"] or []]
    if "head_camera" not in cameras:
        raise RuntimeError(f"{path}: static_camera_list has no head_camera (has {cameras}); {fetch}")
    for key in ("urdf_path", "srdf_path"):
        if data.get(key) and not (embodiment / data[key]).is_file():
            raise RuntimeError(f"{path}: {key} {embodiment / data[key]} does not exist; {fetch}")
    return data["urdf_path"]


def _assets_revision(root: Path, fetch: str) -> str:
    manifest = root / ".robotwin-assets.json"
    if not manifest.is_file():
        return "warning: no .robotwin-assets.json (not fetched by robotwin-download-assets; revision unknown)"
    try:
        revision = json.loads(manifest.read_text()).get("revision")
    except (OSError, ValueError, AttributeError):
        revision = None
    if revision == ROBOTWIN_ASSETS_REVISION:
        return f"assets revision {revision[:8]} (the pinned one)"
    if runtime_mode() == "runtime":  # its VectorEnv refuses any other revision
        raise RuntimeError(f"{manifest}: revision {revision!r}, rlinf-robotwin-runtime needs "
                           f"{ROBOTWIN_ASSETS_REVISION[:8]}; {fetch} (into an empty folder)")
    return f"warning: assets revision {revision!r}, not the pinned {ROBOTWIN_ASSETS_REVISION[:8]}"


def environment(cfg) -> str:
    from dagger_cli.envs.robotwin.env import set_environment

    values = set_environment(cfg.env.assets_path)  # one line naming env.assets_path when there is none
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    if values.get("ROBOT_PLATFORM") != "ALOHA":
        shown += f"; warning: ROBOT_PLATFORM={values.get('ROBOT_PLATFORM')}, RLinf exports ALOHA"
    return shown


def planner(cfg) -> str:
    """mplib time-parametrises every chunk whatever the backend; curobo plans only when chosen."""
    import importlib

    backend = cfg.env.robotwin.planner_backend
    pins = f"pip install 'mplib=={ROBOTWIN_PINS['mplib']}' 'toppra=={ROBOTWIN_PINS['toppra']}'"
    for module in ("mplib", "toppra") + (("curobo",) if backend == "curobo" else ()):
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - a broken native extension raises anything
            if module == "curobo":
                raise RuntimeError("env.robotwin.planner_backend curobo: cuRobo is not importable; set env.robotwin."
                                   "planner_backend=mplib or install cuRobo (NVlabs/curobo, needs CUDA)") from None
            raise RuntimeError(f"{module} is not importable ({type(e).__name__}: {e}); {pins}") from None
    mplib = _version("mplib")
    detail = f"{backend}: mplib {mplib}, toppra {_version('toppra')}"
    if backend == "curobo":
        detail += f", curobo {_version('nvidia_curobo') or _version('curobo') or '(source)'}"
    if mplib != ROBOTWIN_PINS["mplib"]:
        detail += f"; warning: RoboTwin pins mplib {ROBOTWIN_PINS['mplib']}"
    return detail


def seeds(cfg) -> str:
    from dagger_cli.core.errors import ConfigError
    from dagger_cli.envs.robotwin.env import bundled_seeds, load_seeds, reset_order

    r, parts = cfg.env.robotwin, []
    for kind, path in (("train", r.train_seeds_path), ("eval", r.eval_seeds_path)):
        try:
            found = load_seeds(path, kind, cfg.env.task)
        except ConfigError as e:
            raise RuntimeError(f"{e}; give a JSON as {{\"{cfg.env.task}\": {{\"success_seeds\": [...]}}}} "
                               f"or set env.robotwin.{kind}_seeds_path=null for the bundled list") from None
        name = Path(path).name if path else f"{bundled_seeds(kind).name} (bundled)"
        parts.append(f"{kind} {len(found)} seeds from {name}, {len(reset_order(found))} in RLinf's pick")
    return ", ".join(parts)


def _nvidia_gpu() -> str | None:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], check=False, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0] if out.returncode == 0 and lines else None


def _vulkan_icds() -> list[str]:
    icds = [f"{d}/nvidia_icd.json" for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d")
            if Path(d, "nvidia_icd.json").is_file()]
    for var in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES"):
        icds += [f for f in os.environ.get(var, "").split(os.pathsep) if f]
    return icds


def renderer(probe: str = RT_PROBE, timeout: float = RENDER_TIMEOUT_S) -> str:
    gpu, icds = _nvidia_gpu(), _vulkan_icds()
    host = (gpu or "no NVIDIA GPU (nvidia-smi missing or failing)") + ", " + (
        f"Vulkan ICD {', '.join(icds)}" if icds else "no NVIDIA Vulkan ICD (nvidia_icd.json, VK_ICD_FILENAMES)")
    code, out, err = run_probe(probe, timeout)
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    if code is None:
        raise RuntimeError(f"{host}: SAPIEN hung rendering for {timeout:g} s (known on some H100 hosts, "
                           "haosulab/SAPIEN#250); try another host or driver")
    if code == 0 and "frame" in lines:
        device = lines.get("device", "?")
        cpu = any(s in device.lower() for s in ("llvmpipe", "lavapipe"))
        note = "; warning: a CPU Vulkan device, far too slow for RoboTwin" if cpu else ""
        return f"{host}; SAPIEN renders a ray-traced frame on {device}{note}"
    raise RuntimeError(f"{host}: {_render_failure(err, 'device' in lines)}")


def _render_failure(err: str, had_device: bool) -> str:
    last = (err.strip().splitlines() or ["no output"])[-1]
    if "failed to find a rendering device" in err:
        return ("SAPIEN found no usable Vulkan device; RoboTwin needs an NVIDIA GPU with the driver's Vulkan ICD "
                "(nvidia_icd.json, libnvidia-gl)")
    if "ErrorExtensionNotPresent" in err:
        return ("the Vulkan driver lacks VK_KHR_external_memory_fd/VK_KHR_external_semaphore_fd (not an NVIDIA GPU, "
                "e.g. lavapipe); RoboTwin needs an NVIDIA GPU with its Vulkan driver")
    if "No module named 'sapien'" in err:
        return f"sapien is not importable; pip install 'sapien=={ROBOTWIN_PINS['sapien']}'"
    stage = "rendering a ray-traced frame (rt shader, oidn denoiser)" if had_device else "starting SAPIEN's renderer"
    return f"{stage} failed ({last}); RoboTwin needs an NVIDIA GPU with Vulkan (and CUDA for the denoiser)"
