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


def _numeric(array: np.ndarray) -> np.ndarray:
    """Text arrays (dtype <Un) as uint32 code points (n, ..., width); others unchanged."""
    if array.dtype.kind == "U":
        return np.ascontiguousarray(array).view(np.uint32).reshape(*array.shape, -1)
    return array


def _from_numeric(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "U":
        return np.ascontiguousarray(array, dtype=np.uint32).view(dtype).reshape(array.shape[:-1])
    return array.astype(dtype, copy=False)


class ReplayBuffer:
    """Ring buffer of labelled samples grouped into trajectories (contiguous steps of one episode)."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._data: dict[str, np.ndarray] = {}
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
        for key, array in self._data.items():
            value = np.asarray(trajectory[key])[length - keep :]
            if value.shape[1:] != array.shape[1:]:
                raise ValueError(f"field {key!r} has shape {value.shape[1:]}, the buffer holds {array.shape[1:]}")
            array[slots] = value
        self._next = int((self._next + keep) % self.capacity)
        self.size = min(self.capacity, self.size + keep)
        self.total_samples += length
        self._trajectory_ends.append(self.total_samples)
        oldest_kept = self.total_samples - self.size
        while self._trajectory_ends and self._trajectory_ends[0] <= oldest_kept:
            self._trajectory_ends.popleft()

    def _allocate(self, example: dict[str, np.ndarray]) -> None:
        for key, value in example.items():
            value = np.asarray(value)
            self._data[key] = np.zeros((self.capacity, *value.shape[1:]), dtype=value.dtype)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniform sample with replacement over stored samples."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = rng.integers(0, self.size, size=batch_size)
        return {key: array[index] for key, array in self._data.items()}

    def stored(self) -> dict[str, np.ndarray]:
        """Every stored sample, oldest first (a copy)."""
        if self.size < self.capacity:
            order = np.arange(self.size)
        else:
            order = (self._next + np.arange(self.capacity)) % self.capacity
        return {key: array[order] for key, array in self._data.items()}

    # CHECKPOINT
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able state); arrays keep the ring's slot order so that sampling resumes identically.
        Text fields (e.g. prompts) travel as their UTF-32 code points, so every array is numeric."""
        meta = {
            "capacity": self.capacity,
            "size": self.size,
            "next": self._next,
            "total_samples": self.total_samples,
            "trajectory_ends": list(self._trajectory_ends),
            "dtypes": {k: str(v.dtype) for k, v in self._data.items()},
        }
        return {key: _numeric(array[: self.size]) for key, array in self._data.items()}, meta

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if meta["capacity"] != self.capacity:
            raise ValueError(f"checkpoint buffer capacity {meta['capacity']} differs from {self.capacity}")
        self._data = {}
        self._next = 0
        self.size = 0
        if arrays:
            restored = {k: _from_numeric(v, np.dtype(meta["dtypes"][k])) for k, v in arrays.items()}
            self._allocate(restored)
            size = meta["size"]
            for key, array in self._data.items():
                array[:size] = restored[key]
            self.size = size
            self._next = int(meta["next"])
        self.total_samples = int(meta["total_samples"])
        self._trajectory_ends = deque(int(e) for e in meta["trajectory_ends"])
