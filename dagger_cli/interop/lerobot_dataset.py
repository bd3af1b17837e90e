"""The aggregated DAgger samples as a LeRobot v3.0 dataset, and such a dataset read back as samples.

Written with pyarrow and PyAV (LeRobot itself pins torch and huggingface_hub versions this project cannot share):
`meta/info.json` (features, fps, path templates), `meta/stats.json`, `meta/tasks.parquet`,
`meta/episodes/chunk-000/file-000.parquet`, `data/chunk-000/file-000.parquet` and one mp4 per camera under
`videos/<key>/chunk-000/file-000.mp4`, the episodes one after another (located by their from/to timestamps).

One frame is one sample, a decision of the policy (an action chunk): `action` is the executed chunk and
`expert_action` the label, both flattened (their shapes under `dagger_shape`), with `expert_used` (also as LeRobot's
`intervention`), `beta`, `iteration`, `policy_version` and `episode_id`. Observations: `obs/<camera>` images become
`observation.images.<camera>` videos, other `obs/<key>` arrays `observation.<key>` (a bare `obs` array
`observation.state`), and `obs/prompt` the frame's task. A run's buffer is read in place, read-only, and written a
bounded chunk of samples at a time (`CHUNK_BYTES`), whatever the window's size.
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dagger_cli.core.errors import DaggerError, UsageError

CODEBASE_VERSION = "v3.0"
DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
VIDEO_FILE = "videos/{key}/chunk-000/file-000.mp4"
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


def runs_of(values: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of equal consecutive values."""
    cuts = np.flatnonzero(np.diff(values)) + 1
    bounds = [0, *cuts.tolist(), len(values)]
    return list(zip(bounds[:-1], bounds[1:]))


