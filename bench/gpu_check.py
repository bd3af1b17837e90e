"""One-shot GPU check: the π₀ and π0.5 paths at full size, ManiSkill's GPU simulation, LIBERO on EGL, sync vs async.

    python bench/gpu_check.py [--dry-run] [--parts a b c d e f g] [--json FILE]

On a machine with an NVIDIA GPU (no download: a randomly initialised full-size π₀ and the bundled tokenizer), in
one table:
  (a) student + expert resident: peak GPU memory and seconds per learner step at micro-batch 32 with LIBERO shapes
      (two 256² cameras, 8-D state, 50 × 7 labels), full fine-tune and `train_expert_only`;
  (b) `sample_actions` latency at batch 1 and 64, 4 denoising steps (student under autocast, expert in bf16);
  (c) the loss on one fixed batch over 30 steps at lr 1e-5 in `auto` precision (it must fall);
  (d) `dagger train pick-cube` on ManiSkill's GPU simulation (256 envs): wall time to >= 95% student success;
  (e) LIBERO rendering with EGL: env steps/s;
  (f) `dagger train pick-cube` sync vs `--async` on this machine's cores: wall time to >= 95%;
  (g) π0.5 (libero-spatial-pi05's expert kind, horizon 10): a π0.5 student's learner step as (a) beside a resident
      bf16 π0.5 expert, and `sample_actions` latency of both at batch 1 and 64 with 10 denoising steps as (b).
Each part reports its own failure in one line and the others go on. `--dry-run` runs every part at small sizes
on the CPU (tiny π₀ in bfloat16, 2 ManiSkill envs, a few steps): what CI runs, to keep the script working.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class Sizes:
    device: str
    variant: str
    micro_batch: int
    train_steps: int
    latency_batches: tuple[int, ...]
    loss_steps: int
    loss_lr: float
    gpu_envs: int
    gpu_epochs: int
    libero_steps: int
    pick_cube: list[str]
    timeout_s: int
    precision: str = "auto"


FULL = Sizes("cuda", "full", 32, 3, (1, 64), 30, 1e-5, 256, 10, 200, [], 240)
DRY = Sizes(
    "cpu",
    "tiny",
    2,
    2,
    (1, 4),
    30,
    1e-3,
    2,
    1,
    20,
    [
        "--set",
        "runner.max_epochs=1",
        "--set",
        "env.max_steps_per_rollout_epoch=50",
        "--set",
        "env.eval.num_episodes=2",
        "--set",
        "actor.update_epoch=5",
        "--set",
        "algorithm.replay_buffer.min_buffer_size=50",
    ],
    240,
    precision="bfloat16",
)
"""pick_cube: extra `--set`s for (d) and (f), ahead of each part's own (a later --set of a key wins)"""


# π₀ AT SCALE
class Pi0Bench:
    """A random-init π₀ student (and, for (a)/(b), a resident bf16 expert) with LIBERO shapes; `pi05`: both π0.5
    with horizon 10 (openpi's pi05_libero), the expert with libero-spatial-pi05's 10 denoising steps."""

    def __init__(self, sizes: Sizes, folder: Path, pi05: bool = False):
        from dagger_cli.core.config_loader import load_config
        from dagger_cli.policies.pi0.testing import write_norm_stats

        self.sizes = sizes
        self.horizon = 10 if pi05 else 50
        stats = write_norm_stats(folder, state_dim=8, action_dim=7).parent
        common = [
            f"actor.model.pi0.variant={sizes.variant}",
            f"actor.model.pi0.precision={sizes.precision}",
            "actor.model.pi0.tokenizer_path=bundled:instructions.model",
            f"actor.model.pi0.norm_stats_path={stats}",
            "actor.model.model_path=null",
            f"actor.model.pi0.pi05={pi05}",
            f"actor.model.pi0.action_horizon={self.horizon}",
            f"actor.micro_batch_size={sizes.micro_batch}",
            f"actor.global_batch_size={sizes.micro_batch}",
        ]
        expert = [k.replace("actor.model.", "rollout.expert_model.") for k in common[:7]]
        preset = "libero-spatial-pi05" if pi05 else "libero-spatial"
        self.cfg = load_config(preset, overrides=common + expert + ["rollout.expert_model.pi0.state_token_dims=null"])
        self._expert = None

    def observations(self, batch: int, seed: int = 0) -> dict:
        rng = np.random.default_rng(seed)
        return {
            "image": rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8),
            "state": rng.normal(size=(batch, 8)).astype(np.float32),
            "prompt": np.array(["pick up the black bowl and place it on the plate"] * batch),
        }

    def student(self, train_expert_only: bool = False):
        from dagger_cli.policies.pi0 import Pi0Policy

        model = self.cfg.actor.model
        model = replace(model, pi0=replace(model.pi0, train_expert_only=train_expert_only))
        return Pi0Policy(model, self.sizes.device)

    def expert(self):
        """Built once and kept resident, as in a run."""
        from dagger_cli.policies.pi0 import Pi0Policy

        if self._expert is None:
            self._expert = Pi0Policy(self.cfg.rollout.expert_model, self.sizes.device, trainable=False)
        return self._expert

    def buffer(self, samples: int):
        from dagger_cli.core.engine.replay_buffer import ReplayBuffer, flatten_obs

        buffer = ReplayBuffer(samples)
        labels = np.random.default_rng(1).normal(0, 0.5, (samples, self.horizon, 7)).astype(np.float32)
        buffer.add({**flatten_obs(self.observations(samples)), "expert_action": labels})
        return buffer


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device: str) -> str:
    import torch

    if device == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    import resource

    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB RSS (CPU)"


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _learner_steps(bench: Pi0Bench, expert_only_too: bool, label: str = "") -> list[tuple[str, str]]:
    from dagger_cli.core.engine.learner import Learner

    s, rows = bench.sizes, []
    expert = bench.expert()
    buffer = bench.buffer(4 * s.micro_batch)
    for expert_only in (False, True) if expert_only_too else (False,):
        _free(s.device)
        student = bench.student(train_expert_only=expert_only)
        learner = Learner(student, bench.cfg.actor, seed=0, default_total_steps=100)
        learner.train(buffer, 1)  # warm-up: allocator, optimizer state
        _sync(s.device)
        start = time.perf_counter()
        learner.train(buffer, s.train_steps)
        _sync(s.device)
        per_step = (time.perf_counter() - start) / s.train_steps
        what = "train_expert_only" if expert_only else "full fine-tune"
        rows.append(
            (
                f"{label}learner step, {what}, micro-batch {s.micro_batch}",
                f"{per_step:.2f} s/step, peak {_peak_gib(s.device)} (student {student.precision}, "
                f"expert {expert.precision} resident)",
            )
        )
        del student, learner
    return rows


