"""The aggregated samples as a LeRobot v3.0 dataset: written with pyarrow and PyAV, read back to the same samples,
and (with DAGGER_LEROBOT_PYTHON, a Python with `lerobot` installed) loaded by LeRobot's own LeRobotDataset."""

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

from dagger_cli.core import checkpoint  # noqa: E402
from dagger_cli.core.run_state import checkpoint_samples  # noqa: E402
from dagger_cli.interop import lerobot_dataset  # noqa: E402
from test_cli import dagger  # noqa: E402
from test_report import train  # noqa: E402


def camera_samples(episodes=3, length=6):
    """LIBERO-shaped samples (small cameras), consecutive per episode, prompts per episode."""
    rng = np.random.default_rng(0)
    n = episodes * length
    return {
        "obs/image": rng.integers(0, 256, (n, 16, 24, 3), dtype=np.uint8),
        "obs/wrist_image": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
        "obs/state": rng.standard_normal((n, 8)).astype(np.float32),
        "obs/prompt": np.array([f"put bowl {i // length} on the plate" for i in range(n)]),
        "expert_action": rng.standard_normal((n, 10, 7)).astype(np.float32),
        "action": rng.standard_normal((n, 5, 7)).astype(np.float32),
        "expert_used": rng.random(n) < 0.5,
        "beta": np.full(n, 0.5, np.float32),
        "iteration": np.repeat(np.arange(episodes), length).astype(np.int32),
        "policy_version": np.repeat(np.arange(episodes), length).astype(np.int32),
        "episode_id": np.repeat(np.arange(10, 10 + episodes), length).astype(np.int64),
    }


def test_a_lossless_export_reads_back_to_the_same_samples(tmp_path):
    samples = camera_samples()
    info = lerobot_dataset.export(samples, tmp_path / "ds", fps=4, lossless=True)
    assert info["total_episodes"] == 3 and info["total_frames"] == 18 and info["total_tasks"] == 3
    assert info["features"]["observation.images.image"]["dtype"] == "video"
    back = lerobot_dataset.read(tmp_path / "ds")
    assert set(back) == set(samples)
    for key, value in samples.items():
        assert back[key].shape == value.shape and back[key].dtype == value.dtype, key
        assert np.array_equal(back[key], value), key


def test_the_default_video_is_close_and_only_expert_labels_keeps_expert_steps(tmp_path):
    samples = camera_samples()
    smooth = np.linspace(0, 255, 16 * 24 * 3).reshape(16, 24, 3).astype(np.uint8)
    samples["obs/image"] = np.broadcast_to(smooth, samples["obs/image"].shape).copy()
    lerobot_dataset.export(samples, tmp_path / "ds", fps=4, only_expert_labels=True)
    back = lerobot_dataset.read(tmp_path / "ds")
    keep = samples["expert_used"]
    assert len(back["episode_id"]) == keep.sum() and back["expert_used"].all()
    assert np.array_equal(back["expert_action"], samples["expert_action"][keep])
    error = np.abs(back["obs/image"].astype(float) - samples["obs/image"][keep]).mean()
    assert error < 4  # H.264 yuv420p on a smooth image: a few grey levels
    meta = json.loads((tmp_path / "ds" / "meta" / "stats.json").read_text())
    assert meta["expert_used"]["mean"] == [1.0] and np.shape(meta["observation.images.image"]["mean"]) == (3, 1, 1)


