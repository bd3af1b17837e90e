"""What one learner step of `libero-spatial-small`'s student costs on this machine: the small vision π₀ on a batch of
LIBERO-shaped samples (two 64² cameras, an instruction, 5-step labels), timed per optimizer step, for each
`pi0.loss_draws` given, eagerly and (with `--compile`) compiled (`pi0.compile_loss`). Ratios are against the first row.

    python bench/learner_step.py [--draws 1 4 8] [--steps 30] [--compile]

Run it on an otherwise idle machine: a busy core slows torch's threads far more than its share.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

PRESET = "libero-spatial-small"


def batch(size: int, prompts: list[str], seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = {
        "image": rng.integers(0, 256, (size, 64, 64, 3), dtype=np.uint8),
        "wrist_image": rng.integers(0, 256, (size, 64, 64, 3), dtype=np.uint8),
        "state": rng.normal(size=(size, 8)).astype(np.float32),
        "prompt": np.array([prompts[i % len(prompts)] for i in range(size)]),
    }
    return obs, rng.uniform(-1, 1, (size, 5, 7)).astype(np.float32)


def seconds_per_step(draws: int, steps: int, compiled: bool, size: int) -> tuple[float, float]:
    """(seconds per optimizer step after warm-up, warm-up seconds: the first 3 steps, compilation included)."""
    from dagger_cli import assembly
    from dagger_cli.core.config_loader import load_config
    from dagger_cli.envs.libero import import_libero, load_suite

    cfg = load_config(PRESET, overrides=[f"actor.model.pi0.loss_draws={draws}",
                                         f"actor.model.pi0.compile_loss={str(compiled).lower()}"])
    torch.manual_seed(0)
    student = assembly.student(cfg, "cpu")
    suite = load_suite(import_libero(), "libero_spatial")
    obs, labels = batch(size, [suite.get_task(i).language for i in range(suite.n_tasks)])
    student.fit_norm_stats(obs, labels)
    optimizer = torch.optim.AdamW(student.module.parameters(), lr=1e-4)

    def step():
        loss = student.loss(obs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(3):
        step()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps, warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, nargs="+", default=[1, 4, 8], help="pi0.loss_draws values")
    ap.add_argument("--steps", type=int, default=30, help="timed optimizer steps per row")
    ap.add_argument("--batch", type=int, default=32, help="samples per step (the preset's global batch)")
    ap.add_argument("--compile", action="store_true", help="also time each under torch.compile")
    args = ap.parse_args()

    rows = []
    for draws in args.draws:
        for compiled in (False, True) if args.compile else (False,):
            per_step, warm = seconds_per_step(draws, args.steps, compiled, args.batch)
            rows.append((draws, compiled, per_step, warm))
    base = rows[0][2]
    print(f"| loss_draws | compiled | s / step | × first row | warm-up s (3 steps) |")
    print("|---|---|---|---|---|")
    for draws, compiled, per_step, warm in rows:
        print(f"| {draws} | {'yes' if compiled else 'no'} | {per_step:.3f} | {per_step / base:.2f} | {warm:.1f} |")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")


if __name__ == "__main__":
    main()
