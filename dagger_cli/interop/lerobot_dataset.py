"""The aggregated DAgger samples as a LeRobot v3.0 dataset, and such a dataset read back as samples.

Written with pyarrow and PyAV (LeRobot itself pins torch and huggingface_hub versions this project cannot share):
`meta/info.json` (features, fps, path templates), `meta/stats.json`, `meta/tasks.parquet`,
`meta/episodes/chunk-000/file-000.parquet`, `data/chunk-000/file-000.parquet` and one mp4 per camera under
`videos/<key>/chunk-000/file-000.mp4`, the episodes one after another (located by their from/to timestamps).

One frame is one sample, a decision of the policy (an action chunk): `action` is the executed chunk and
`expert_action` the label, both flattened (their shapes under `dagger_shape`), with `expert_used` (also as LeRobot's
`intervention`), `beta`, `iteration`, `policy_version` and `episode_id`. Observations: `obs/<camera>` images become
`observation.images.<camera>` videos, other `obs/<key>` arrays `observation.<key>` (a bare `obs` array
`observation.state`), and `obs/prompt` the frame's task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dagger_cli.core.errors import DaggerError, UsageError

CODEBASE_VERSION = "v3.0"
DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
VIDEO_FILE = "videos/{key}/chunk-000/file-000.mp4"
METADATA = ("expert_used", "beta", "iteration", "policy_version", "episode_id")
TEXT_FIELD = "obs/prompt"
TASKS_PANDAS_METADATA = {
    "index_columns": ["__index_level_0__"],
    "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "str",
                        "metadata": {"encoding": "UTF-8"}}],
    "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                 "metadata": None},
                {"name": None, "field_name": "__index_level_0__", "pandas_type": "object", "numpy_type": "str",
                 "metadata": None}],
    "attributes": {}, "creator": {"library": "pyarrow"}, "pandas_version": "2.0.0",
}
"""meta/tasks.parquet is read with pandas, the task strings as the frame's index: the schema says so"""


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DaggerError("LeRobot datasets need pyarrow: pip install 'dagger-cli[lerobot]'") from None
    return pyarrow


def is_camera(array: np.ndarray) -> bool:
    return array.dtype == np.uint8 and array.ndim == 4 and array.shape[-1] == 3


def feature_name(field: str) -> str:
    if field == "obs":
        return "observation.state"
    if field.startswith("obs/"):
        return "observation." + field[4:]
    return field


def field_name(feature: str, fields_in_obs: bool) -> str:
    if feature.startswith("observation.images."):
        return "obs/" + feature[len("observation.images."):]
    if feature.startswith("observation."):
        return "obs/" + feature[len("observation."):] if fields_in_obs else "obs"
    return feature


