"""Per task, how learnable the scripted expert's labels are, from a finished `libero-spatial-small` run's replay
buffer: how much the labels of neighbouring states disagree, and how far the student's executed actions were from
the labels once it acted alone. A task whose neighbouring states carry very different labels needs the cameras to
tell those states apart; a student that averages such labels stalls.

    python bench/libero_label_consistency.py RUN_DIR/checkpoints/iter_000055 [--neighbours 5] [--beta0-from 21]

Columns (first executed step of each chunk, position dims 0–2, LIBERO's action units):
- `label spread`: mean |label − label of a neighbour| over each sample's nearest `--neighbours` samples of the same
  task by the proprioceptive state's position and rotation (in every episode of the run);
- `student error`: mean |executed action − label| over the samples from iteration `--beta0-from` on (beta 0: the
  student acted, each sample by the student of its iteration);
- `|label|`: the labels' mean magnitude.
Reads only; a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", type=Path, help="a checkpoint of a libero-spatial-small run (its replay buffer is read)")
    ap.add_argument("--neighbours", type=int, default=5)
    ap.add_argument("--beta0-from", type=int, default=21, help="the first iteration at beta 0 (the preset's: 21)")
    args = ap.parse_args()
    from _common import short_task, table

    from dagger_cli.core.engine.run_checkpoint import checkpoint_samples

    data = checkpoint_samples(args.ckpt)
    prompt, iteration, state = data["obs/prompt"], data["iteration"], data["obs/state"]
    label, executed = data["expert_action"][:, 0, :3], data["action"][:, 0, :3]
    rows = [("task", "samples", "at beta 0", "label spread", "student error", "|label|")]
    for task in sorted(set(prompt)):
        idx = np.flatnonzero(prompt == task)
        pose = state[idx, :6]
        dist = ((pose[:, None] - pose[None]) ** 2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        near = np.argsort(dist, axis=1)[:, : args.neighbours]
        spread = np.abs(label[idx][:, None] - label[idx][near]).mean()
        alone = idx[iteration[idx] >= args.beta0_from]
        error = np.abs(executed[alone] - label[alone]).mean() if len(alone) else float("nan")
        rows.append((short_task(task), str(len(idx)), str(len(alone)), f"{spread:.3f}", f"{error:.3f}",
                     f"{np.abs(label[idx]).mean():.3f}"))
    print(table(rows))


if __name__ == "__main__":
    main()