def episodes_of(samples: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive samples of one episode."""
    return runs_of(samples["episode_id"])


CHUNK_BYTES = 128 * 2**20
"""`export` reads, encodes and writes the samples about this many bytes at a time (at least one sample): a window
far larger than memory (LIBERO's cameras) goes through in bounded pieces"""


class _Arrays:
    """Samples held as arrays, read as a `ReplayBuffer` is read: `size`, `specs`, `chunks`."""

    def __init__(self, samples: dict[str, np.ndarray]):
        self.samples = {k: np.asarray(v) for k, v in samples.items()}
        self.size = len(self.samples["episode_id"]) if "episode_id" in self.samples else 0
        self.specs = {k: (v.dtype, v.shape[1:]) for k, v in self.samples.items()}

    def chunks(self, max_rows: int, fields: list[str] | None = None):
        for first in range(0, self.size, max_rows):
            yield {k: self.samples[k][first : first + max_rows] for k in (fields or self.samples)}


class _Moments:
    """min, max, mean and std of (n, d) values added a chunk at a time (Chan et al.'s pairwise update, in
    float64): one chunk gives numpy's own `mean(0)` and `std(0)`."""

    def __init__(self):
        self.n, self.min, self.max, self.mean, self.m2 = 0, None, None, None, None

    def add(self, values: np.ndarray) -> None:
        x = np.asarray(values).astype(np.float64)
        k, mean = len(x), x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        if not self.n:
            self.n, self.min, self.max, self.mean, self.m2 = k, x.min(0), x.max(0), mean, m2
            return
        total, delta = self.n + k, mean - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * k / total)
        self.min, self.max, self.n = np.minimum(self.min, x.min(0)), np.maximum(self.max, x.max(0)), total

    def summary(self) -> dict[str, list]:
        return {"min": self.min.tolist(), "max": self.max.tolist(), "mean": self.mean.tolist(),
                "std": np.sqrt(self.m2 / self.n).tolist(), "count": [self.n]}


def _row_bytes(spec: tuple[np.dtype, tuple[int, ...]]) -> int:
    dtype, shape = spec
    return int(np.dtype(dtype).itemsize * np.prod(shape, dtype=np.int64))


def export(samples, out: Path, fps: float, only_expert_labels: bool = False, lossless: bool = False) -> dict[str, Any]:
    """Writes the dataset under `out`; returns its info.json. `samples`: a dict of arrays, or anything read as a
    `ReplayBuffer` is (`size`, `specs`, `chunks`: a checkpoint's buffer, read `CHUNK_BYTES` at a time).

    Each episode is a run of consecutive samples of one DAgger episode; with `only_expert_labels` (HG-DAgger's
    training data: the steps the expert executed) a DAgger episode whose dropped steps leave gaps becomes one
    episode per run of consecutive kept steps, so that every frame's timestamp (frame_index / fps, which LeRobot
    reads the video and `delta_timestamps` by) is its true time from its episode's first frame."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    from dagger_cli.core.io.video import VideoWriter

    source = samples if hasattr(samples, "chunks") else _Arrays(samples or {})
    specs = source.specs
    if not source.size or "episode_id" not in specs:
        raise UsageError("the checkpoint's replay buffer holds no samples to export")
    out = Path(out)
    max_rows = max(1, CHUNK_BYTES // max(1, sum(_row_bytes(spec) for spec in specs.values())))
    n = source.size
    if only_expert_labels:
        n = sum(int(np.count_nonzero(c["expert_used"])) for c in source.chunks(max_rows, ["expert_used"]))
        if not n:
            raise UsageError("--only-expert-labels: the checkpoint's replay buffer holds no step the expert executed")
    # FEATURES: from the fields' shapes alone
    features: dict[str, dict] = {}
    numeric: list[tuple[str, str, int]] = []  # (field, feature, values a frame)
    cameras: list[tuple[str, str]] = []
    for field, (dtype, shape) in specs.items():
        if field == TEXT_FIELD:
            continue
        name = feature_name(field)
        if field.startswith("obs/") and np.dtype(dtype) == np.uint8 and len(shape) == 3 and shape[-1] == 3:
            name = "observation.images." + field[4:]
            cameras.append((field, name))
            height, width = shape[:2]
            features[name] = {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
                              "dagger_field": field,
                              "info": {"video.height": height, "video.width": width, "video.fps": fps,
                                       "video.codec": "h264", "video.pix_fmt": "rgb24" if lossless else "yuv420p",
                                       "video.is_depth_map": False, "video.channels": 3, "has_audio": False}}
            continue
        dims = int(np.prod(shape, dtype=np.int64))
        features[name] = {"dtype": "bool" if np.dtype(dtype) == bool else str(np.dtype(dtype)), "shape": [dims],
                          "names": None, "dagger_field": field, "dagger_shape": list(shape)}
        numeric.append((field, name, dims))
    features["intervention"] = {"dtype": "bool", "shape": [1], "names": None}
    index_columns = (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                     ("index", "int64"), ("task_index", "int64"))
    for name, dtype in index_columns:
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    moments = {name: _Moments() for name, feature in features.items() if feature["dtype"] != "video"}
    stride = max(1, n // 100)  # ≤ 100-odd frames of each camera for its stats
    picked: dict[str, list[np.ndarray]] = {field: [] for field, _ in cameras}
    # DATA AND VIDEOS: a chunk at a time
    tasks: dict[str, int] = {}
    episodes: list[dict[str, Any]] = []  # start (frame), length, tasks
    written, row, last = 0, 0, None  # frames written, the next chunk's first row, (episode_id, row) of the last frame
    (out / "data/chunk-000").mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        videos = {}
        for field, name in cameras:
            path = out / VIDEO_FILE.format(key=name)
            path.parent.mkdir(parents=True, exist_ok=True)
            videos[field] = stack.enter_context(VideoWriter(path, fps, lossless=lossless))
        data = _TableWriter(out / DATA_FILE, stack)
        for chunk in source.chunks(max_rows):
            rows = row + np.arange(len(chunk["episode_id"]))
            row += len(rows)
            if only_expert_labels:
                keep = np.asarray(chunk["expert_used"], dtype=bool)
                chunk, rows = {k: v[keep] for k, v in chunk.items()}, rows[keep]
            m = len(rows)
            if not m:
                continue
            ids = np.asarray(chunk["episode_id"])
            new = np.ones(m, dtype=bool)  # a frame that starts an episode: another DAgger episode, or a gap
            new[1:] = (ids[1:] != ids[:-1]) | (rows[1:] != rows[:-1] + 1)
            new[0] = last is None or ids[0] != last[0] or rows[0] != last[1] + 1
            last = (ids[-1], rows[-1])
            prompts = [str(p) for p in chunk[TEXT_FIELD]] if TEXT_FIELD in chunk else [""] * m
            task_index = np.array([tasks.setdefault(p, len(tasks)) for p in prompts], dtype=np.int64)
            episode_index = np.zeros(m, dtype=np.int64)
            frame_index = np.zeros(m, dtype=np.int64)
            bounds = [*np.flatnonzero(new).tolist(), m]
            if bounds[0] != 0:
                bounds.insert(0, 0)
            for a, b in zip(bounds[:-1], bounds[1:]):
                if new[a]:
                    episodes.append({"start": written + a, "length": 0, "tasks": {}})
                episode = episodes[-1]
                episode_index[a:b] = len(episodes) - 1
                frame_index[a:b] = episode["length"] + np.arange(b - a)
                episode["length"] += b - a
                episode["tasks"].update(dict.fromkeys(prompts[a:b]))
            columns: dict[str, Any] = {}
            for field, name, dims in numeric:
                flat = np.asarray(chunk[field]).reshape(m, dims)
                moments[name].add(flat)
                if dims == 1:  # LeRobot reads a feature of shape [1] as a scalar column
                    columns[name] = flat[:, 0]
                else:
                    columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), dims)
            columns["intervention"] = np.asarray(chunk["expert_used"], dtype=bool)
            values = {"timestamp": frame_index / fps, "frame_index": frame_index, "episode_index": episode_index,
                      "index": written + np.arange(m), "task_index": task_index}
            for name, dtype in index_columns:
                columns[name] = np.asarray(values[name], dtype=dtype)
            for name in ("intervention", *values):
                moments[name].add(columns[name].reshape(m, 1))
            data.write(pa.table({k: (v if isinstance(v, pa.Array) else pa.array(v)) for k, v in columns.items()}))
            sampled = np.flatnonzero((written + np.arange(m)) % stride == 0)
            for field, _ in cameras:
                frames = np.asarray(chunk[field])
                videos[field].write(frames)
                picked[field].append(frames[sampled].copy())
            written += m
        data.close()
    # EPISODES, TASKS, STATS, INFO
    meta_rows: dict[str, list] = {"episode_index": [], "tasks": [], "length": [], "data/chunk_index": [],
                              "data/file_index": [], "dataset_from_index": [], "dataset_to_index": []}
    for _, name in cameras:
        for part in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            meta_rows[f"videos/{name}/{part}"] = []
    meta_rows["meta/episodes/chunk_index"], meta_rows["meta/episodes/file_index"] = [], []
    for e, episode in enumerate(episodes):
        a, b = episode["start"], episode["start"] + episode["length"]
        meta_rows["episode_index"].append(e)
        meta_rows["tasks"].append(list(episode["tasks"]))
        meta_rows["length"].append(b - a)
        meta_rows["data/chunk_index"].append(0)
        meta_rows["data/file_index"].append(0)
        meta_rows["dataset_from_index"].append(a)
        meta_rows["dataset_to_index"].append(b)
        for _, name in cameras:
            meta_rows[f"videos/{name}/chunk_index"].append(0)
            meta_rows[f"videos/{name}/file_index"].append(0)
            meta_rows[f"videos/{name}/from_timestamp"].append(a / fps)
            meta_rows[f"videos/{name}/to_timestamp"].append(b / fps)
        meta_rows["meta/episodes/chunk_index"].append(0)
        meta_rows["meta/episodes/file_index"].append(0)
    (out / "meta/episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(meta_rows), out / EPISODES_FILE)
    tasks_table = pa.table({"task_index": np.arange(len(tasks), dtype=np.int64),
                            "__index_level_0__": pa.array(list(tasks), pa.large_string())})
    pq.write_table(tasks_table.replace_schema_metadata({"pandas": json.dumps(TASKS_PANDAS_METADATA)}),
                   out / "meta/tasks.parquet")
    stats = {}
    for name, feature in features.items():
        if feature["dtype"] == "video":
            field = next(f for f, c in cameras if c == name)
            pixels = np.asarray(np.concatenate(picked[field]), dtype=np.float64) / 255.0
            stats[name] = {k: getattr(pixels, k)((0, 1, 2)).reshape(3, 1, 1).tolist()
                           for k in ("min", "max", "mean", "std")}
            stats[name]["count"] = [len(pixels)]
            continue
        stats[name] = moments[name].summary()
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": None, "total_episodes": len(episodes),
            "total_frames": n, "total_tasks": len(tasks), "chunks_size": 1000, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200, "fps": fps, "splits": {"train": f"0:{len(episodes)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if cameras else None,
            "features": features}
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "meta/stats.json").write_text(json.dumps(stats, indent=2))
    (out / "meta/info.json").write_text(json.dumps(info, indent=2))
    (out / "README.md").write_text(card(info, only_expert_labels))
    return info


class _TableWriter:
    """One parquet file written from tables handed over a chunk at a time, gathered into row groups of up to
    `CHUNK_BYTES` (the camera-free columns are small: a row group holds far more frames than a chunk)."""

    def __init__(self, path: Path, stack):
        self.path, self.stack = path, stack
        self.writer = None
        self.pending: list = []
        self.bytes = 0

    def write(self, table) -> None:
        self.pending.append(table)
        self.bytes += table.nbytes
        if self.bytes >= CHUNK_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.pending:
            return
        table = pa.concat_tables(self.pending)
        if self.writer is None:
            self.writer = self.stack.enter_context(pq.ParquetWriter(self.path, table.schema))
        self.writer.write_table(table)
        self.pending, self.bytes = [], 0

    def close(self) -> None:
        self._flush()


def card(info: dict[str, Any], only_expert_labels: bool) -> str:
    """The dataset card: the Hub's metadata (LeRobot's tags, the parquet files as the viewer's data) and what a
    frame holds."""
    kept = "the steps the expert executed (HG-DAgger's training data)" if only_expert_labels else "every labelled step"
    cameras = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    return (
        "---\ntask_categories:\n- robotics\ntags:\n- LeRobot\n- dagger\nconfigs:\n- config_name: default\n"
        "  data_files: data/*/*.parquet\n---\n\n"
        "# DAgger samples\n\n"
        f"Written by `dagger export --format lerobot`: {info['total_episodes']} episodes, "
        f"{info['total_frames']} frames (one a policy decision, {info['fps']} fps), {info['total_tasks']} tasks; "
        f"{kept}.\n\n"
        "Per frame: `action` is the executed action chunk and `expert_action` the expert's label (both flattened; "
        "their shapes are `dagger_shape` in `meta/info.json`), `expert_used` (also as `intervention`) whether the "
        "expert's action was executed, and `beta`, `iteration`, `policy_version`, `episode_id`."
        + (f" Cameras: {', '.join(f'`{c}`' for c in cameras)}." if cameras else "") + "\n"
    )


HUB_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")


def locate(spec: str, key: str, say: Callable[[str], None] = lambda text: None) -> Path:
    """A dataset given as a directory, or as a Hub dataset id `owner/name[@revision]` (fetched into
    $DAGGER_HOME/datasets/, as `dagger fetch --repo-type dataset` does): its local directory."""
    from dagger_cli import fetching

    path = Path(spec).expanduser()
    if path.exists():
        return path
    if not HUB_DATASET_ID.fullmatch(spec):
        raise UsageError(f"{key}: {spec} is neither a directory nor a Hub dataset id owner/name[@revision]")
    repo_id, _, revision = spec.partition("@")
    say(f"fetching the dataset {repo_id} from the Hub")
    try:
        fetched = fetching.fetch(repo_id, None, revision or None, repo_type=fetching.DATASET)
    except DaggerError as e:
        raise type(e)(f"{key}: {e}") from None
    if fetched.layout.missing:
        raise UsageError(f"{key}: the Hub dataset {spec} has no meta/info.json: not a LeRobot v3 dataset")
    return fetched.local_dir


REQUIRED = ("expert_action", "action", "expert_used", "beta", "episode_id")
"""what a dataset must hold to enter the buffer (the label, the executed chunk, the per-sample metadata)"""
TASK = "task"
"""the value of a `features` entry that stands for the frame's task string"""
FOREIGN_EPISODE_IDS = -(2**24)
"""a foreign dataset's episode e becomes episode FOREIGN_EPISODE_IDS + e, the ids of iteration -1"""


def read(path: Path, key: str = "dataset", features: dict[str, str] | None = None,
         label_shape: tuple[int, int] | None = None, executed_steps: int = 1) -> dict[str, np.ndarray]:
    """A LeRobot v3.0 dataset as buffer samples, one a frame.

    Without `features` the dataset is one this module wrote (dagger's field names and metadata). With it, only the
    named features are read, `{sample field: feature}` (`task`: the frame's task string), and the frames are
    demonstrations: the label `expert_action` is executed (`action`, its first `executed_steps` steps), by the expert,
    at beta 1. A label of one step a frame becomes a chunk of `label_shape` (horizon, action dim) from the episode's
    next frames, the last one repeated past the episode's end. Every problem is one line naming `key`."""
    path = Path(path)
    info = _info(path, key)
    table = _data_table(path, key)
    episodes = _episode_rows(path, key)
    if features:
        return _demonstrations(path, info, table, episodes, key, features, label_shape, executed_steps)
    names = {feature.get("dagger_field") or name for name, feature in info["features"].items()}
    missing = [f for f in REQUIRED if f not in names]
    if missing:
        raise UsageError(f"{key}: {path} has no feature {missing[0]!r} (a dagger sample needs "
                         f"{', '.join(REQUIRED)} and the observations; name a foreign dataset's features with "
                         "algorithm.replay_buffer.seed_features)")
    in_obs = any(k.startswith("observation.") and k != "observation.state" for k in info["features"])
    samples: dict[str, np.ndarray] = {}
    skip = {"timestamp", "frame_index", "episode_index", "index", "task_index", "intervention"}
    for name, feature in info["features"].items():
        if name not in skip:
            field = feature.get("dagger_field") or field_name(name, in_obs)
            samples[field] = _feature(path, info, table, episodes, name, key)
            if "dagger_shape" in feature:
                samples[field] = samples[field].reshape(len(samples[field]), *feature["dagger_shape"])
    tasks = _task_strings(path, table, key)
    if any(tasks):
        samples[TEXT_FIELD] = tasks
    return samples


def _demonstrations(path: Path, info: dict, table, episodes: dict, key: str, features: dict[str, str],
                    label_shape: tuple[int, int] | None, executed_steps: int) -> dict[str, np.ndarray]:
    where = "algorithm.replay_buffer.seed_features"
    have = sorted(info["features"])
    samples: dict[str, np.ndarray] = {}
    for field, name in features.items():
        if name == TASK:
            samples[field] = _task_strings(path, table, key)
        elif name not in info["features"]:
            raise UsageError(f"{where}.{field}: {path} has no feature {name!r} (it has {', '.join(have)})")
        else:
            samples[field] = _feature(path, info, table, episodes, name, key)
    episode_index = _int_column(table, "episode_index", path, key)
    bounds = runs_of(episode_index)
    label = samples["expert_action"].reshape(table.num_rows, -1).astype(np.float32)
    horizon, dim = label_shape if label_shape is not None else (1, label.shape[1])
    name = features["expert_action"]
    if label.shape[1] == horizon * dim:
        label = label.reshape(-1, horizon, dim)
    elif label.shape[1] == dim:  # one step a frame: the chunk is this frame's action and the next ones'
        steps = np.arange(horizon)
        rows = np.concatenate([np.minimum(np.arange(a, b)[:, None] + steps, b - 1) for a, b in bounds])
        label = label[rows]
    else:
        raise UsageError(f"{where}.expert_action: {name!r} has {label.shape[1]} values a frame; the student's labels "
                         f"are {horizon} steps of {dim} (a frame of {dim} or of {horizon * dim})")
    samples["expert_action"] = label
    samples.setdefault("action", label[:, :executed_steps].copy())
    n = table.num_rows
    samples.setdefault("expert_used", np.ones(n, dtype=bool))
    samples.setdefault("beta", np.ones(n, dtype=np.float32))
    samples.setdefault("episode_id", FOREIGN_EPISODE_IDS + episode_index.astype(np.int64))
    return samples


def _info(path: Path, key: str) -> dict:
    try:
        info = json.loads((path / "meta/info.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{key}: {path / 'meta/info.json'} is not a LeRobot dataset's ({e})") from None
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise UsageError(f"{key}: {path} is a LeRobot {info.get('codebase_version')!r} dataset; {CODEBASE_VERSION} "
                         "is read")
    return info


def _parquet_files(path: Path, folder: str, key: str) -> list[Path]:
    files = sorted((path / folder).glob("chunk-*/file-*.parquet"))
    if not files:
        raise UsageError(f"{key}: {path / folder} holds no chunk-*/file-*.parquet")
    return files


def _data_table(path: Path, key: str):
    """Every data file's frames, in `index` order."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(f) for f in _parquet_files(path, "data", key)])
    if "index" in table.column_names:
        table = table.take(pa.compute.sort_indices(table, [("index", "ascending")]))
    return table


def _episode_rows(path: Path, key: str) -> dict[int, dict]:
    """meta/episodes as {episode index: its row} (where each camera's frames of it are)."""
    _pyarrow()
    import pyarrow.parquet as pq

    rows = {}
    for file in _parquet_files(path, "meta/episodes", key):
        for row in pq.read_table(file).to_pylist():
            rows[int(row["episode_index"])] = row
    return rows


def _int_column(table, name: str, path: Path, key: str) -> np.ndarray:
    if name not in table.column_names:
        raise UsageError(f"{key}: {path} has no {name!r} column in its data")
    return table.column(name).to_numpy()


def _task_strings(path: Path, table, key: str) -> np.ndarray:
    _pyarrow()
    import pyarrow.parquet as pq

    tasks_table = pq.read_table(path / "meta/tasks.parquet")
    column = next(c for c in tasks_table.column_names if c != "task_index")  # pandas' index: the task strings
    order = np.argsort(tasks_table.column("task_index").to_numpy())
    strings = tasks_table.column(column).to_pylist()
    tasks = [strings[i] for i in order]
    return np.array([tasks[i] for i in _int_column(table, "task_index", path, key)])


def _feature(path: Path, info: dict, table, episodes: dict, name: str, key: str) -> np.ndarray:
    """One feature's values of every frame: a video's or an image column's frames (n, H, W, 3) uint8, else the
    column's values (n, *shape)."""
    pa = _pyarrow()
    feature = info["features"][name]
    n = table.num_rows
    if feature["dtype"] == "video":
        return _video_frames(path, info, table, episodes, name, key)
    column = table.column(name).combine_chunks()
    if feature["dtype"] == "image":
        import io

        from PIL import Image

        return np.stack([np.asarray(Image.open(io.BytesIO(item["bytes"])).convert("RGB"))
                         for item in column.to_pylist()])
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
        values = column.flatten().to_numpy(zero_copy_only=False)
    else:
        values = column.to_numpy(zero_copy_only=False)
    dtype = np.bool_ if feature["dtype"] == "bool" else np.dtype(feature["dtype"])
    return np.asarray(values, dtype=dtype).reshape(n, *feature["shape"])


def _video_frames(path: Path, info: dict, table, episodes: dict, name: str, key: str) -> np.ndarray:
    """Frame f of episode e is frame round(from_timestamp * fps) + f of the episode's video file."""
    from dagger_cli.core.io.video import read_frames

    height, width = info["features"][name]["shape"][:2]
    episode_index = _int_column(table, "episode_index", path, key)
    frame_index = _int_column(table, "frame_index", path, key)
    decoded: dict[tuple[int, int], np.ndarray] = {}
    out = np.zeros((table.num_rows, height, width, 3), np.uint8)
    for a, b in runs_of(episode_index):
        row = episodes[int(episode_index[a])]
        where = (int(row[f"videos/{name}/chunk_index"]), int(row[f"videos/{name}/file_index"]))
        if where not in decoded:
            file = path / info["video_path"].format(video_key=name, chunk_index=where[0], file_index=where[1])
            try:
                decoded[where] = read_frames(file)
            except Exception as e:  # PyAV's errors name no file
                raise UsageError(f"{key}: cannot decode {file} ({type(e).__name__}: {e})") from None
        frames = decoded[where]
        first = round(float(row[f"videos/{name}/from_timestamp"]) * info["fps"])
        picked = first + frame_index[a:b]
        if picked.max() >= len(frames):
            raise UsageError(f"{key}: {name}'s video ends before episode {episode_index[a]}'s frame "
                             f"{frame_index[a + int(np.argmax(picked >= len(frames)))]}")
        out[a:b] = frames[picked, :height, :width]  # H.264 needed even sizes: the padding goes
    return out
