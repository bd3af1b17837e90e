"""Collection throughput of the DAgger loop vs raw vector-env stepping with the same envs.

    python bench/collection_throughput.py [--steps 4000] [--num-envs 2]

Both sides use the pick-cube preset's ManiSkill envs (CPU physics, one worker process per env). The DAgger side
runs `Rollout.collect` (coins, student forward, batched expert labels, bookkeeping) with a randomly initialised
MLP student and the scripted expert at several betas.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000, help="env steps per measurement, all envs together")
    parser.add_argument("--num-envs", type=int, default=2)
    args = parser.parse_args()

    import torch

    from _common import random_stepping_seconds, table
    from dagger_cli.core.config_loader import load_config
    from dagger_cli.core.engine.rollout import Rollout
    from dagger_cli.core.engine.rollout import torch_threads
    from dagger_cli.envs import make_scripted_expert, make_vec_env
    from dagger_cli.policies.mlp import MLPPolicy

    cfg = load_config("pick-cube")
    env_cfg = dataclasses.replace(cfg.env, num_envs=args.num_envs)
    torch.manual_seed(0)
    env = make_vec_env(env_cfg)
    try:
        student, expert = MLPPolicy(cfg.actor.model), make_scripted_expert(env_cfg)
        random_stepping_seconds(env, 200)  # warm-up
        raw = random_stepping_seconds(env, args.steps)
        rows = [("loop", "env steps/s", "x raw", "env s", "student s", "expert s")]
        rows.append(("raw vector env, random actions", f"{args.steps / raw:.0f}", "1.00", f"{raw:.2f}", "-", "-"))
        rollout = Rollout(env, student, expert, cfg.env.max_episode_steps, cfg.env.terminate_on_success)
        per_env = args.steps // args.num_envs
        for beta in (1.0, 0.5, 0.0):
            start = time.perf_counter()
            with torch_threads():  # as the runner collects
                result = rollout.collect(per_env, beta, iteration=0, seed=0)
            wall = time.perf_counter() - start
            rate = result.env_steps / wall
            t = result.timings
            rows.append((
                f"DAgger collect, beta {beta}",
                f"{rate:.0f}",
                f"{rate / (args.steps / raw):.2f}",
                f"{t['env']:.2f}", f"{t['student']:.2f}", f"{t['expert']:.2f}",
            ))
        print(table(rows))
    finally:
        env.close()


if __name__ == "__main__":
    main()
