"""What limits `libero-spatial-small`, measured offline on a finished run's replay buffer: a fresh student (the preset
with `--set` overrides, and optionally another image size or patch size for its vision tower) trains on the
samples of the iterations before `--split` for `--seconds` of learner time, then is scored on the samples of the
iterations from `--split` on (the student's own states at beta 0, which it never trained on): the flow-matching
loss, and the first executed action, sampled from noise of std 1 and of std 0 (`pi0.sample_noise_scale`), against
the expert's label in env units (mean absolute error of the position and rotation dims, and how often the gripper's
sign agrees). `label_pos_mad` is the position error of always answering the training labels' mean;
`task_pos_err@0` gives, per task, the position error from the noise's mean and that of answering zero. With
`--set actor.ema_decay=D` the scores are those of the moving average the student acts with, and under `trained`
those of the trained weights; `--score-at` also scores part-way (`at_<fraction>`).

    python bench/libero_offline_fit.py RUN_DIR/checkpoints/iter_000055 [--seconds 360] [--split 45]
        [--image 32 --patch 8] [--train-below 25] [--set actor.model.pi0.train_augmentation=true] [--tag NAME]
        [--set actor.ema_decay=0.99 --score-at 0.33 0.67]

Prints one JSON line. Run it on an otherwise idle machine: the learner's budget is wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

PRESET = "libero-spatial-small"
BATCH = 64


def _batches(data: dict[str, np.ndarray]):
    for start in range(0, len(data["expert_action"]), BATCH):
        yield {k: v[start : start + BATCH] for k, v in data.items()}


def held_out(student, test: dict[str, np.ndarray]) -> dict:
    """The student's scores on the held-out samples (see the module's docstring)."""
    from _common import short_task

    from dagger_cli.core.engine.replay_buffer import unflatten_obs

    labels = test["expert_action"][:, 0, :7]
    out = {}
    with torch.no_grad():
        loss = 0.0
        for part in _batches(test):
            torch.manual_seed(1)
            loss += float(student.loss(unflatten_obs(part), part["expert_action"])) * len(part["expert_action"])
        out["test_loss"] = loss / len(labels)
        for scale in (1.0, 0.0):
            actions = []
            for part in _batches(test):
                torch.manual_seed(2)
                noise = student.sample_noise(len(part["expert_action"])) * scale
                actions.append(student.act(unflatten_obs(part), noise=noise)[:, 0, :7])
            actions = np.concatenate(actions)
            out[f"pos_err@{scale:g}"] = float(np.abs(actions[:, :3] - labels[:, :3]).mean())
            out[f"rot_err@{scale:g}"] = float(np.abs(actions[:, 3:6] - labels[:, 3:6]).mean())
            out[f"grip_ok@{scale:g}"] = float((np.sign(actions[:, 6]) == np.sign(labels[:, 6])).mean())
        # per task, from the noise's mean (the preset's sampling): the position error and answering zero's
        pos_err = np.abs(actions[:, :3] - labels[:, :3]).mean(1)
        out["task_pos_err@0"] = {}
        for task in sorted(set(test["obs/prompt"])):
            of_task = test["obs/prompt"] == task
            out["task_pos_err@0"][short_task(task)] = [round(float(pos_err[of_task].mean()), 3),
                                                       round(float(np.abs(labels[of_task, :3]).mean()), 3)]
    return out


def scores(student, learner, test: dict[str, np.ndarray], steps: int) -> dict:
    """`held_out` of the weights the student acts with; with `actor.ema_decay` (the moving average), also of the
    trained weights, under `trained`."""
    student.module.eval()
    rng = torch.get_rng_state()  # scoring seeds its own draws; the learner's go on as without it
    out = {"steps": steps, **held_out(student, test)}
    if learner.average is not None:
        with learner.training():
            out["trained"] = held_out(student, test)
    torch.set_rng_state(rng)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", type=Path, help="a checkpoint of a libero-spatial-small run (its replay buffer is read)")
    ap.add_argument("--split", type=int, default=45, help="held-out samples: those of iterations >= this")
    ap.add_argument("--train-below", type=int, default=0, help="train on iterations < this (default: --split)")
    ap.add_argument("--seconds", type=float, default=360, help="learner wall time")
    ap.add_argument("--image", type=int, default=64, help="the vision tower's image size (cameras are resized)")
    ap.add_argument("--patch", type=int, default=16, help="the vision tower's patch size")
    ap.add_argument("--norm-iters", type=int, default=3, help="norm stats from the labels of iterations < this")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="preset override")
    ap.add_argument("--tag", default="", help="a name printed with the result")
    ap.add_argument("--score-at", type=float, nargs="*", default=[],
                    help="also score after these fractions of --seconds (e.g. 0.33 0.67)")
    args = ap.parse_args()

    from dagger_cli import assembly
    from dagger_cli.core.config_loader import load_config
    from dagger_cli.core.engine.learner import Learner
    from dagger_cli.core.engine.replay_buffer import ReplayBuffer, unflatten_obs
    from dagger_cli.core.engine.run_checkpoint import checkpoint_samples
    from dagger_cli.policies.pi0 import sizes

    torch.manual_seed(0)
    variant = sizes.VARIANTS["small_vision"]
    siglip = dataclasses.replace(variant.siglip, image_size=args.image, patch_size=args.patch)
    sizes.VARIANTS["small_vision"] = dataclasses.replace(variant, siglip=siglip)
    cfg = load_config(PRESET, overrides=args.set)

    # data: train on the early iterations, hold out the late ones
    data = checkpoint_samples(args.ckpt)
    iteration = data["iteration"]
    train = {k: v[iteration < (args.train_below or args.split)] for k, v in data.items()}
    test = {k: v[iteration >= args.split] for k, v in data.items()}
    first = {k: v[iteration < args.norm_iters] for k, v in data.items()}
    student = assembly.student(cfg, "cpu")
    student.fit_norm_stats(unflatten_obs(first), first["expert_action"])

    # learner: the preset's optimiser and schedule, for a wall-time budget (scoring at --score-at not counted)
    samples = ReplayBuffer(len(train["expert_action"]))
    samples.add(train)
    learner = Learner(student, cfg.actor, 0, default_total_steps=int(args.seconds / 0.13))
    out = {"tag": args.tag, "set": args.set, "image": args.image, "patch": args.patch, "train": samples.size,
           "test": len(test["expert_action"])}
    marks = sorted(args.score_at)
    spent, steps, curve = 0.0, 0, []
    while spent < args.seconds:
        start = time.perf_counter()
        curve.append(round(learner.train(samples, 50)["train/dagger/actor_loss"], 3))
        spent += time.perf_counter() - start
        steps += 50
        while marks and spent >= marks[0] * args.seconds:
            out[f"at_{marks.pop(0):g}"] = scores(student, learner, test, steps)
    out.update(step_s=spent / steps, **scores(student, learner, test, steps))
    labels = test["expert_action"][:, 0, :7]
    out["label_pos_mad"] = float(np.abs(labels[:, :3] - train["expert_action"][:, 0, :3].mean(0)).mean())
    out["train_loss_curve"] = curve[:: max(1, len(curve) // 8)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