def episodes_of(samples: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive samples of one episode."""
    ids = samples["episode_id"]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    bounds = [0, *cuts.tolist(), len(ids)]
    return list(zip(bounds[:-1], bounds[1:]))


def export(samples: dict[str, np.ndarray], out: Path, fps: float, only_expert_labels: bool = False,
           lossless: bool = False) -> dict[str, Any]:
    """Writes the dataset under `out`; returns its info.json."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    from dagger_cli.core.video import VideoWriter

    if not samples or not len(samples.get("episode_id", [])):
        raise UsageError("the checkpoint's replay buffer holds no samples to export")
    if only_expert_labels:  # HG-DAgger's training data: the steps the expert executed
        keep = np.asarray(samples["expert_used"], dtype=bool)
        samples = {k: v[keep] for k, v in samples.items()}
    out = Path(out)
    n = len(samples["episode_id"])
    episodes = episodes_of(samples)
    prompts = [str(p) for p in samples[TEXT_FIELD]] if TEXT_FIELD in samples else [""] * n
    tasks = list(dict.fromkeys(prompts))
    task_index = np.array([tasks.index(p) for p in prompts], dtype=np.int64)
    episode_index = np.zeros(n, dtype=np.int64)
    frame_index = np.zeros(n, dtype=np.int64)
    for e, (a, b) in enumerate(episodes):
        episode_index[a:b] = e
        frame_index[a:b] = np.arange(b - a)
    features: dict[str, dict] = {}
    columns: dict[str, Any] = {}
    flats: dict[str, np.ndarray] = {}  # numeric features as (n, dims), for the stats
    cameras = []
    for field, array in samples.items():
        if field == TEXT_FIELD:
            continue
        array = np.asarray(array)
        name = feature_name(field)
        if field.startswith("obs/") and is_camera(array):
            name = "observation.images." + field[4:]
            cameras.append((field, name))
            height, width = array.shape[1:3]
            features[name] = {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
                              "dagger_field": field,
                              "info": {"video.height": height, "video.width": width, "video.fps": fps,
                                       "video.codec": "h264", "video.pix_fmt": "rgb24" if lossless else "yuv420p",
                                       "video.is_depth_map": False, "video.channels": 3, "has_audio": False}}
            continue
        flat = array.reshape(n, -1)
        flats[name] = flat
        features[name] = {"dtype": "bool" if flat.dtype == bool else str(flat.dtype), "shape": [flat.shape[1]],
                          "names": None, "dagger_field": field, "dagger_shape": list(array.shape[1:])}
        if field in METADATA:  # one value per frame, as LeRobot's own scalar columns
            columns[name] = flat[:, 0]
        else:
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    columns["intervention"] = np.asarray(samples["expert_used"], dtype=bool)
    flats["intervention"] = columns["intervention"].reshape(n, 1)
    features["intervention"] = {"dtype": "bool", "shape": [1], "names": None}
    for name, values, dtype in (("timestamp", frame_index / fps, "float32"), ("frame_index", frame_index, "int64"),
                                ("episode_index", episode_index, "int64"), ("index", np.arange(n), "int64"),
                                ("task_index", task_index, "int64")):
        columns[name] = np.asarray(values, dtype=dtype)
        flats[name] = columns[name].reshape(n, 1)
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    table = pa.table({k: (v if isinstance(v, pa.Array) else pa.array(v)) for k, v in columns.items()})
    (out / "data/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / DATA_FILE)
    # VIDEOS: each camera's episodes one after another in one file
    for field, name in cameras:
        path = out / VIDEO_FILE.format(key=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with VideoWriter(path, fps, lossless=lossless) as writer:
            for a, b in episodes:
                writer.write(np.asarray(samples[field][a:b]))
    # EPISODES, TASKS, STATS, INFO
    rows: dict[str, list] = {"episode_index": [], "tasks": [], "length": [], "data/chunk_index": [],
                             "data/file_index": [], "dataset_from_index": [], "dataset_to_index": []}
    for _, name in cameras:
        for part in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            rows[f"videos/{name}/{part}"] = []
    rows["meta/episodes/chunk_index"], rows["meta/episodes/file_index"] = [], []
    for e, (a, b) in enumerate(episodes):
        rows["episode_index"].append(e)
        rows["tasks"].append(list(dict.fromkeys(prompts[a:b])))
        rows["length"].append(b - a)
        rows["data/chunk_index"].append(0)
        rows["data/file_index"].append(0)
        rows["dataset_from_index"].append(a)
        rows["dataset_to_index"].append(b)
        for _, name in cameras:
            rows[f"videos/{name}/chunk_index"].append(0)
            rows[f"videos/{name}/file_index"].append(0)
            rows[f"videos/{name}/from_timestamp"].append(a / fps)
            rows[f"videos/{name}/to_timestamp"].append(b / fps)
        rows["meta/episodes/chunk_index"].append(0)
        rows["meta/episodes/file_index"].append(0)
    (out / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), out / EPISODES_FILE)
    tasks_table = pa.table({"task_index": np.arange(len(tasks), dtype=np.int64),
                            "__index_level_0__": pa.array(tasks, pa.large_string())})
    pq.write_table(tasks_table.replace_schema_metadata({"pandas": json.dumps(TASKS_PANDAS_METADATA)}),
                   out / "meta/tasks.parquet")
    stats = {}
    for name, feature in features.items():
        if feature["dtype"] == "video":
            field = next(f for f, c in cameras if c == name)
            pixels = np.asarray(samples[field][:: max(1, n // 100)], dtype=np.float64) / 255.0  # ≤100 frames
            stats[name] = {k: getattr(pixels, k)((0, 1, 2)).reshape(3, 1, 1).tolist()
                           for k in ("min", "max", "mean", "std")}
            stats[name]["count"] = [len(pixels)]
            continue
        values = flats[name].astype(np.float64)
        stats[name] = {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
                       "std": values.std(0).tolist(), "count": [n]}
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": None, "total_episodes": len(episodes),
            "total_frames": n, "total_tasks": len(tasks), "chunks_size": 1000, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200, "fps": fps, "splits": {"train": f"0:{len(episodes)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if cameras else None,
            "features": features}
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "meta/stats.json").write_text(json.dumps(stats, indent=2))
    (out / "meta/info.json").write_text(json.dumps(info, indent=2))
    return info


REQUIRED = ("expert_action", "action", "expert_used", "beta", "episode_id")
"""what a dataset must hold to enter the buffer (the label, the executed chunk, the per-sample metadata)"""


def read(path: Path, key: str = "dataset") -> dict[str, np.ndarray]:
    """A dataset this module wrote (or any v3.0 one with the same feature names) as buffer samples; a missing
    feature is one line naming `key`, the dataset and the feature."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    from dagger_cli.core.video import read_frames

    path = Path(path)
    try:
        info = json.loads((path / "meta/info.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{key}: {path / 'meta/info.json'} is not a LeRobot dataset's ({e})") from None
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise UsageError(f"{key}: {path} is a LeRobot {info.get('codebase_version')!r} dataset; {CODEBASE_VERSION} "
                         "is read")
    names = {feature.get("dagger_field") or name for name, feature in info["features"].items()}
    missing = [f for f in REQUIRED if f not in names]
    if missing:
        raise UsageError(f"{key}: {path} has no feature {missing[0]!r} (a dagger sample needs "
                         f"{', '.join(REQUIRED)} and the observations)")
    table = pq.read_table(path / DATA_FILE)
    tasks = pq.read_table(path / "meta/tasks.parquet").column("__index_level_0__").to_pylist()
    features = info["features"]
    in_obs = any(k.startswith("observation.") and k != "observation.state" for k in features)
    samples: dict[str, np.ndarray] = {}
    n = table.num_rows
    skip = {"timestamp", "frame_index", "episode_index", "index", "task_index", "intervention"}
    for name, feature in features.items():
        if name in skip:
            continue
        field = feature.get("dagger_field") or field_name(name, in_obs)
        if feature["dtype"] == "video":
            frames = read_frames(path / info["video_path"].format(video_key=name, chunk_index=0, file_index=0))
            height, width = feature["shape"][:2]
            samples[field] = frames[:n, :height, :width]  # H.264 needed even sizes: the padding goes
            continue
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
            values = column.flatten().to_numpy(zero_copy_only=False)
        else:
            values = column.to_numpy(zero_copy_only=False)
        dtype = np.bool_ if feature["dtype"] == "bool" else np.dtype(feature["dtype"])
        samples[field] = np.asarray(values, dtype=dtype).reshape(n, *feature.get("dagger_shape", feature["shape"]))
    if any(tasks):
        samples[TEXT_FIELD] = np.array([tasks[i] for i in table.column("task_index").to_numpy()])
    return samples
