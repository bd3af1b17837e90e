"""`pick-cube` sync vs async on the same machine: collection throughput and wall time to >=95% student success.

    python bench/sync_vs_async.py [--episodes 50] [--max-epochs 8]

Runs `dagger train pick-cube` and `dagger train pick-cube --async` (embedded Ray), both evaluating the student after
every iteration, and reads their metrics: wall time from launch until the first evaluation at or above 95%
success_once, and env samples per second of collection. The issue's target is async >= 1.3x sooner.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(mode: str, run_dir: Path, episodes: int, max_epochs: int) -> dict:
    cmd = ["dagger", "train", "pick-cube", "--run-dir", str(run_dir), "--json",
           "--set", "runner.val_check_interval=1", "--set", f"env.eval.num_episodes={episodes}",
           "--set", f"runner.max_epochs={max_epochs}", "--set", "runner.eval_student_init=false",
           "--set", "runner.eval_expert=false"] + (["--async"] if mode == "async" else [])
    result = subprocess.run(cmd, capture_output=True, text=True)
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes after every iteration")
    parser.add_argument("--max-epochs", type=int, default=8)
    args = parser.parse_args()

    from _common import table

    with tempfile.TemporaryDirectory() as tmp:
        results = {m: run(m, Path(tmp) / m, args.episodes, args.max_epochs) for m in ("sync", "async")}
    fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
    rows = [("mode", "wall s to >=95%", "iteration", "env steps", "env samples/s (loop)", "final SR")]
    for mode, r in results.items():
        rows.append((mode, fmt(r["to_95_s"], "{:.1f}"), fmt(r["iteration"], "{}"), fmt(r["env_steps_to_95"], "{}"),
                     f"{r['samples_per_s']:.0f}", fmt(r["final"], "{:.0%}")))
    print(table(rows))
    s, a = results["sync"]["to_95_s"], results["async"]["to_95_s"]
    if s and a:
        print(f"\nasync reaches 95% {s / a:.2f}x {'sooner' if a < s else 'later'} than sync (target: >= 1.3x sooner)")


if __name__ == "__main__":
    main()
