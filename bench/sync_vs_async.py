"""`pick-cube` sync vs async on the same machine: collection throughput and wall time to >=95% student success.

    python bench/sync_vs_async.py [--seeds 0 1 2] [--episodes 50] [--max-epochs 6] [--set KEY=VALUE ...]

Runs `dagger train pick-cube` and `dagger train pick-cube --async` (embedded Ray) for each seed, both evaluating the
student after every iteration, and reads their metrics: wall time from launch until the first evaluation at or above
95% success_once, env samples per second of the training loop, and how busy the machine's CPUs were over the run
(no schedule of the same work can be faster than busy-fraction x the wall time). Medians over the seeds decide; the issue's target
is async >= 1.3x sooner. `--set` goes to both runs (e.g. --set algorithm.dagger.max_policy_lag=1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(mode: str, run_dir: Path, seed: int, episodes: int, max_epochs: int, sets: list[str]) -> dict:
    cmd = ["dagger", "train", "pick-cube", "--run-dir", str(run_dir), "--json", "--seed", str(seed),
           "--set", "runner.val_check_interval=1", "--set", f"env.eval.num_episodes={episodes}",
           "--set", "env.eval.interim_episodes=0",
           "--set", f"runner.max_epochs={max_epochs}", "--set", "runner.eval_student_init=false",
           "--set", "runner.eval_expert=false"] + [a for kv in sets for a in ("--set", kv)] + (
        ["--async"] if mode == "async" else [])
    busy_before, started = busy_core_seconds(), time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    busy, wall = busy_core_seconds() - busy_before, time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{mode}: {result.stderr.strip().splitlines()[-1]}")
    summary = json.loads(result.stdout)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] > 0]
    hit = next((r for r in rows if r.get("eval/success_once", 0) >= 0.95), None)
    # env samples per second of the training loop (collection, training and evaluation together)
    rate = summary["env_steps"] / max(summary["train_time_s"], 1e-9)
    return {
        "to_95_s": hit["time/elapsed_s"] if hit else None,
        "iteration": hit["step"] if hit else None,
        "env_steps_to_95": hit["time/env_steps"] if hit else None,
        "samples_per_s": rate,
        "final": rows[-1].get("eval/success_once"),
        "cpu_busy": busy / (wall * (os.cpu_count() or 1)),
    }


def busy_core_seconds() -> float:
    """CPU time the whole machine has spent busy (Linux /proc/stat; nan elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan")
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes after every iteration")
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    from _common import table

    fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
    rows = [("seed", "mode", "wall s to >=95%", "iteration", "env steps", "env samples/s (loop)", "final SR",
             f"CPU busy ({os.cpu_count()} cores)")]
    times: dict[str, list[float]] = {"sync": [], "async": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for mode in ("sync", "async"):
                r = run(mode, Path(tmp) / f"{mode}-{seed}", seed, args.episodes, args.max_epochs, args.sets)
                times[mode].append(r["to_95_s"] if r["to_95_s"] is not None else float("inf"))
                rows.append((str(seed), mode, fmt(r["to_95_s"], "{:.1f}"), fmt(r["iteration"], "{}"),
                             fmt(r["env_steps_to_95"], "{}"), f"{r['samples_per_s']:.0f}", fmt(r["final"], "{:.0%}"), f"{r['cpu_busy']:.0%}"))
    print(table(rows))
    s, a = statistics.median(times["sync"]), statistics.median(times["async"])
    if math.isinf(s) or math.isinf(a):
        sys.exit("\na median run did not reach 95%: raise --max-epochs")
    print(f"\nmedian wall time to >=95%: sync {s:.1f} s, async {a:.1f} s: async {s / a:.2f}x "
          f"{'sooner' if a < s else 'later'} (target: >= 1.3x sooner)")


if __name__ == "__main__":
    main()
