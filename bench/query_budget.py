"""Expert queries as a budget: each preset with `algorithm.dagger.query: always` (every visited state labelled, as
RLinf, imitation and LeRobot do) and `gated` (the expert labels the states it acts in, and the student-acted ones
where the student is most unsure, within a budget per iteration), per seed, launch to summary. Prints the expert
queries, the expert's seconds, the wall time and the final success side by side, and the ratio of queries.

    python bench/query_budget.py [--presets pick-cube pick-cube-pi0] [--seeds 0 1 2] [--out bench-runs/query-budget]
    python bench/query_budget.py --report-only --out DIR     # the tables and report of finished runs

Run dirs stay under --out (`<preset>/<mode>/seed<N>`); `dagger report --html --x expert_queries` of each preset's
runs is written to `<out>/<preset>.html` (success against cumulative expert queries, seeds aggregated).
Exit status 1 when a preset's gated runs do not ask at least --ratio times fewer queries, or end more than
--tolerance below `always` in mean final success.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

GATED = {
    # the MLP scores its uncertainty by 5 heads' disagreement; ≈200 of the 500-970 states it acts in an iteration
    "pick-cube": ["actor.model.ensemble_heads=5", "algorithm.dagger.query=gated", "algorithm.dagger.query_budget=200"],
    # π₀ scores the spread of 4 chunks sampled from one prefix pass; of `always`'s 8,000 labels ≈3,750 are of states
    # the expert acts in, so 2× fewer leaves ≈60 student-acted states an iteration (80 gave 1.98×, 70 gave 1.998×)
    "pick-cube-pi0": ["algorithm.dagger.query=gated", "algorithm.dagger.query_budget=60"],
}
"""each preset's gated settings (its `always` run is the preset as it is)"""


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _run(preset: str, mode: str, seed: int, run_dir: Path) -> None:
    from _common import dagger_json

    sets = [a for s in (GATED[preset] if mode == "gated" else []) for a in ("--set", s)]
    dagger_json("train", preset, "--seed", str(seed), "--run-dir", str(run_dir), *sets)


def _row(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = _metrics(run_dir)
    return {
        "final": summary["student_final_sr"],
        "queries": summary["expert_queries"],
        "expert_s": sum(r.get("time/rollout_expert_s", 0.0) for r in rows),
        "wall_s": summary["wall_time_s"],
        "curve": [r["eval/success_once"] for r in rows if r.get("eval/success_once") is not None],
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(GATED), choices=list(GATED))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["always", "gated"], choices=["always", "gated"],
                        help="the modes to run (the others' runs must already be in --out)")
    parser.add_argument("--out", type=Path, default=Path("bench-runs/query-budget"))
    parser.add_argument("--ratio", type=float, default=2.0, help="always's queries over gated's, at least")
    parser.add_argument("--tolerance", type=float, default=0.02, help="gated's mean final success below always's")
    parser.add_argument("--report-only", action="store_true", help="only the tables and reports of runs in --out")
    args = parser.parse_args()
    from _common import table

    ok = True
    for preset in args.presets:
        results: dict[str, list[dict]] = {}
        for mode in ("always", "gated"):
            for seed in args.seeds:
                run_dir = args.out / preset / mode / f"seed{seed}"
                if not args.report_only and mode in args.modes:
                    print(f"{preset} {mode} seed {seed} ...", file=sys.stderr, flush=True)
                    _run(preset, mode, seed, run_dir)
                results.setdefault(mode, []).append(_row(run_dir))
        lines = [("mode", "seed", "final SR", "expert queries", "expert s", "wall s", "student eval curve")]
        for mode, rows in results.items():
            for seed, r in zip(args.seeds, rows):
                lines.append((mode, str(seed), f"{100 * r['final']:.0f}%", f"{r['queries']:,}", f"{r['expert_s']:.1f}",
                              f"{r['wall_s']:.0f}", " ".join(f"{100 * v:.0f}" for v in r["curve"])))
        always, gated = results["always"], results["gated"]
        ratio = _mean([r["queries"] for r in always]) / max(_mean([r["queries"] for r in gated]), 1)
        drop = _mean([r["final"] for r in always]) - _mean([r["final"] for r in gated])
        for mode, rows in results.items():
            lines.append((f"{mode} mean", "", f"{100 * _mean([r['final'] for r in rows]):.1f}%",
                          f"{_mean([r['queries'] for r in rows]):,.0f}", f"{_mean([r['expert_s'] for r in rows]):.1f}",
                          f"{_mean([r['wall_s'] for r in rows]):.0f}", ""))
        print(f"\n{preset}: gated {' '.join(GATED[preset])}")
        print(table(lines))
        verdict = ratio >= args.ratio and drop <= args.tolerance
        ok &= verdict
        print(f"queries always / gated: {ratio:.2f}x (target >= {args.ratio}x); final success gated - always: "
              f"{-100 * drop:+.1f} points (target >= {-100 * args.tolerance:.0f}) -> {'met' if verdict else 'MISSED'}")
        page = args.out / f"{preset}.html"
        dirs = [str(args.out / preset / mode / f"seed{s}") for mode in ("always", "gated") for s in args.seeds]
        subprocess.run(["dagger", "report", *dirs, "--html", str(page), "--x", "expert_queries"], check=True,
                       capture_output=True)
        print(f"report: {page}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
