"""The scripted LIBERO-Spatial expert (`dagger_cli/envs/libero/expert.py`) on LIBERO-Spatial, closed loop.

    python bench/libero_expert.py                      # all 50 init states of the 10 tasks (500 episodes)
    python bench/libero_expert.py --rlinf              # RLinf's 64 episodes: seeds 0..63
                                                       # (task s % 10, init state (s // 10) % 50)
    python bench/libero_expert.py --tasks 4 --inits 0-9 --procs 2
    python bench/libero_expert.py --soft-reset          # resets without rebuilding the model (env.hard_reset: false)

Envs are `LiberoTaskEnv` (15 settle steps, 32² cameras); the cameras render once at the end of the reset and never
while the expert acts (the adapter's lazy camera sensors), since the expert reads the simulator. An episode ends at
success (the env's `done`, the goal predicate, after any step) or after 240 steps. Prints a per-task table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table

MAX_STEPS = 240


def _ids(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _worker(jobs: list[tuple[int, int, int]], queue, trace: bool, hard_reset: bool) -> None:
    import numpy as np

    from dagger_cli.envs.libero.env import LiberoTaskEnv
    from dagger_cli.envs.libero.expert import LiberoSpatialExpert

    env = LiberoTaskEnv("libero_spatial", image_size=32, settle_steps=15, chunk=1, hard_reset=hard_reset)
    expert = LiberoSpatialExpert()
    for seed, task, init in jobs:
        start = time.perf_counter()
        env.reset(seed=seed)
        env._render = False  # the expert reads the sim: no camera renders while it acts
        success, steps = False, 0
        for steps in range(1, MAX_STEPS + 1):
            action = expert.action(env._env)
            _, _, done, _ = env._env.step(np.asarray(action, dtype=np.float64))
            if trace:
                st = expert.debug
                print(steps, np.round(action, 2), st, flush=True)
            if done:
                success = True
                break
        queue.put((task, init, success, steps, time.perf_counter() - start))
    env.close()
    queue.put(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="0-9", help="task ids, e.g. 0-9 or 1,4")
    parser.add_argument("--inits", default="0-49", help="init state ids, e.g. 0-49 or 0,5")
    parser.add_argument(
        "--rlinf", action="store_true", help="RLinf's protocol: reset seeds 0..63 (ignores --tasks/--inits)"
    )
    parser.add_argument("--procs", type=int, default=2, help="simulation processes (at most 2 on this machine)")
    parser.add_argument("--soft-reset", action="store_true", help="reset without rebuilding the model")
    parser.add_argument("--trace", action="store_true", help="print every step (one process)")
    args = parser.parse_args()

    from dagger_cli.envs.libero.env import import_libero, load_suite, task_of

    suite = load_suite(import_libero(), "libero_spatial")
    if args.rlinf:
        jobs = [(s, *task_of(s, suite.n_tasks)) for s in range(64)]
    else:
        jobs = [(i * suite.n_tasks + t, t, i) for t in _ids(args.tasks) for i in _ids(args.inits)]
    # a worker keeps one env per task: hand out jobs task by task
    jobs.sort(key=lambda j: (j[1], j[2]))
    procs = max(1, min(args.procs, 2, len(jobs)))
    chunks = (
        [jobs[k::procs] for k in range(procs)]
        if args.rlinf
        else [jobs[k * len(jobs) // procs : (k + 1) * len(jobs) // procs] for k in range(procs)]
    )
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start = time.perf_counter()
    workers = [ctx.Process(target=_worker, args=(c, queue, args.trace, not args.soft_reset)) for c in chunks]
    for w in workers:
        w.start()
    results, running = [], len(workers)
    while running:
        item = queue.get()
        if item is None:
            running -= 1
            continue
        results.append(item)
        task, init, success, steps, wall = item
        print(
            f"task {task} init {init:2d}: {'success' if success else 'FAILURE'} in {steps} steps ({wall:.1f} s)",
            flush=True,
        )
    for w in workers:
        w.join()
    wall = time.perf_counter() - start

    rows = [("task", "instruction", "success", "mean steps to success")]
    for t in sorted({r[0] for r in results}):
        rs = [r for r in results if r[0] == t]
        ok = [r for r in rs if r[2]]
        mean = f"{sum(r[3] for r in ok) / len(ok):.1f}" if ok else "-"
        rows.append((str(t), suite.get_task(t).language, f"{len(ok)}/{len(rs)}", mean))
    ok = [r for r in results if r[2]]
    rows.append(
        (
            "all",
            "",
            f"{len(ok)}/{len(results)} ({100 * len(ok) / len(results):.1f}%)",
            f"{sum(r[3] for r in ok) / max(1, len(ok)):.1f}",
        )
    )
    print(table(rows))
    failures = sorted((r[0], r[1]) for r in results if not r[2])
    if failures:
        print("failures (task, init):", failures)
    reset = "soft" if args.soft_reset else "hard"
    print(f"{len(results)} episodes in {wall:.0f} s with {procs} process(es), {reset} resets")


if __name__ == "__main__":
    main()
