"""The aggregated samples as a LeRobot v3.0 dataset: written with pyarrow and PyAV, read back to the same samples,
and (with DAGGER_LEROBOT_PYTHON, a Python with `lerobot` installed) loaded by LeRobot's own LeRobotDataset; datasets
not written by dagger (LeRobot's names, one action a frame) read through a feature map and seed runs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

from conftest import PointEnv, PointExpert, point_config  # noqa: E402
from test_cli import dagger  # noqa: E402
from test_report import train  # noqa: E402

from dagger_cli.core.io import checkpoint# noqa: E402
from dagger_cli.core.engine.run_checkpoint import checkpoint_samples  # noqa: E402
from dagger_cli.core.io.video import read_frames  # noqa: E402
from dagger_cli.interop import lerobot_dataset  # noqa: E402


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
    # AND a feature of one value a frame (the point env's 1-D action) is a scalar column, which is how LeRobot's
    # reader (HF datasets) types a feature of shape [1]: a list column there fails its cast
    import pyarrow.parquet as pq

    schema = pq.read_schema(out / "data" / "chunk-000" / "file-000.parquet")
    assert str(schema.field("action").type) == "float"
    assert str(schema.field("observation.state").type).startswith("fixed_size_list")


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


# DATASETS NOT WRITTEN BY DAGGER: features named by algorithm.replay_buffer.seed_features
def write_lerobot_layout(root, episodes, fps=10, split_at=1, use_videos=True):
    """A LeRobot v3.0 dataset as LeRobot's own writer lays it out, written here with pyarrow and PyAV (lossless):
    each episode a dict of per-frame arrays under LeRobot's feature names plus its `task`; uint8 (T, H, W, 3) arrays
    are videos (or, without `use_videos`, PNG images in the parquet). Episodes before `split_at` go to data and
    video file 0, the rest to file 1, one after another."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dagger_cli.core.io.video import VideoWriter

    names = [k for k in episodes[0] if k != "task"]
    cameras = [k for k in names if episodes[0][k].dtype == np.uint8 and episodes[0][k].ndim == 4]
    videos = cameras if use_videos else []
    tasks = list(dict.fromkeys(e["task"] for e in episodes))
    features, rows, index = {}, [], 0
    for k in names:
        shape = list(episodes[0][k].shape[1:])
        dtype = "video" if k in videos else "image" if k in cameras else str(episodes[0][k].dtype)
        features[k] = {"dtype": dtype, "shape": shape, "names": None}
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        features[k] = {"dtype": "float32" if k == "timestamp" else "int64", "shape": [1], "names": None}
    files = {0: [], 1: []}
    for e, episode in enumerate(episodes):
        files[int(e >= split_at)].append(e)
    offsets = {}
    for file, members in files.items():
        columns = {k: [] for k in names if k not in videos}
        extra = {k: [] for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")}
        start = 0
        for e in members:
            episode = episodes[e]
            length = len(episode[names[0]])
            offsets[e] = (file, start)
            for k in columns:
                columns[k].append(episode[k])
            extra["timestamp"].append(np.arange(length, dtype=np.float32) / fps)
            extra["frame_index"].append(np.arange(length))
            extra["episode_index"].append(np.full(length, e))
            extra["index"].append(np.arange(index, index + length))
            extra["task_index"].append(np.full(length, tasks.index(episode["task"])))
            rows.append({"episode_index": e, "tasks": [episode["task"]], "length": length, "data/chunk_index": 0,
                         "data/file_index": file, "dataset_from_index": index, "dataset_to_index": index + length})
            index += length
            start += length
        table = {}
        for k, parts in columns.items():
            values = np.concatenate(parts)
            if k in cameras:  # LeRobot's image feature: a struct of the PNG's bytes and a path
                table[k] = pa.array([{"bytes": png(frame), "path": None} for frame in values])
                continue
            flat = values.reshape(len(values), -1)
            table[k] = (pa.array(flat[:, 0]) if flat.shape[1] == 1
                        else pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1]))
        table.update({k: pa.array(np.concatenate(v).astype(np.float32 if k == "timestamp" else np.int64))
                      for k, v in extra.items()})
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), root / f"data/chunk-000/file-{file:03d}.parquet")
        for k in videos:
            (root / f"videos/{k}/chunk-000").mkdir(parents=True, exist_ok=True)
            with VideoWriter(root / f"videos/{k}/chunk-000/file-{file:03d}.mp4", fps, lossless=True) as writer:
                for e in members:
                    writer.write(episodes[e][k])
    for row in rows:
        file, start = offsets[row["episode_index"]]
        for k in videos:
            row.update({f"videos/{k}/chunk_index": 0, f"videos/{k}/file_index": file,
                        f"videos/{k}/from_timestamp": start / fps,
                        f"videos/{k}/to_timestamp": (start + row["length"]) / fps})
    (root / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": np.arange(len(tasks)), "__index_level_0__": tasks}),
                   root / "meta/tasks.parquet")
    info = {"codebase_version": "v3.0", "fps": fps, "total_episodes": len(episodes), "total_frames": index,
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "features": features}
    (root / "meta/info.json").write_text(json.dumps(info))
    return root


