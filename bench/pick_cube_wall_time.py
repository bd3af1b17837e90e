"""Wall time of `dagger train pick-cube` to >=95% student success, and its ratio to raw simulation time.

    python bench/pick_cube_wall_time.py [--seeds 0 1 2] [--curve] [--set KEY=VALUE ...]

Runs the whole command (launch to summary) once per seed, then times the same number of env steps (training
steps + every evaluation episode, the preset's 20-episode ones after each iteration included) with random actions on
the same envs. `--curve` adds one run that evaluates the student on all 100 episodes after every iteration, to show
at which iteration it crosses 95%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def train(run_dir: Path, seed: int, extra: list[str]) -> tuple[float, dict]:
    from _common import dagger_json

    return dagger_json("train", "pick-cube", "--run-dir", str(run_dir), "--seed", str(seed), *extra)


def evaluation_episodes(run_dir: Path) -> int:
    """Episodes of every evaluation of a run (the student's and the expert's), from its metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return sum(int(r.get("eval/episodes") or 0) + int(r.get("eval_expert/episodes") or 0) for r in rows)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--curve", action="store_true", help="also evaluate after every iteration (seed 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run (e.g. algorithm.replay_buffer.storage=disk)")
    args = parser.parse_args()
    extra = [arg for kv in args.set for arg in ("--set", kv)]

    from _common import random_stepping_seconds, table
    from dagger_cli.core.config_loader import load_config
    from dagger_cli.envs import make_vec_env

    cfg = load_config("pick-cube", overrides=args.set)
    rows = [("seed", "init SR", "expert SR", "final SR", "95% CI", "env steps", "wall s", "random-action sim s",
             "wall / sim")]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(seed, *train(Path(tmp) / f"seed{seed}", seed, extra)) for seed in args.seeds]
        episodes = {seed: evaluation_episodes(Path(tmp) / f"seed{seed}") for seed in args.seeds}
        env = make_vec_env(cfg.env)
        try:
            random_stepping_seconds(env, 200)  # warm-up
            for seed, wall, s in runs:
                steps = s["env_steps"] + episodes[seed] * cfg.env.max_episode_steps
                sim = random_stepping_seconds(env, steps)
                low, high = s["student_final_ci95"]
                rows.append((str(seed), _pct(s["student_init_sr"]), _pct(s["expert_sr"]), _pct(s["student_final_sr"]),
                             f"{100 * low:.1f}-{100 * high:.1f}%",
                             str(steps), f"{wall:.1f}", f"{sim:.1f}", f"{wall / sim:.2f}"))
        finally:
            env.close()
        print(table(rows))
        if args.curve:
            _, s = train(Path(tmp) / "curve", 0, [*extra, "--set", "runner.val_check_interval=1",
                                                  "--set", "env.eval.interim_episodes=0"])
            metrics = [json.loads(line) for line in (Path(tmp) / "curve" / "metrics.jsonl").read_text().splitlines()]
            print("\nstudent eval success_once after each iteration (seed 0):")
            print(table([("iteration", "env steps", "eval SR")] + [
                (str(m["step"]), str(int(m["time/env_steps"])), f"{100 * m['eval/success_once']:.0f}%")
                for m in metrics if m["step"] > 0
            ]))


if __name__ == "__main__":
    main()
