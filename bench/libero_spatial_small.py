"""`dagger train libero-spatial-small`, launch to summary, per seed: a small π₀ student learning LIBERO-Spatial's ten
tasks from its two cameras on the real simulator, then an independent `dagger eval` of the run's checkpoint on
RLinf's 64-episode protocol. Prints per-task success, the overall rate with its 95% interval, the training curve
(success of the training episodes, which the student acts alone once beta is ≈0), and where the wall time went.

    python bench/libero_spatial_small.py [--seeds 0 1 2] [--out bench-runs/libero-spatial-small] [--set KEY=VALUE]
    python bench/libero_spatial_small.py --report-only --out DIR    # tables and the HTML report of finished runs
    python bench/libero_spatial_small.py --report-only --out DIR --keep bench/results/libero-spatial-small

--keep copies what the tables and the report read of each finished run (config, summary, metrics, `eval.json`, the
latest filmed evaluation; no checkpoints, ≈0.5 MB a seed) to `<keep>/seed<N>/`, so that seeds run in different
sessions or machines report together (`--report-only --out <keep>`).

Run dirs stay under --out (`seed<N>/`, with `eval.json` from `dagger eval`), and `dagger report --html` of all of
them is written to `<out>/report.html` (and, where Chromium is installed, its headless screenshot to
`<out>/report.png`). Exit status 1 when a seed misses --target or --minutes of training.
Worker seconds (reset, physics, render, expert) are summed over the env workers, which run side by side; the
wall-time columns are this process's clock.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PRESET = "libero-spatial-small"
WORKER_PARTS = ("reset", "physics", "render", "expert")
KEPT_FILES = ("config.yaml", "meta.json", "summary.json", "metrics.jsonl", "eval.json", "bench_wall.json")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _train(seed: int, run_dir: Path, overrides: list[str]) -> float:
    """Launch to summary (progress to this terminal's stderr); returns the wall seconds."""
    args = ["dagger", "train", PRESET, "--seed", str(seed), "--run-dir", str(run_dir)]
    for o in overrides:
        args += ["--set", o]
    start = time.perf_counter()
    if subprocess.run(args).returncode != 0:
        sys.exit(f"dagger train failed for seed {seed}")
    return time.perf_counter() - start


def _evaluate(run_dir: Path) -> dict:
    """The independent evaluation: `dagger eval` on the run's latest checkpoint, in its own process."""
    from _common import dagger_json

    wall, result = dagger_json("eval", "--ckpt", str(run_dir))
    result["wall_s"] = wall
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _keep(run_dir: Path, dest: Path) -> None:
    """A finished run without its checkpoints: what the tables and `dagger report` read."""
    if dest.resolve() == run_dir.resolve():
        return
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in KEPT_FILES:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    from dagger_cli.report.runs import load_run

    for video in load_run(run_dir).videos():  # the latest filmed evaluation, as the report picks it
        (dest / video.parent.relative_to(run_dir)).mkdir(parents=True, exist_ok=True)
        shutil.copy2(video, dest / video.relative_to(run_dir))


def _time_split(metrics: list[dict], wall: float | None) -> dict[str, float]:
    total = lambda key: sum(m.get(key, 0.0) for m in metrics)  # noqa: E731
    split = {
        "wall": wall if wall is not None else max(m.get("time/elapsed_s", 0.0) for m in metrics),
        "rollout": total("time/rollout_s"),
        "student": total("time/rollout_student_s"),
        "learner": total("time/train_s"),
        "evaluation": total("time/eval_s") + total("time/eval_expert_s"),
    }
    split.update({f"worker {p}": total(f"time/rollout_worker_{p}_s") for p in WORKER_PARTS})
    return split


def _windowed_success(metrics: list[dict], width: int) -> list[float]:
    """Training episodes' success_once over each `width` iterations, pooled over their episodes (an iteration of 2
    envs ends only 2–4 of them, so one iteration's rate is mostly noise)."""
    rows = [m for m in metrics if m.get("env/num_trajectories")]
    out = []
    for a in range(0, len(rows), width):
        window = rows[a:a + width]
        episodes = sum(m["env/num_trajectories"] for m in window)
        out.append(sum(m["env/success_once"] * m["env/num_trajectories"] for m in window) / episodes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench-runs/libero-spatial-small"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for dagger train")
    parser.add_argument("--target", type=float, default=0.8, help="overall success each seed must reach")
    parser.add_argument("--minutes", type=float, default=60.0, help="training (launch to summary) limit per seed")
    parser.add_argument("--report-only", action="store_true", help="only the tables and report of runs in --out")
    parser.add_argument("--keep", type=Path, help="copy each finished run, without checkpoints, to KEEP/seed<N>")
    args = parser.parse_args()
    from _common import table

    # RUNS: train, then the independent evaluation
    walls: dict[int, float] = {}
    if not args.report_only:
        for seed in args.seeds:
            run_dir = args.out / f"seed{seed}"
            if (run_dir / "summary.json").exists() and (run_dir / "eval.json").exists():
                print(f"seed {seed}: {run_dir} is complete; kept", file=sys.stderr)
                continue
            walls[seed] = _train(seed, run_dir, args.overrides)
            (run_dir / "bench_wall.json").write_text(json.dumps({"train_wall_s": walls[seed]}) + "\n")
            _evaluate(run_dir)

    # TABLES
    runs = {s: args.out / f"seed{s}" for s in args.seeds if (args.out / f"seed{s}" / "eval.json").exists()}
    if not runs:
        sys.exit(f"no finished runs under {args.out}")
    evals = {s: json.loads((d / "eval.json").read_text()) for s, d in runs.items()}
    summaries = {s: json.loads((d / "summary.json").read_text()) for s, d in runs.items()}
    if args.keep:
        for d in runs.values():
            _keep(d, args.keep / d.name)
    for s, d in runs.items():
        if s not in walls and (d / "bench_wall.json").exists():
            walls[s] = json.loads((d / "bench_wall.json").read_text())["train_wall_s"]
    tasks = list(next(iter(evals.values()))["tasks"])
    rows = [("task", *(f"seed {s}" for s in runs), "all seeds")]
    for t in tasks:
        per = [evals[s]["tasks"][t] for s in runs]
        wins = sum(p["success_once"] * p["episodes"] for p in per)
        rows.append((t.replace("pick_up_the_black_bowl_", "").replace("_and_place_it_on_the_plate", ""),
                     *(f"{round(p['success_once'] * p['episodes'])}/{p['episodes']}" for p in per),
                     f"{round(wins)}/{sum(p['episodes'] for p in per)}"))
    rows.append(("overall (95% CI)", *(f"{_pct(e['success_once'])} ({_pct(e['success_once_ci95'][0])}–"
                                        f"{_pct(e['success_once_ci95'][1])})" for e in evals.values()), ""))
    print(table(rows))

    ok = True
    rows = [("seed", "init SR", "final SR (run)", "dagger eval SR", "reproduced", "iterations", "env steps",
             "train wall", "rollout", "student", "learner", "evaluation",
             *(f"worker {p}" for p in WORKER_PARTS), "curve (training-episode SR, each 5 iterations)")]
    for s, d in runs.items():
        summary, e, metrics = summaries[s], evals[s], _metrics(d)
        split = _time_split(metrics, walls.get(s))
        curve = _windowed_success(metrics, 5)
        same = e["success_once"] == summary["student_final_sr"]
        ok &= same and e["success_once"] >= args.target and split["wall"] <= 60 * args.minutes
        rows.append((str(s), _pct(summary.get("student_init_sr")), _pct(summary["student_final_sr"]),
                     _pct(e["success_once"]), "yes" if same else "NO", str(summary["iterations"]),
                     str(summary.get("env_steps", "-")), f"{split['wall'] / 60:.1f} min",
                     *(f"{split[k] / 60:.1f} min" for k in ("rollout", "student", "learner", "evaluation")),
                     *(f"{split[f'worker {p}'] / 60:.1f} min" for p in WORKER_PARTS),
                     " ".join(_pct(c) for c in curve)))
    print(table(rows))

    # REPORT: curves, per-task table and the filmed evaluations of every seed
    html = args.out / "report.html"
    done = subprocess.run(["dagger", "report", *map(str, runs.values()), "--html", str(html)], capture_output=True,
                          text=True)
    print(f"report: {html}" if done.returncode == 0 else f"dagger report failed: {done.stderr.strip()}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if done.returncode == 0 and chromium:  # the picture README shows
        picture = args.out / "report.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--virtual-time-budget=10000", "--window-size=1280,2600", f"--screenshot={picture.resolve()}",
                        html.resolve().as_uri()], capture_output=True, timeout=300)
        print(f"picture: {picture}" if picture.exists() else "chromium made no picture")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
