"""A bounded, trajectory-aware buffer of labelled samples, counted in samples.

Storage is one preallocated ring of `capacity` rows per field, so memory is flat once the buffer is full. The
learner samples uniformly, with replacement, from everything stored: the ring *is* RLinf's `sample_window_size`
window (RLinf counts trajectories; here every size is in samples).

A sample is one labelled env step. Fields: `obs` (or `obs/<key>` for dict observations), `expert_action`
(the label, full horizon, env units), `action` (what was executed), and metadata `expert_used`, `beta`,
`iteration`, `policy_version`, `episode_id`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

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
    """Ring buffer of labelled samples grouped into trajectories (contiguous steps of one episode).

    The first trajectory fixes each field's shape and kind; later ones must match (numbers may narrow within their
    kind, e.g. float64 into float32, never float into int). Text fields go through a `TextTable`, so their length
    is never fixed.
    """

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._data: dict[str, np.ndarray] = {}
        self._text: dict[str, TextTable] = {}  # text fields: _data holds their int32 codes
        self._next = 0  # ring slot the next sample goes to
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
        return list(self._data)

    def add(self, trajectory: dict[str, np.ndarray]) -> None:
        """Adds one trajectory: every field has the same leading length T (T may exceed capacity)."""
        lengths = {k: len(v) for k, v in trajectory.items()}
        length = next(iter(lengths.values()), 0)
        if any(n != length for n in lengths.values()):
            raise ValueError(f"trajectory fields differ in length: {lengths}")
        if length == 0:
            return
        if not self._data:
            self._allocate(trajectory)
        elif set(trajectory) != set(self._data):
            raise ValueError(f"trajectory fields {sorted(trajectory)} differ from the buffer's {sorted(self._data)}")
        keep = min(length, self.capacity)  # a trajectory longer than the ring keeps its newest samples
        slots = (self._next + np.arange(keep)) % self.capacity
        values = {key: self._checked(key, np.asarray(trajectory[key])[length - keep :]) for key in self._data}
        occupied = slots[slots < self.size]
        for key, table in self._text.items():
            table.release(self._data[key][occupied])
            values[key] = table.encode(values[key])
            table.retain(values[key])
        for key, array in self._data.items():
            array[slots] = values[key]
        self._next = int((self._next + keep) % self.capacity)
        self.size = min(self.capacity, self.size + keep)
        self.total_samples += length
        self._trajectory_ends.append(self.total_samples)
        oldest_kept = self.total_samples - self.size
        while self._trajectory_ends and self._trajectory_ends[0] <= oldest_kept:
            self._trajectory_ends.popleft()

    def _checked(self, key: str, value: np.ndarray) -> np.ndarray:
        """`value` if it fits field `key` in shape and kind; else a ValueError naming the field."""
        array = self._data[key]
        if value.shape[1:] != array.shape[1:]:
            raise ValueError(f"field {key!r} has shape {value.shape[1:]}, the buffer holds {array.shape[1:]}")
        if key in self._text:
            if not is_text(value):
                raise ValueError(f"field {key!r} holds text, got {value.dtype}")
        elif not np.can_cast(value.dtype, array.dtype, casting="same_kind"):
            raise ValueError(f"field {key!r} is {array.dtype}, cannot store {value.dtype} in it")
        return value

    def _allocate(self, example: dict[str, np.ndarray]) -> None:
        for key, value in example.items():
            value = np.asarray(value)
            if is_text(value):
                self._text[key] = TextTable()
                dtype = np.int32
            elif value.dtype.kind == "O":
                raise ValueError(f"field {key!r} holds Python objects; only numbers and text can be stored")
            else:
                dtype = value.dtype
            self._data[key] = np.zeros((self.capacity, *value.shape[1:]), dtype=dtype)

    def _values(self, key: str, index: np.ndarray) -> np.ndarray:
        table = self._text.get(key)
        rows = self._data[key][index]
        return table.decode(rows) if table is not None else rows

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniform sample with replacement over stored samples."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = rng.integers(0, self.size, size=batch_size)
        return {key: self._values(key, index) for key in self._data}

    def stored(self) -> dict[str, np.ndarray]:
        """Every stored sample, oldest first (a copy)."""
        if self.size < self.capacity:
            order = np.arange(self.size)
        else:
            order = (self._next + np.arange(self.capacity)) % self.capacity
        return {key: self._values(key, order) for key in self._data}

    # CHECKPOINT
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able state); arrays keep the ring's slot order so that sampling resumes identically.
        Text fields travel as their int32 codes, their tables in the JSON state, so every array is numeric."""
        meta = {
            "capacity": self.capacity,
            "size": self.size,
            "next": self._next,
            "total_samples": self.total_samples,
            "trajectory_ends": list(self._trajectory_ends),
            "dtypes": {k: str(v.dtype) for k, v in self._data.items()},
            "text": {k: table.strings for k, table in self._text.items()},
        }
        return {key: array[: self.size] for key, array in self._data.items()}, meta

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if meta["capacity"] != self.capacity:
            raise ValueError(f"checkpoint buffer capacity {meta['capacity']} differs from {self.capacity}")
        self._data, self._text = {}, {}
        self._next = 0
        self.size = 0
        size = meta["size"]
        text = meta.get("text", {})
        for key, array in arrays.items():
            dtype = np.dtype(meta["dtypes"][key])
            if dtype.kind == "U":  # an older checkpoint: code points; re-encode through a table
                table = TextTable()
                codes = table.encode(_legacy_text(array, dtype))
                self._text[key], array, dtype = table, codes, np.dtype(np.int32)
            elif key in text:
                self._text[key] = TextTable(text[key])
            self._data[key] = np.zeros((self.capacity, *array.shape[1:]), dtype=dtype)
            self._data[key][:size] = array
        for key, table in self._text.items():
            table.recount(self._data[key][:size])
        if arrays:
            self.size = size
            self._next = int(meta["next"])
        self.total_samples = int(meta["total_samples"])
        self._trajectory_ends = deque(int(e) for e in meta["trajectory_ends"])