def _latencies(bench: Pi0Bench, label: str = "") -> list[tuple[str, str]]:
    import torch

    s, rows = bench.sizes, []
    _free(s.device)
    for name, policy in (("student", bench.student()), ("expert", bench.expert())):
        name, steps = f"{label}{name} in {policy.precision}", policy.num_steps
        for batch in s.latency_batches:
            obs = bench.observations(batch)
            x = policy.inputs(obs)
            noise = policy.sample_noise(batch)
            with torch.no_grad(), policy._precision_context():
                for _ in range(2):
                    policy.model.sample_actions(**x, noise=noise, num_steps=steps)
                _sync(s.device)
                start = time.perf_counter()
                repeats = 5
                for _ in range(repeats):
                    policy.model.sample_actions(**x, noise=noise, num_steps=steps)
                _sync(s.device)
            ms = 1000 * (time.perf_counter() - start) / repeats
            rows.append(
                (f"sample_actions, {name}, batch {batch}, {steps} steps", f"{ms:.1f} ms ({ms / batch:.2f} ms/sample)")
            )
        del policy
    return rows


def part_a(bench: Pi0Bench) -> list[tuple[str, str]]:
    return _learner_steps(bench, expert_only_too=True)


def part_b(bench: Pi0Bench) -> list[tuple[str, str]]:
    return _latencies(bench)


def part_g(bench: Pi0Bench) -> list[tuple[str, str]]:
    return _learner_steps(bench, expert_only_too=False, label="π0.5 ") + _latencies(bench, label="π0.5 ")