def png(frame) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def foreign_episodes():
    rng = np.random.default_rng(1)
    return [{"observation.state": rng.standard_normal((length, 3)).astype(np.float32),
             # (LeRobot's SVT-AV1 encoder dies on 24×16 frames)
             "observation.images.front": rng.integers(0, 256, (length, 24, 32, 3), dtype=np.uint8),
             "action": (np.arange(length)[:, None] * [1, -1] + 100 * e).astype(np.float32),
             "task": f"task {e % 2}"} for e, length in enumerate([5, 3, 4])]


FEATURES = {"obs/state": "observation.state", "obs/front": "observation.images.front", "expert_action": "action",
            "obs/prompt": "task"}


def test_a_foreign_dataset_reads_through_a_feature_map_with_per_step_actions_as_chunks(tmp_path):
    # GIVEN a dataset in LeRobot's names, two data and video files, one action a frame
    episodes = foreign_episodes()
    write_lerobot_layout(tmp_path / "ds", episodes)
    # WHEN read for a student whose labels are 4 steps of 2, executing 2
    samples = lerobot_dataset.read(tmp_path / "ds", "k", FEATURES, label_shape=(4, 2), executed_steps=2)
    # THEN every frame is a sample; its label the episode's next 4 actions, the last repeated past the end
    assert set(samples) == {*FEATURES, "action", "expert_used", "beta", "episode_id"}
    frames = {k: np.concatenate([e[k] for e in episodes]) for k in ("observation.state", "observation.images.front")}
    assert np.array_equal(samples["obs/state"], frames["observation.state"])
    assert np.array_equal(samples["obs/front"], frames["observation.images.front"])  # frames of file 1 too
    second = episodes[1]["action"]  # 3 frames
    assert np.array_equal(samples["expert_action"][5], second[[0, 1, 2, 2]])
    assert np.array_equal(samples["expert_action"][7], second[[2, 2, 2, 2]])
    assert np.array_equal(samples["action"], samples["expert_action"][:, :2])
    assert list(samples["obs/prompt"]) == ["task 0"] * 5 + ["task 1"] * 3 + ["task 0"] * 4
    # AND the frames are demonstrations: executed by the expert at beta 1, episodes of iteration -1
    assert samples["expert_used"].all() and (samples["beta"] == 1).all()
    assert list(np.unique(samples["episode_id"])) == [-(2**24), -(2**24) + 1, -(2**24) + 2]
    # WHEN a label is a whole chunk a frame
    chunks = lerobot_dataset.read(tmp_path / "ds", "k", FEATURES, label_shape=(1, 2))
    assert np.array_equal(chunks["expert_action"][:, 0], np.concatenate([e["action"] for e in episodes]))
    # WHEN the camera is stored as PNG images in the parquet instead of a video
    write_lerobot_layout(tmp_path / "images", episodes, use_videos=False)
    images = lerobot_dataset.read(tmp_path / "images", "k", FEATURES, label_shape=(4, 2))
    assert np.array_equal(images["obs/front"], frames["observation.images.front"])


@pytest.mark.parametrize("features, shape, needle", [
    ({**FEATURES, "obs/wrist": "observation.images.wrist"},
     (4, 2), "algorithm.replay_buffer.seed_features.obs/wrist: "),
    (FEATURES, (4, 3), "algorithm.replay_buffer.seed_features.expert_action: 'action' has 2 values a frame; the "
                       "student's labels are 4 steps of 3"),
])
def test_a_feature_map_that_does_not_fit_is_one_line(tmp_path, features, shape, needle):
    from dagger_cli.core.errors import UsageError

    write_lerobot_layout(tmp_path / "ds", foreign_episodes())
    with pytest.raises(UsageError) as e:
        lerobot_dataset.read(tmp_path / "ds", "k", features, label_shape=shape)
    assert str(e.value).startswith(needle) and "\n" not in str(e.value)
    if "wrist" in needle:
        assert "has no feature 'observation.images.wrist' (it has action, episode_index" in str(e.value)


