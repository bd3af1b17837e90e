"""LIBERO-Spatial evaluation with and without video: what filming costs, and that with video off the policy's
observation path does no extra work (frames come from the cameras the policy already reads).

    python bench/eval_video_overhead.py [--episodes 4] [--steps 100] [--size 256] [--repeats 2]

Real LIBERO envs (2 worker processes), a policy of zero actions (the env's cost, not a model's), the same seeds
each time; off / on alternate so that the host's noise falls on both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


class Zero:
    action_shape = (5, 7)

    def act(self, obs):
        return np.zeros((len(obs["state"]), 5, 7), np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from _common import table
    from dagger_cli.core.config_loader import load_config
    from dagger_cli.core.engine.rollout import evaluate
    from dagger_cli.core.engine.run_evaluation import save_videos
    from dagger_cli.envs import make_vec_env

    cfg = load_config("libero-spatial", overrides=["env.num_envs=2", f"env.image_size={args.size}"])
    env = make_vec_env(cfg.env, 5)
    seeds = list(range(args.episodes))
    times: dict[int, list[float]] = {0: [], args.episodes: []}
    try:
        evaluate(env, Zero(), seeds[:2], 10)  # warm-up
        for _ in range(args.repeats):
            for record in times:
                result = evaluate(env, Zero(), seeds, args.steps, record)
                times[record].append(result.seconds)
                if record:
                    with tempfile.TemporaryDirectory() as tmp:
                        files = save_videos(result, Path(tmp))
                        size = sum(f.stat().st_size for f in files) / len(files)
    finally:
        env.close()
    off, on = np.median(times[0]), np.median(times[args.episodes])
    print(table([
        ("video", "episodes filmed", "eval s (median)", "x off", "mp4 KB / episode"),
        ("off", "0", f"{off:.2f}", "1.00", "-"),
        ("on", str(args.episodes), f"{on:.2f}", f"{on / off:.2f}", f"{size / 1024:.0f}"),
    ]))
    print(f"{args.episodes} episodes of {args.steps} steps at {args.size}², 2 envs; off runs the same code path with "
          "no frame asked for")


if __name__ == "__main__":
    main()
