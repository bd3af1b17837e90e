"""`dagger check` probes of ManiSkill: the packages import, and whether the observation mode needs a renderer."""

from __future__ import annotations

from importlib.metadata import version


def simulator() -> str:
    from dagger_cli.envs.maniskill.env import import_maniskill

    import_maniskill()
    return f"mani-skill {version('mani-skill')}, sapien {version('sapien')}, gymnasium {version('gymnasium')}"


def renderer(env) -> str:
    from dagger_cli.envs.maniskill.env import ensure_physics_only_sapien

    device = ensure_physics_only_sapien()
    needs_render = env.obs_mode not in ("state", "state_dict")
    if device == "none" and needs_render:
        raise RuntimeError(
            f"env.obs_mode {env.obs_mode!r} needs a Vulkan render device and none was found; "
            "install libvulkan1 and mesa-vulkan-drivers (>= 25) or use obs_mode: state"
        )
    found = "Vulkan render device found" if device == "render" else "no render device (physics only)"
    return f"{found}; obs_mode {env.obs_mode} {'needs' if needs_render else 'does not need'} rendering"