def test_seed_features_need_a_dataset_and_a_label(tmp_path):
    from dagger_cli.core.errors import ConfigError

    with pytest.raises(ConfigError, match="seed_features: needs algorithm.replay_buffer.seed_dataset"):
        point_config(**{"algorithm.replay_buffer.seed_features.obs": "observation.state"})
    with pytest.raises(ConfigError, match="must name the dataset's label feature as expert_action"):
        point_config(**{"algorithm.replay_buffer.seed_dataset": "x", "algorithm.replay_buffer.seed_features":
                        "{obs: observation.state}"})
    with pytest.raises(ConfigError, match="seed_features: expected a mapping"):
        point_config(**{"algorithm.replay_buffer.seed_dataset": "x", "algorithm.replay_buffer.seed_features": "3"})
    cfg = point_config(**{"algorithm.replay_buffer.seed_dataset": "x",
                          "algorithm.replay_buffer.seed_features.expert_action": "action"})
    assert cfg.algorithm.replay_buffer.seed_features == {"expert_action": "action"}


def point_demonstrations(episodes=12, steps=20):
    """The point expert's episodes in PointEnv, as LeRobot names them: the state, one action a frame."""
    env, expert = PointEnv(1), PointExpert()
    out = []
    for e in range(episodes):
        obs = env.reset([1000 + e])
        states, actions = [], []
        for _ in range(steps):
            action = expert.act(obs)
            states.append(obs[0].copy())
            actions.append(action[0, 0].copy())
            obs, _ = env.step(action)
        out.append({"observation.state": np.array(states, np.float32), "action": np.array(actions, np.float32),
                    "task": "reach the goal"})
    return out


def test_demonstrations_in_lerobots_names_seed_a_run_above_the_untrained_student(tmp_path):
    # GIVEN the expert's demonstrations as a dataset with LeRobot's feature names and no dagger metadata
    dataset = write_lerobot_layout(tmp_path / "demos", point_demonstrations())
    untrained = train(tmp_path / "untrained", **{"runner.max_epochs": 1})
    # WHEN a run is seeded from it through a feature map, with behaviour cloning first
    seeded = train(tmp_path / "seeded", **{"runner.max_epochs": 1,
                                           "algorithm.replay_buffer.seed_dataset": str(dataset),
                                           "algorithm.replay_buffer.seed_features.obs": "observation.state",
                                           "algorithm.replay_buffer.seed_features.expert_action": "action",
                                           "algorithm.dagger.bc_warmup_updates": 300})
    # THEN its initial student beats the untrained one, and the 240 frames are in the buffer as iteration -1
    assert seeded["student_init_sr"] > untrained["student_init_sr"]
    stored = checkpoint_samples(checkpoint.list_checkpoints(tmp_path / "seeded" / "checkpoints")[-1])
    assert (stored["iteration"] == -1).sum() == 240


SEEDED = {"algorithm.replay_buffer.seed_features.obs": "observation.state",
          "algorithm.replay_buffer.seed_features.expert_action": "action"}


def test_the_lr_schedule_counts_the_bc_warm_up_steps(tmp_path):
    # GIVEN a run of 2 iterations of 30 updates after a BC warm-up of 30 on demonstrations, its LR decaying linearly
    # to 0 over the schedule's length
    dataset = write_lerobot_layout(tmp_path / "demos", point_demonstrations(episodes=4))
    sets = {"runner.max_epochs": 2, "algorithm.replay_buffer.seed_dataset": str(dataset), **SEEDED,
            "algorithm.dagger.bc_warmup_updates": 30, "actor.optim.lr_scheduler": "linear", "actor.optim.min_lr": 0}
    # WHEN it runs
    train(tmp_path / "run", **sets)
    # THEN the schedule spans all 90 optimizer steps: a third of the peak LR is left after the first iteration
    # (step 60), none after the last, where the decay ends
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [row["train/actor/lr"] for row in rows if "train/actor/lr" in row]
    peak = point_config(**sets).actor.optim.lr
    assert lrs == pytest.approx([peak / 3, 0.0], abs=1e-12)


