"""`dagger train pick-cube-pi0`, launch to summary, per seed: the π₀ student from ≈0% to its final success on 100
evaluation episodes, the wall time, where it went, and whether `dagger eval` on the run's checkpoint reproduces
the run's final evaluation.

    python bench/pick_cube_pi0.py [--seeds 0 1 2] [--target 0.9] [--minutes 15]

Exit status 1 when a seed misses the target success or the time limit, or its evaluation does not reproduce.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.9, help="student success_once each seed must reach")
    parser.add_argument("--minutes", type=float, default=15.0, help="launch-to-summary limit per seed")
    args = parser.parse_args()
    from _common import dagger_json, table

    rows = [
        (
            "seed",
            "init SR",
            "expert SR",
            "final SR (95% CI)",
            "iterations",
            "env steps",
            "wall",
            "train",
            "evals",
            "dagger eval SR",
            "reproduced",
        )
    ]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            run_dir = Path(tmp) / f"seed{seed}"
            wall, s = dagger_json("train", "pick-cube-pi0", "--run-dir", str(run_dir), "--seed", str(seed))
            metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            train_s = sum(m.get("time/train_s", 0.0) for m in metrics)
            eval_s = sum(v for m in metrics for k, v in m.items() if k in ("time/eval_s", "time/eval_expert_s"))
            _, e = dagger_json("eval", "--ckpt", str(run_dir))
            same = (
                e["success_once"] == s["student_final_sr"] and e["success_at_end"] == s["student_final_success_at_end"]
            )
            low, high = s["student_final_ci95"]
            rows.append(
                (
                    str(seed),
                    _pct(s["student_init_sr"]),
                    _pct(s["expert_sr"]),
                    f"{_pct(s['student_final_sr'])} ({100 * low:.1f}-{100 * high:.1f}%)",
                    str(s["iterations"]),
                    f"{s['env_steps']:,}",
                    f"{wall:.0f} s",
                    f"{train_s:.0f} s",
                    f"{eval_s:.0f} s",
                    _pct(e["success_once"]),
                    "yes" if same else "NO",
                )
            )
            ok &= s["student_final_sr"] >= args.target and wall <= 60 * args.minutes and same
            print(f"seed {seed}: {_pct(s['student_final_sr'])} in {wall:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))
    print(f"\ntarget: >= {100 * args.target:.0f}% in <= {args.minutes:g} min per seed: {'met' if ok else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
