"""A bounded, trajectory-aware buffer of labelled samples, counted in samples.

The rows live in a storage (`replay_storage`: a preallocated RAM ring, or append-only files on disk), so memory is
flat once the buffer is full. The learner samples uniformly, with replacement, from everything stored: the window
*is* RLinf's `sample_window_size` (RLinf counts trajectories; here every size is in samples).

A sample is one labelled env step. Fields: `obs` (or `obs/<key>` for dict observations), `expert_action`
(the label, full horizon, env units), `action` (what was executed), and metadata `expert_used`, `beta`,
`iteration`, `policy_version`, `episode_id`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    from dagger_cli.core.engine.replay_storage import ReplayStorage

METADATA_FIELDS = ("expert_used", "beta", "iteration", "policy_version", "episode_id")


def flatten_obs(obs: Any) -> dict[str, np.ndarray]:
    """`obs` array -> {"obs": array}; dict -> {"obs/<key>": array}."""
    if isinstance(obs, dict):
        return {f"obs/{k}": v for k, v in obs.items()}
    return {"obs": obs}


def unflatten_obs(sample: dict[str, np.ndarray]) -> Any:
    """Inverse of `flatten_obs` on a sampled batch."""
    if "obs" in sample:
        return sample["obs"]
    return {k[4:]: v for k, v in sample.items() if k.startswith("obs/")}


def is_text(array: np.ndarray) -> bool:
    """A field of strings: numpy text (<U), or an object array of str (as the rollout stages text)."""
    if array.dtype.kind == "U":
        return True
    return array.dtype.kind == "O" and all(isinstance(v, str) for v in array.flat)


def _legacy_text(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Text saved as UTF-32 code points (n, width) by checkpoints before the text table -> strings."""
    return np.ascontiguousarray(array, dtype=np.uint32).view(dtype).reshape(array.shape[:-1])


