"""LIBERO-Spatial: env steps/s rendering every step vs only the steps whose observation the policy reads.

    python bench/libero_rendering.py [--steps 100] [--chunk 10] [--size 256]

One env in this process, the same random actions on both sides; the observations the policy reads are checked
to be pixel-identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    from _common import table
    from dagger_cli.envs.libero import LiberoTaskEnv

    rows = [("rendering", "env steps/s", "ms/step", "x every step", "policy obs identical")]
    rng = np.random.default_rng(0)
    chunks = [rng.uniform(-1, 1, (args.chunk, 7)) for _ in range(args.steps // args.chunk)]
    results = {}
    for every in (True, False):
        env = LiberoTaskEnv("libero_spatial", args.size, 15, args.chunk, render_every_step=every)
        env.reset(seed=0)
        start = time.perf_counter()
        seen = [env.step(chunk)[0] for chunk in chunks]
        results[every] = (time.perf_counter() - start, seen)
        env.close()
    base = results[True][0]
    for every in (True, False):
        seconds, seen = results[every]
        same = all(np.array_equal(a[k], b[k]) for a, b in zip(seen, results[True][1]) for k in a)
        steps = len(chunks) * args.chunk
        rows.append(("every step" if every else f"policy steps only (1 in {args.chunk})",
                     f"{steps / seconds:.1f}", f"{1000 * seconds / steps:.0f}", f"{base / seconds:.2f}", str(same)))
    print(table(rows))


if __name__ == "__main__":
    main()