def test_a_seed_dataset_of_the_wrong_shape_is_one_line_before_any_warm_up_step(tmp_path, monkeypatch):
    from dagger_cli.core.errors import ConfigError
    from dagger_cli.core.engine.learner import Learner

    # GIVEN demonstrations whose states have 3 values where the env's have 2, and a run that warms up on them
    demos = point_demonstrations(episodes=2)
    for episode in demos:
        episode["observation.state"] = np.concatenate([episode["observation.state"], episode["action"]], axis=1)
    dataset = write_lerobot_layout(tmp_path / "demos", demos)
    steps = []
    monkeypatch.setattr(Learner, "step", lambda self, *args, **kwargs: steps.append(1) or (0.0, 0.0))
    # WHEN the run starts
    with pytest.raises(ConfigError) as e:
        train(tmp_path / "run", **{"runner.max_epochs": 1, "algorithm.replay_buffer.seed_dataset": str(dataset),
                                   **SEEDED, "algorithm.dagger.bc_warmup_updates": 300})
    # THEN it stops in one line naming the field and both shapes, before any warm-up step
    assert not steps
    assert str(e.value).startswith("algorithm.replay_buffer.seed_dataset: ") and "\n" not in str(e.value)
    assert "'obs'" in str(e.value) and "(3,)" in str(e.value) and "(2,)" in str(e.value)


