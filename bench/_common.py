"""Shared bench helpers: raw vector-env stepping with random actions, the yardstick every ratio is taken against."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np


def random_stepping_seconds(env, env_steps: int, episode_len: int = 50, seed: int = 0) -> float:
    """Seconds `env` takes for `env_steps` env steps (all envs together) with uniform random actions,
    resetting every `episode_len` steps, as the DAgger loop does."""
    rng = np.random.default_rng(seed)
    n = env.num_envs
    calls = max(1, env_steps // n)
    start = time.perf_counter()
    env.reset([int(s) for s in rng.integers(0, 2**31, n)])
    for k in range(calls):
        env.step(rng.uniform(-1, 1, size=(n, 1, env.action_dim)).astype(np.float32))
        if (k + 1) % episode_len == 0:
            env.reset([int(s) for s in rng.integers(0, 2**31, n)])
    return time.perf_counter() - start


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def dagger_json(*args: str) -> tuple[float, dict]:
    """Runs `dagger ARGS --json` (launch to exit); returns (wall seconds, its JSON result); exits on a failure."""
    start = time.perf_counter()
    result = subprocess.run(["dagger", *args, "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"dagger {args[0]} failed: {(result.stderr.strip().splitlines() or ['no output'])[-1]}")
    return wall, json.loads(result.stdout)


def short_task(instruction: str) -> str:
    """A LIBERO-Spatial instruction without the words every task shares ("between the plate and the ramekin")."""
    return instruction.removeprefix("pick up the black bowl ").removesuffix(" and place it on the plate")
