"""Where a LIBERO-Spatial DAgger iteration spends its time, with tiny random π₀ student and expert on the CPU.

    python bench/libero_tiny_pi0_iteration.py [--iterations 2] [--num-envs 2]

Runs `dagger train libero-spatial` (real rendering, 240-step episodes, 10-step chunks) and prints the runner's
per-iteration breakdown: env (simulation + rendering + IPC), student and expert inference, learner.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=2)
    args = parser.parse_args()

    from _common import table
    from dagger_cli.envs.libero import import_libero, load_suite
    from dagger_cli.policies.pi0.testing import make_tiny_checkpoint, train_tokenizer

    suite = load_suite(import_libero(), "libero_spatial")
    prompts = [suite.get_task(i).language for i in range(suite.n_tasks)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer, ckpt = train_tokenizer(tmp / "tok", prompts), make_tiny_checkpoint(tmp / "pi0")
        sets = []
        for model in ("actor.model", "rollout.expert_model"):
            sets += [f"{model}.model_path={ckpt}", f"{model}.pi0.variant=tiny", f"{model}.pi0.tokenizer_path={tokenizer}"]
        sets += [f"env.num_envs={args.num_envs}", f"runner.max_epochs={args.iterations}", "runner.eval_student_init=false",
                 "runner.eval_expert=false", "runner.val_check_interval=0", "env.eval.num_episodes=2",
                 "algorithm.replay_buffer.min_buffer_size=8", "algorithm.replay_buffer.sample_window_size=2000"]
        cmd = ["dagger", "train", "libero-spatial", "--run-dir", str(tmp / "run"), "--json"]
        for s in sets:
            cmd += ["--set", s]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(result.stderr.strip().splitlines()[-1])
        rows = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    out = [("iteration", "env steps", "env s", "student s", "expert s", "learner s", "iteration s", "env steps/s")]
    for r in rows:
        if r["step"] == 0:
            continue
        out.append((str(r["step"]), str(args.num_envs * 240), f"{r['time/rollout_env_s']:.1f}",
                    f"{r['time/rollout_student_s']:.1f}", f"{r['time/rollout_expert_s']:.1f}", f"{r['time/train_s']:.1f}",
                    f"{r['time/iteration_s']:.1f}", f"{r['time/env_steps_per_s']:.1f}"))
    print(table(out))


if __name__ == "__main__":
    main()