@pytest.mark.skipif(not LEROBOT_PYTHON, reason="DAGGER_LEROBOT_PYTHON (a Python with lerobot) is not set")
def test_a_dataset_written_by_lerobot_reads_through_a_feature_map(tmp_path):
    # GIVEN a dataset that LeRobot's own LeRobotDataset.create / add_frame / save_episode wrote (AV1 video)
    episodes = foreign_episodes()
    np.savez(tmp_path / "frames.npz", **{f"{e}/{k}": v for e, ep in enumerate(episodes) for k, v in ep.items()
                                         if k != "task"})
    script = textwrap.dedent(f"""
        import numpy as np
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        frames = np.load({str(tmp_path / "frames.npz")!r})
        features = {{"observation.state": {{"dtype": "float32", "shape": (3,), "names": None}},
                     "observation.images.front": {{"dtype": "video", "shape": (24, 32, 3),
                                                   "names": ["height", "width", "channels"]}},
                     "action": {{"dtype": "float32", "shape": (2,), "names": None}}}}
        ds = LeRobotDataset.create("local/foreign", fps=10, features=features, root={str(tmp_path / "ds")!r})
        for e, task in enumerate({[ep["task"] for ep in episodes]!r}):
            for t in range(len(frames[f"{{e}}/action"])):
                ds.add_frame({{k: frames[f"{{e}}/{{k}}"][t] for k in features}} | {{"task": task}})
            ds.save_episode()
        ds.finalize()
    """)
    result = subprocess.run([LEROBOT_PYTHON, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # WHEN it is read through the feature map
    samples = lerobot_dataset.read(tmp_path / "ds", "k", FEATURES, label_shape=(4, 2), executed_steps=2)
    # THEN the states, the chunked actions and the tasks are LeRobot's exactly, and the frames close (AV1 is lossy)
    assert np.array_equal(samples["obs/state"], np.concatenate([e["observation.state"] for e in episodes]))
    assert np.array_equal(samples["expert_action"][5], episodes[1]["action"][[0, 1, 2, 2]])
    assert list(samples["obs/prompt"]) == ["task 0"] * 5 + ["task 1"] * 3 + ["task 0"] * 4
    assert samples["obs/front"].shape == (12, 24, 32, 3)
    mean_frame = np.concatenate([e["observation.images.front"] for e in episodes]).mean(axis=(1, 2, 3))
    assert np.abs(samples["obs/front"].mean(axis=(1, 2, 3)) - mean_frame).max() < 8


# EXPORTING A RUN: read in place and read-only, a bounded chunk of rows at a time (issue 22)
READ_ONLY_MOUNT = """
import builtins, errno, io, os, sys
run = os.path.realpath(sys.argv.pop(1))
def inside(path):
    if isinstance(path, int):
        return False
    path = os.path.realpath(os.fsdecode(path))
    return path == run or path.startswith(run + os.sep)
def refuse(path):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
real = {name: getattr(os, name) for name in ("access", "open", "mkdir", "rename", "replace", "unlink", "rmdir")}
real_open = builtins.open
def access(path, mode, *args, **kwargs):
    return False if mode & os.W_OK and inside(path) else real["access"](path, mode, *args, **kwargs)
def os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND) and inside(path):
        refuse(path)
    return real["open"](path, flags, *args, **kwargs)
def guard(name):
    def call(path, *args, **kwargs):
        if inside(path):
            refuse(path)
        return real[name](path, *args, **kwargs)
    return call
def open_(file, mode="r", *args, **kwargs):
    if not isinstance(file, int) and set(mode) & set("wax+") and inside(file):
        refuse(file)
    return real_open(file, mode, *args, **kwargs)
os.access, os.open, builtins.open, io.open = access, os_open, open_, open_
for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
    setattr(os, name, guard(name))
sys.argv[0] = "dagger"
from dagger_cli.cli.main import main
main()
"""
"""`python -c READ_ONLY_MOUNT RUN_DIR ARGS...` is `dagger ARGS...` with RUN_DIR behaving as on a read-only mount (also
for root, whom permissions do not stop): no write access, nothing opened for writing, made, renamed or removed"""


def snapshot(root):
    """Every path under `root` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def point_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("point") / "run"
    train(run, **{"runner.max_epochs": 2})
    return run


def test_a_read_only_run_exports_without_anything_written_into_it(point_run, tmp_path):
    # GIVEN a run on a read-only mount (its permissions taken away too, which bites where the tests do not run as
    # root), and what it holds
    before = snapshot(point_run)
    os.system(f"chmod -R a-w {point_run}")
    try:
        # WHEN its buffer is exported to a directory elsewhere (no --fps)
        out = tmp_path / "ds"
        result = subprocess.run([sys.executable, "-c", READ_ONLY_MOUNT, str(point_run), "export", str(point_run),
                                 "--format", "lerobot", "--out", str(out), "--json"],
                                capture_output=True, text=True, timeout=300)
    finally:
        os.system(f"chmod -R u+w {point_run}")
    # THEN it is exported as from a writable run, and nothing in the run changed
    assert result.returncode == 0, result.stderr
    assert snapshot(point_run) == before
    stored = checkpoint_samples(checkpoint.list_checkpoints(point_run / "checkpoints")[-1])
    back = lerobot_dataset.read(out)
    assert set(back) == set(stored) and all(np.array_equal(back[k], v) for k, v in stored.items())
    # AND its frame rate is the env's: ManiSkill's 20 Hz control, one frame a decision of one control step
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 20.0 and json.loads(result.stdout)["fps"] == 20.0


@pytest.mark.parametrize("preset, fps", [("pick-cube", 20.0), ("libero-spatial", 2.0), ("libero-spatial-small", 4.0)])
def test_the_default_frame_rate_is_the_control_rate_over_the_steps_a_frame_executes(preset, fps):
    from dagger_cli.cli.export import default_fps
    from dagger_cli.core.config_loader import load_config

    # GIVEN ManiSkill's and LIBERO's 20 Hz control, and a frame a decision of num_action_chunks (1, 10, 5) steps
    # THEN a frame lasts those steps: the timestamps are simulated seconds
    assert default_fps(load_config(preset)) == fps


def camera_run(run, episodes=12, length=7, window=60):
    """A run dir holding one checkpoint of a disk buffer of LIBERO-shaped samples (`camera_samples`) whose window
    is `window` of the episodes' rows: it starts inside an episode."""
    from dagger_cli.core.engine.replay_buffer import ReplayBuffer
    from dagger_cli.core.engine.replay_storage import DiskStorage

    run.mkdir(parents=True)
    (run / "config.yaml").write_text(point_config().to_yaml())
    samples = camera_samples(episodes, length)
    samples["obs/state"][:, 0] = np.arange(len(samples["obs/state"]))  # the row, to tell frames apart
    buffer = ReplayBuffer(window, DiskStorage(window, run / "replay_buffer"))
    for a, b in lerobot_dataset.episodes_of(samples):
        buffer.add({k: v[a:b] for k, v in samples.items()})
    state = {"replay_buffer": buffer.state_dict()}
    state["replay_buffer"]["storage"]["log"] = "replay_buffer"
    buffer.close()
    return checkpoint.save_checkpoint(run / "checkpoints", 1, {}, {}, state, keep=1)


def test_an_export_reads_a_few_rows_at_a_time_and_writes_what_a_whole_window_read_writes(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dagger_cli.cli.main import app
    from dagger_cli.core.engine.replay_storage import SegmentLog

    # GIVEN a checkpoint whose window (60 rows of two cameras) holds 10 episodes, and what it holds
    ckpt = camera_run(tmp_path / "run")
    stored = checkpoint_samples(ckpt)
    whole = tmp_path / "whole"
    lerobot_dataset.export(stored, whole, fps=4.0, lossless=True)
    # WHEN the run is exported with a budget of about 8 rows a read, the rows of each read counted
    reads = []
    read = SegmentLog.read
    monkeypatch.setattr(SegmentLog, "read", lambda self, key, rows, out=None: reads.append(len(rows)) or read(
        self, key, rows, out))
    row = sum(v[0].nbytes for k, v in stored.items() if k != "obs/prompt")
    monkeypatch.setattr(lerobot_dataset, "CHUNK_BYTES", 8 * row, raising=False)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--format", "lerobot", "--fps", "4",
                                      "--lossless", "--out", str(tmp_path / "ds")])
    # THEN no read holds more than those rows (not the window's 60)
    assert result.exit_code == 0, result.output
    assert reads and max(reads) <= 8
    # AND the dataset is the one a whole-window read gives: the same parquet tables, frames, metadata and stats
    import pyarrow.parquet as pq

    for name in (lerobot_dataset.DATA_FILE, lerobot_dataset.EPISODES_FILE, "meta/tasks.parquet"):
        assert pq.read_table(tmp_path / "ds" / name).equals(pq.read_table(whole / name)), name
    for camera in ("observation.images.image", "observation.images.wrist_image"):
        path = lerobot_dataset.VIDEO_FILE.format(key=camera)
        assert np.array_equal(read_frames(tmp_path / "ds" / path), read_frames(whole / path))
    for name in ("meta/info.json", "README.md"):
        assert (tmp_path / "ds" / name).read_text() == (whole / name).read_text()
    stats, expected = (json.loads((d / "meta/stats.json").read_text()) for d in (tmp_path / "ds", whole))
    assert stats.keys() == expected.keys()
    for name, entry in expected.items():
        for k, v in entry.items():
            assert np.allclose(stats[name][k], v, rtol=1e-12, atol=1e-12), (name, k)


def test_only_expert_labels_splits_episodes_where_frames_were_dropped(tmp_path):
    # GIVEN samples whose expert-executed steps leave gaps in their episodes (the state's first value: the step)
    samples = camera_samples(episodes=3, length=6)
    samples["obs/state"][:, 0] = np.arange(18)
    samples["expert_used"] = np.array([1, 1, 0, 1, 1, 1,  0, 0, 0, 0, 1, 0,  1, 0, 1, 0, 1, 1], bool)
    # WHEN only the expert's steps are exported
    info = lerobot_dataset.export(samples, tmp_path / "ds", fps=4, only_expert_labels=True)
    # THEN each run of consecutive kept steps is an episode, whose timestamps are its true times (frame_index / fps)
    import pyarrow.parquet as pq

    data = pq.read_table(tmp_path / "ds" / lerobot_dataset.DATA_FILE).to_pydict()
    step = [s[0] for s in data["observation.state"]]
    assert step == [0, 1, 3, 4, 5, 10, 12, 14, 16, 17]
    assert data["episode_index"] == [0, 0, 1, 1, 1, 2, 3, 4, 5, 5]
    assert data["frame_index"] == [0, 1, 0, 1, 2, 0, 0, 0, 0, 1]
    assert np.allclose(data["timestamp"], np.array(data["frame_index"]) / 4)
    assert info["total_episodes"] == 6 and info["total_frames"] == 10
    episodes = pq.read_table(tmp_path / "ds" / lerobot_dataset.EPISODES_FILE).to_pydict()
    assert episodes["length"] == [2, 3, 1, 1, 1, 2]
    assert episodes["videos/observation.images.image/from_timestamp"] == [0, 0.5, 1.25, 1.5, 1.75, 2.0]
    # AND each keeps the DAgger episode it came from, and reads back to the kept samples
    assert data["episode_id"] == [10, 10, 10, 10, 10, 11, 12, 12, 12, 12]
    back = lerobot_dataset.read(tmp_path / "ds")
    assert np.array_equal(back["obs/state"], samples["obs/state"][samples["expert_used"]])
