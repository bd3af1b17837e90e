"""Replay buffer at LIBERO scale: memory vs disk storage, side by side.

Samples of the libero-spatial preset's shapes (two 256×256×3 uint8 cameras, 8-D state, a 50 × 7 label, the
executed 5 × 7 chunk, a prompt, metadata), windows up to RLinf's 48,000. Each (storage, window) runs in its own
process: fill the window and go round it once more (`--rounds`), saving a checkpoint every `--added-per-save`
samples (one libero-spatial iteration: 16 envs × 240 steps / 5-step chunks = 768), then draw batches of 256.

Measured per run: peak resident memory (ru_maxrss), insert and sample throughput, seconds per checkpoint, the
bytes this process wrote (/proc/self/io wchar) between two saves against the bytes the samples added in that time,
and, after every insert, the bytes of the buffer's files on disk and this process's open descriptors (their peaks).

    python bench/replay_buffer_scale.py                       # memory at 2k/4k/8k, disk at 4k/16k/48k
    python bench/replay_buffer_scale.py --dir /fast/disk      # where the disk buffers go (default: a temp dir)
    python bench/replay_buffer_scale.py --added-per-save 0 --rounds 30   # never save (runner.save_interval: -1)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

BATCH = 256
PROMPTS = [f"pick up the black bowl number {i} and place it on the plate" for i in range(10)]


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def on_disk(root: Path) -> int:
    """Bytes of the column files under `root` (os.scandir: cheap enough to run after every insert)."""
    total = 0
    for seg in os.scandir(root) if root.is_dir() else ():
        if seg.is_dir():
            total += sum(f.stat().st_size for f in os.scandir(seg.path))
    return total


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def trajectory(rng: np.random.Generator, length: int, base: np.ndarray, start: int) -> dict[str, np.ndarray]:
    """One LIBERO-shaped trajectory; image contents vary per sample (a shifted base image), as real frames do."""
    shift = rng.integers(0, 255, size=(length, 1, 1, 1), dtype=np.uint8)
    return {
        "obs/image": base[None] + shift,
        "obs/wrist_image": base[None] - shift,
        "obs/state": rng.standard_normal((length, 8)).astype(np.float32),
        "obs/prompt": np.array([PROMPTS[start % len(PROMPTS)]] * length),
        "expert_action": rng.standard_normal((length, 50, 7)).astype(np.float32),
        "action": rng.standard_normal((length, 5, 7)).astype(np.float32),
        "expert_used": rng.random(length) < 0.5,
        "beta": np.full(length, 0.5, np.float32),
        "iteration": np.full(length, start, np.int32),
        "policy_version": np.full(length, start, np.int32),
        "episode_id": np.full(length, start, np.int64),
    }


def child(storage: str, window: int, root: Path, added_per_save: int, batches: int, rounds: int) -> dict:
    from dagger_cli.core.engine.replay_buffer import ReplayBuffer
    from dagger_cli.core.engine.replay_storage import DiskStorage, MemoryStorage

    root.mkdir(parents=True, exist_ok=True)
    log = root / ("ckpt" if storage == "memory" else "rb")
    store = MemoryStorage(window, log) if storage == "memory" else DiskStorage(window, log)
    buffer = ReplayBuffer(window, store)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    trajectories = [trajectory(rng, 24, base, i) for i in range(8)]  # made once: the bench times the buffer
    row = sum(v[0].nbytes for k, v in trajectories[0].items() if k != "obs/prompt") + 4
    insert_s, saves, added, t, peak_disk, peak_fds = 0.0, [], 0, 0, 0, 0
    last_save_wchar = wchar()
    total = window + rounds * window  # fill, then go round `rounds` times
    while added < total:
        start = time.perf_counter()
        buffer.add(trajectories[t % len(trajectories)])
        insert_s += time.perf_counter() - start
        added, t = added + 24, t + 1
        peak_disk, peak_fds = max(peak_disk, on_disk(log)), max(peak_fds, open_fds())
        if added_per_save and added % added_per_save < 24:
            start = time.perf_counter()
            meta = buffer.state_dict()
            json.dumps(meta)
            if saves:  # keep two checkpoints, as runner.keep_checkpoints does
                keep = {m["name"] for s in (saves[-1]["meta"], meta) for m in s["storage"]["segments"]}
                buffer.collect(keep)
            seconds = time.perf_counter() - start
            now = wchar()
            saves.append({"meta": meta, "seconds": seconds, "written": now - last_save_wchar,
                          "added": (buffer.total_samples - (saves[-1]["total"] if saves else 0)) * row,
                          "total": buffer.total_samples})
            last_save_wchar = now
            peak_disk, peak_fds = max(peak_disk, on_disk(log)), max(peak_fds, open_fds())
    sample_rng = np.random.default_rng(1)
    buffer.sample(BATCH, sample_rng)
    start = time.perf_counter()
    for _ in range(batches):
        buffer.sample(BATCH, sample_rng)
    sample_s = time.perf_counter() - start
    steady = saves[2:] or saves or [{"seconds": np.nan, "written": np.nan, "added": np.nan}]  # after the first
    return {
        "storage": storage,
        "window": window,
        "row_bytes": row,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "insert_per_s": added / insert_s,
        "sample_per_s": batches * BATCH / sample_s,
        "save_s": float(np.mean([s["seconds"] for s in steady])),
        "written_per_added": float(np.mean([s["written"] / s["added"] for s in steady])),
        "old_written_per_added": float(np.mean([window * row / s["added"] for s in steady])),
        "on_disk_gb": on_disk(log) / 1e9,
        "peak_disk_gb": peak_disk / 1e9,
        "window_gb": window * row / 1e9,
        "peak_fds": peak_fds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memory-windows", default="2000,4000,8000")
    p.add_argument("--disk-windows", default="4000,16000,48000")
    p.add_argument("--added-per-save", type=int, default=768, help="samples added between two saves (0: never save)")
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--rounds", type=int, default=1, help="times the window goes round once filled")
    p.add_argument("--learner-steps-per-s", type=float, default=1.0,
                   help="assumed optimizer steps per second of the learner (π₀ full fine-tune on one GPU)")
    p.add_argument("--dir", default=None, help="where the buffers go (default: a temp dir)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        storage, window = args.child
        print(json.dumps(child(storage, int(window), Path(args.dir), args.added_per_save, args.batches, args.rounds)))
        return
    base = Path(tempfile.mkdtemp(prefix="dagger-rb-", dir=args.dir))
    runs = [("memory", int(w)) for w in args.memory_windows.split(",") if w]
    runs += [("disk", int(w)) for w in args.disk_windows.split(",") if w]
    results = []
    try:
        for storage, window in runs:
            out = subprocess.run(
                [sys.executable, __file__, "--child", storage, str(window), "--dir", str(base / f"{storage}-{window}"),
                 "--added-per-save", str(args.added_per_save), "--batches", str(args.batches),
                 "--rounds", str(args.rounds)],
                capture_output=True, text=True,
            )
            if out.returncode:
                sys.exit(f"{storage} {window}: {(out.stderr.strip().splitlines() or ['failed'])[-1]}")
            results.append(json.loads(out.stdout))
            shutil.rmtree(base / f"{storage}-{window}", ignore_errors=True)
            print(f"done: {storage} {window}", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    consumes = BATCH * args.learner_steps_per_s
    rows = [("storage", "window", "peak RSS GB", "insert/s", "sample/s", "sample/learner", "save s",
             "written/added", "before (whole buffer)", "on disk GB", "peak disk GB", "window GB", "peak open fds")]
    for r in results:
        rows.append((r["storage"], str(r["window"]), f"{r['peak_rss_gb']:.2f}", f"{r['insert_per_s']:.0f}",
                     f"{r['sample_per_s']:.0f}", f"{r['sample_per_s'] / consumes:.1f}x", f"{r['save_s']:.3f}",
                     f"{r['written_per_added']:.3f}", f"{r['old_written_per_added']:.1f}", f"{r['on_disk_gb']:.1f}",
                     f"{r['peak_disk_gb']:.2f}", f"{r['window_gb']:.2f}", str(r["peak_fds"])))
    print(table(rows))
    mem = [r for r in results if r["storage"] == "memory"]
    if len(mem) >= 2:
        slope = np.polyfit([r["window"] for r in mem], [r["peak_rss_gb"] for r in mem], 1)
        print(f"memory storage, extrapolated to a 48000 window: {np.polyval(slope, 48000):.1f} GB peak RSS "
              f"({slope[0] * 1e3:.2f} GB per 1000 samples)")
    print(f"sample/learner: sampling throughput over what the learner consumes, {BATCH} samples per step at an "
          f"assumed {args.learner_steps_per_s:g} steps/s; 'before' is the bytes the old checkpoints wrote per save "
          "(the whole buffer) over the bytes added; peak disk: the buffer's files, after every insert (the window plus "
          "what the kept checkpoints name)")


if __name__ == "__main__":
    main()