def test_dagger_export_writes_a_runs_buffer_as_a_dataset(tmp_path):
    run = tmp_path / "run"
    train(run, **{"runner.max_epochs": 2})
    out = tmp_path / "ds"
    result = dagger("export", str(run), "--format", "lerobot", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    stored = checkpoint_samples(checkpoint.list_checkpoints(run / "checkpoints")[-1])
    back = lerobot_dataset.read(out)
    assert set(back) == set(stored)
    assert all(np.array_equal(back[k], v) for k, v in stored.items())


LEROBOT_PYTHON = os.environ.get("DAGGER_LEROBOT_PYTHON")


@pytest.mark.skipif(not LEROBOT_PYTHON, reason="DAGGER_LEROBOT_PYTHON (a Python with lerobot) is not set")
def test_lerobots_own_reader_loads_the_export(tmp_path):
    samples = camera_samples()
    lerobot_dataset.export(samples, tmp_path / "ds", fps=4)
    script = textwrap.dedent(f"""
        import json, numpy as np
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        ds = LeRobotDataset("local/dagger-export", root={str(tmp_path / "ds")!r}, video_backend="pyav")
        item = ds[7]
        print(json.dumps({{
            "len": len(ds), "episodes": ds.num_episodes, "fps": ds.fps, "features": sorted(ds.features),
            "state": item["observation.state"].tolist(), "expert_action": item["expert_action"].tolist(),
            "task": item["task"], "image": list(item["observation.images.image"].shape),
            "pixel_mean": float(item["observation.images.image"].float().mean()),
        }}))
    """)
    result = subprocess.run([LEROBOT_PYTHON, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["len"] == 18 and seen["episodes"] == 3 and seen["fps"] == 4
    assert {"observation.state", "observation.images.image", "action", "expert_action", "intervention"} <= set(
        seen["features"])
    assert np.allclose(seen["state"], samples["obs/state"][7], atol=1e-6)
    assert np.allclose(seen["expert_action"], samples["expert_action"][7].ravel(), atol=1e-6)
    assert seen["task"] == "put bowl 1 on the plate"
    assert seen["image"] == [3, 16, 24]  # LeRobot's channel-first float frame
    assert abs(seen["pixel_mean"] - samples["obs/image"][7].mean() / 255) < 0.05


def test_a_seed_dataset_of_expert_labels_starts_the_student_above_an_untrained_one(tmp_path):
    # GIVEN a run whose expert-executed steps are exported as a dataset
    run = tmp_path / "run"
    untrained = train(run, **{"runner.max_epochs": 2})
    dataset = tmp_path / "demos"
    result = dagger("export", str(run), "--format", "lerobot", "--only-expert-labels", "--out", str(dataset))
    assert result.returncode == 0, result.stderr
    # WHEN a new run starts from it, with behaviour cloning first
    seeded = train(tmp_path / "seeded", **{"runner.max_epochs": 1,
                                           "algorithm.replay_buffer.seed_dataset": str(dataset),
                                           "algorithm.dagger.bc_warmup_updates": 300})
    # THEN its initial student (evaluated after the warm-up) beats the untrained one, and the demonstrations sit in
    # the buffer as iteration -1
    assert seeded["student_init_sr"] > untrained["student_init_sr"]
    stored = checkpoint_samples(checkpoint.list_checkpoints(tmp_path / "seeded" / "checkpoints")[-1])
    demos = stored["iteration"] == -1
    assert demos.sum() == len(lerobot_dataset.read(dataset)["episode_id"]) and stored["expert_used"][demos].all()


def test_a_dataset_missing_a_feature_is_one_line(tmp_path):
    samples = camera_samples()
    lerobot_dataset.export(samples, tmp_path / "ds", fps=4)
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    del info["features"]["expert_action"]
    (tmp_path / "ds" / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(Exception) as e:
        lerobot_dataset.read(tmp_path / "ds", "algorithm.replay_buffer.seed_dataset")
    assert str(e.value).startswith("algorithm.replay_buffer.seed_dataset: ") and "'expert_action'" in str(e.value)


def test_a_seed_dataset_that_does_not_fit_the_env_is_one_line(tmp_path):
    from dagger_cli.core.errors import ConfigError

    lerobot_dataset.export(camera_samples(), tmp_path / "ds", fps=4)
    with pytest.raises(ConfigError) as e:
        train(tmp_path / "run", **{"runner.max_epochs": 1,
                                   "algorithm.replay_buffer.seed_dataset": str(tmp_path / "ds")})
    assert str(e.value).startswith("algorithm.replay_buffer.seed_dataset: the samples of ") and "\n" not in str(e.value)