def part_c(bench: Pi0Bench) -> list[tuple[str, str]]:
    import torch

    s = bench.sizes
    _free(s.device)
    student = bench.student()
    obs = bench.observations(s.micro_batch, seed=2)
    labels = np.random.default_rng(3).normal(0, 0.5, (s.micro_batch, 50, 7)).astype(np.float32)
    optimizer = torch.optim.AdamW(
        [p for p in student.module.parameters() if p.requires_grad], lr=s.loss_lr, betas=(0.9, 0.95), weight_decay=1e-10
    )
    student.module.train()
    losses = []
    for _ in range(s.loss_steps):
        torch.manual_seed(0)  # the same flow-matching times and noise: one fixed batch
        loss = student.loss(obs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    verdict = "falls" if losses[-1] < 0.9 * losses[0] else "DOES NOT FALL"
    if losses[-1] >= 0.9 * losses[0]:
        raise RuntimeError(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {s.loss_steps} steps: {verdict}")
    return [
        (
            f"loss on one batch, {s.loss_steps} steps at lr {s.loss_lr:g}, {student.precision}",
            f"{losses[0]:.4f} -> {losses[-1]:.4f} ({losses[-1] / losses[0]:.2f}x): {verdict}",
        )
    ]


# WHOLE RUNS
def _train(args: list[str], run_dir: Path, timeout: int) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    result = subprocess.run(
        ["dagger", "train", *args, "--run-dir", str(run_dir), "--json"], capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(lines[-1])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return wall, rows


def _to_95(wall: float, rows: list[dict]) -> str:
    hit = next((r for r in rows if r["step"] > 0 and r.get("eval/success_once", 0) >= 0.95), None)
    final = rows[-1].get("eval/success_once")
    if hit is None:
        final_text = "no eval" if final is None else f"final {100 * final:.0f}%"
        return f"not reached ({final_text}, {wall:.0f} s)"
    sr = 100 * hit["eval/success_once"]
    return f"{hit['time/elapsed_s']:.0f} s to {sr:.0f}% (iteration {hit['step']}; run {wall:.0f} s)"


def part_d(sizes: Sizes, tmp: Path) -> list[tuple[str, str]]:
    backend = "gpu" if sizes.device == "cuda" else "cpu"
    args = [
        "pick-cube",
        *sizes.pick_cube,
        "--set",
        f"env.sim_backend={backend}",
        "--set",
        f"env.num_envs={sizes.gpu_envs}",
        "--set",
        "env.max_steps_per_rollout_epoch=50",
        "--set",
        "runner.val_check_interval=1",
        "--set",
        "env.eval.interim_episodes=0",
        "--set",
        f"runner.max_epochs={sizes.gpu_epochs}",
        "--set",
        "runner.eval_student_init=false",
        "--set",
        "runner.eval_expert=false",
    ]
    wall, rows = _train(args, tmp / "pick-cube-gpu-sim", sizes.timeout_s)
    return [(f"pick-cube, ManiSkill {backend} simulation, {sizes.gpu_envs} envs", _to_95(wall, rows))]


def part_e(sizes: Sizes, tmp: Path) -> list[tuple[str, str]]:
    from dagger_cli.envs.libero import LiberoTaskEnv

    env = LiberoTaskEnv("libero_spatial", 256, 15, 10, render_every_step=False)
    try:
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        chunks = max(1, sizes.libero_steps // 10)
        start = time.perf_counter()
        for _ in range(chunks):
            env.step(rng.uniform(-1, 1, (10, 7)))
        seconds = time.perf_counter() - start
    finally:
        env.close()
    backend = os.environ.get("MUJOCO_GL", "?")
    return [(f"LIBERO-Spatial, one env, 256² cameras, MUJOCO_GL={backend}", f"{10 * chunks / seconds:.1f} env steps/s")]


def part_f(sizes: Sizes, tmp: Path) -> list[tuple[str, str]]:
    rows = []
    common = [
        "pick-cube",
        "--set",
        "env.eval.num_episodes=50",
        *sizes.pick_cube,
        "--set",
        "runner.val_check_interval=1",
        "--set",
        "env.eval.interim_episodes=0",
        "--set",
        "runner.eval_student_init=false",
        "--set",
        "runner.eval_expert=false",
    ]
    for mode in ("sync", "async"):
        wall, metrics = _train(
            common + (["--async"] if mode == "async" else []), tmp / f"pick-cube-{mode}", sizes.timeout_s
        )
        rows.append((f"pick-cube {mode}, {os.cpu_count()} cores", _to_95(wall, metrics)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every part at small sizes on the CPU")
    parser.add_argument("--parts", nargs="+", default=list("abcdefg"), choices=list("abcdefg"))
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    sizes = DRY if args.dry_run else FULL

    import torch

    from _common import table

    if sizes.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a machine with an NVIDIA GPU, or use --dry-run")
    gpu = torch.cuda.get_device_name() if sizes.device == "cuda" else "none (dry run on the CPU)"
    rows = [("part", "measured", "result")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        benches: dict[bool, Pi0Bench] = {}  # π₀'s for (a)-(c), π0.5's for (g)
        for part in args.parts:
            print(f"[{time.perf_counter() - started:.0f} s] part {part}", file=sys.stderr, flush=True)
            try:
                fn, pi05 = {"a": part_a, "b": part_b, "c": part_c, "g": part_g}.get(part), part == "g"
                if fn and pi05 not in benches:
                    benches[pi05] = Pi0Bench(sizes, tmp / ("stats-pi05" if pi05 else "stats"), pi05=pi05)
                found = fn(benches[pi05]) if fn else {"d": part_d, "e": part_e, "f": part_f}[part](sizes, tmp)
                rows += [(f"({part})", what, result) for what, result in found]
            except Exception as e:  # each part reports its own failure and the others go on
                text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                rows.append((f"({part})", "FAILED", f"{type(e).__name__}: {text}"))
            finally:
                if sizes.device == "cuda":
                    _free(sizes.device)
    print(
        f"GPU: {gpu}; torch {torch.__version__}; {os.cpu_count()} CPU cores; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([dict(zip(rows[0], r)) for r in rows[1:]], indent=2))
    sys.exit(1 if any(r[1] == "FAILED" for r in rows[1:]) else 0)


if __name__ == "__main__":
    main()