class TextTable:
    """The distinct strings of one text field (e.g. prompts), each kept once; stored samples hold int32 indices.

    No string is ever cut: a sample stores an index, not characters, so a later, longer prompt fits as well as the
    first. Entries that no stored sample refers to any more are reused, so the table holds at most the buffer's
    distinct live strings, however many episodes have passed through the ring.
    """

    def __init__(self, strings: list[str | None] = ()):
        self.strings: list[str | None] = list(strings)
        """index -> string (None: a free entry)"""
        self._index = {s: i for i, s in enumerate(self.strings) if s is not None}
        self._refs = np.zeros(len(self.strings), dtype=np.int64)
        self._free = [i for i, s in enumerate(self.strings) if s is None]
        self._decoded: np.ndarray | None = None

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Strings (n, ...) -> int32 indices of the same shape, adding strings not seen yet."""
        values = np.asarray(values)
        unique, inverse = np.unique(values.astype(str), return_inverse=True)
        codes = np.empty(len(unique), dtype=np.int32)
        for j, text in enumerate(unique.tolist()):
            code = self._index.get(text)
            if code is None:
                code = self._free.pop() if self._free else len(self.strings)
                if code == len(self.strings):
                    self.strings.append(text)
                    self._refs = np.append(self._refs, 0)
                else:
                    self.strings[code] = text
                self._index[text] = code
                self._decoded = None
            codes[j] = code
        return codes[inverse].reshape(values.shape)

    def retain(self, codes: np.ndarray) -> None:
        np.add.at(self._refs, np.asarray(codes, dtype=np.int64).ravel(), 1)

    def release(self, codes: np.ndarray) -> None:
        """Samples holding `codes` were overwritten; entries nobody holds become free."""
        codes = np.asarray(codes, dtype=np.int64).ravel()
        np.subtract.at(self._refs, codes, 1)
        for code in np.unique(codes).tolist():
            if self._refs[code] == 0 and self.strings[code] is not None:
                del self._index[self.strings[code]]
                self.strings[code] = None
                self._free.append(code)

    def recount(self, stored_codes: np.ndarray) -> None:
        """Rebuilds the reference counts from the codes stored now (after a checkpoint load)."""
        self._refs = np.bincount(np.asarray(stored_codes, dtype=np.int64).ravel(), minlength=len(self.strings))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        if self._decoded is None:
            self._decoded = np.array([s if s is not None else "" for s in self.strings] or [""])
        return self._decoded[codes]


class ReplayBuffer:
    """Ring buffer of labelled samples grouped into trajectories (contiguous steps of one episode), over a storage
    (a `replay_storage.ReplayStorage`: `MemoryStorage` by default, or `DiskStorage`).

    Rows are numbered by write order; the window is the last `size` rows, and a sample index `i` in [0, capacity)
    names the row that sits in ring slot `i`, whichever the storage, so both storages draw the same batches.
    The first trajectory fixes each field's shape and kind; later ones must match (numbers may narrow within their
    kind, e.g. float64 into float32, never float into int). Text fields go through a `TextTable`, so their length
    is never fixed.
    """

    def __init__(self, capacity: int, storage: ReplayStorage | None = None):
        from dagger_cli.core.engine.replay_storage import MemoryStorage

        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.storage = storage if storage is not None else MemoryStorage(capacity)
        self._specs: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self._text: dict[str, TextTable] = {}  # text fields: the storage holds their int32 codes
        self.written = 0
        """rows ever written to the storage (the next row's index)"""
        self.size = 0
        """samples stored now (at most capacity)"""
        self.total_samples = 0
        """samples ever added (cumulative, as RLinf's `total_samples`)"""
        self._trajectory_ends: deque[int] = deque()  # cumulative sample index one past each stored trajectory

    @property
    def num_trajectories(self) -> int:
        """Trajectories with at least one sample still stored."""
        return len(self._trajectory_ends)

    @property
    def fields(self) -> list[str]:
        return list(self._specs)

    @property
    def window(self) -> tuple[int, int]:
        """Rows [start, end) the learner samples from."""
        return self.written - self.size, self.written

    def row_bytes(self, key: str) -> int:
        dtype, shape = self._specs[key]
        return int(dtype.itemsize * np.prod(shape, dtype=np.int64))

    def add(self, trajectory: dict[str, np.ndarray]) -> None:
        """Adds one trajectory: every field has the same leading length T (T may exceed capacity)."""
        lengths = {k: len(v) for k, v in trajectory.items()}
        length = next(iter(lengths.values()), 0)
        if any(n != length for n in lengths.values()):
            raise ValueError(f"trajectory fields differ in length: {lengths}")
        if length == 0:
            return
        if not self._specs:
            self._allocate(trajectory)
        elif set(trajectory) != set(self._specs):
            raise ValueError(f"trajectory fields {sorted(trajectory)} differ from the buffer's {sorted(self._specs)}")
        keep = min(length, self.capacity)  # a trajectory longer than the ring keeps its newest samples
        values = {key: self._checked(key, np.asarray(trajectory[key])[length - keep :]) for key in self._specs}
        start = self.written - self.size
        evicted = max(0, self.size + keep - self.capacity)
        for key, table in self._text.items():
            if evicted:
                table.release(self.storage.read(key, np.arange(start, start + evicted)))
            values[key] = table.encode(values[key])
            table.retain(values[key])
        self.storage.write(self.written, values)
        self.written += keep
        self.size = min(self.capacity, self.size + keep)
        if evicted:
            self.storage.moved(self.written - self.size)
        self.total_samples += length
        self._trajectory_ends.append(self.total_samples)
        oldest_kept = self.total_samples - self.size
        while self._trajectory_ends and self._trajectory_ends[0] <= oldest_kept:
            self._trajectory_ends.popleft()

    def _checked(self, key: str, value: np.ndarray) -> np.ndarray:
        """`value` if it fits field `key` in shape and kind; else a ValueError naming the field."""
        dtype, shape = self._specs[key]
        if value.shape[1:] != shape:
            raise ValueError(f"field {key!r} has shape {value.shape[1:]}, the buffer holds {shape}")
        if key in self._text:
            if not is_text(value):
                raise ValueError(f"field {key!r} holds text, got {value.dtype}")
        elif not np.can_cast(value.dtype, dtype, casting="same_kind"):
            raise ValueError(f"field {key!r} is {dtype}, cannot store {value.dtype} in it")
        return value

    def _allocate(self, example: dict[str, np.ndarray]) -> None:
        specs = {}
        for key, value in example.items():
            value = np.asarray(value)
            if is_text(value):
                self._text[key] = TextTable()
                dtype = np.dtype(np.int32)
            elif value.dtype.kind == "O":
                raise ValueError(f"field {key!r} holds Python objects; only numbers and text can be stored")
            else:
                dtype = value.dtype
            specs[key] = (dtype, tuple(value.shape[1:]))
        self.storage.allocate(specs)
        self._specs = specs

    def _rows(self, index: np.ndarray) -> np.ndarray:
        """Sample indices (ring slots) -> row numbers."""
        start = self.written - self.size
        return start + (np.asarray(index, dtype=np.int64) - start) % self.capacity

    def _values(self, key: str, rows: np.ndarray) -> np.ndarray:
        table = self._text.get(key)
        values = self.storage.read(key, rows)
        return table.decode(values) if table is not None else values

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniform sample with replacement over stored samples."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = self._rows(rng.integers(0, self.size, size=batch_size))
        return {key: self._values(key, rows) for key in self._specs}

    def stored(self, fields: list[str] | None = None) -> dict[str, np.ndarray]:
        """Every stored sample (of `fields`, default all), oldest first (a copy)."""
        rows = np.arange(*self.window)
        return {key: self._values(key, rows) for key in (fields or self._specs)}

    def chunks(self, max_rows: int, fields: list[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """What `stored` returns, `max_rows` samples at a time, each chunk read when asked for: a window far larger
        than memory goes through a bounded piece at a time."""
        start, end = self.window
        for first in range(start, end, max(1, max_rows)):
            rows = np.arange(first, min(end, first + max(1, max_rows)))
            yield {key: self._values(key, rows) for key in (fields or self._specs)}

    @property
    def specs(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """field -> (dtype, shape of one sample) of what `stored` returns (text fields: str)."""
        return {k: (np.dtype(str) if k in self._text else dtype, shape) for k, (dtype, shape) in self._specs.items()}

    # CHECKPOINT
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: counters, shapes, text tables and the storage's manifest of the window's rows (which
        writes only rows not saved before; see `replay_storage`)."""
        return {
            "capacity": self.capacity,
            "size": self.size,
            "written": self.written,
            "total_samples": self.total_samples,
            "trajectory_ends": list(self._trajectory_ends),
            "dtypes": {k: str(dtype) for k, (dtype, _) in self._specs.items()},
            "shapes": {k: list(shape) for k, (_, shape) in self._specs.items()},
            "text": {k: list(table.strings) for k, table in self._text.items()},
            "storage": self.storage.checkpoint(self.window) if self._specs else None,
        }

    @staticmethod
    def specs_of(meta: dict[str, Any]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """field -> (dtype, row shape) as `state_dict` recorded them."""
        return {k: (np.dtype(d), tuple(meta["shapes"][k])) for k, d in meta["dtypes"].items()}

    def load_state_dict(self, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
        """Restores `state_dict`'s state; `arrays` are a checkpoint from before segment logs (rows in slot order,
        `next` in the state), loaded into a memory storage."""
        if meta["capacity"] != self.capacity:
            raise ValueError(f"checkpoint buffer capacity {meta['capacity']} differs from {self.capacity}")
        if arrays is not None and "storage" not in meta:
            return self._load_slot_arrays(arrays, meta)
        self._specs = self.specs_of(meta)
        self._text = {k: TextTable(strings) for k, strings in meta.get("text", {}).items()}
        self.size, self.written = int(meta["size"]), int(meta["written"])
        self.total_samples = int(meta["total_samples"])
        self._trajectory_ends = deque(int(e) for e in meta["trajectory_ends"])
        if self._specs:
            self.storage.restore(self._specs, self.window, meta["storage"])
        if getattr(self.storage, "read_only", False):
            return  # the reference counts serve writes only: a read-only buffer reads no window for them
        for key, table in self._text.items():
            table.recount(self.storage.read(key, np.arange(*self.window)))

    def _load_slot_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        size = int(meta["size"])
        slots = {}
        for key, array in arrays.items():
            dtype = np.dtype(meta["dtypes"][key])
            if dtype.kind == "U":  # code points, from before the text table
                table = TextTable()
                array = table.encode(_legacy_text(array, dtype))
                self._text[key] = table
            elif key in meta.get("text", {}):
                self._text[key] = TextTable(meta["text"][key])
            slots[key] = array
        self._specs = {}
        if slots:
            self._specs = {k: (np.dtype(a.dtype), tuple(a.shape[1:])) for k, a in slots.items()}
            self.storage.allocate(self._specs)
            # the ring was written from slot 0 on, so row r sat in slot r % capacity
            self.size = size
            self.written = size if size < self.capacity else int(meta["next"]) + self.capacity
            order = np.argsort(self._rows(np.arange(size)))
            self.storage.write(self.window[0], {k: a[order] for k, a in slots.items()})
        self.total_samples = int(meta["total_samples"])
        self._trajectory_ends = deque(int(e) for e in meta["trajectory_ends"])
        for key, table in self._text.items():
            table.recount(self.storage.read(key, np.arange(*self.window)))

    def prune(self, keep: set[str]) -> None:
        """Deletes stored rows that neither the window nor the checkpoints naming segments in `keep` need."""
        self.storage.prune(keep)

    def close(self) -> None:
        self.storage.close()
