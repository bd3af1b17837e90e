"""Where the replay buffer's rows live: `MemoryStorage` (a RAM ring) or `DiskStorage` (append-only files), and the
`SegmentLog` both checkpoint through.

Rows are addressed by their cumulative write index `row` (0, 1, 2, ... over the run); the buffer's window is the
last `size` rows written. A `SegmentLog` is a directory of segments, each a run of consecutive rows stored as one
raw column file per field (`<segment>/<field>.bin`, C order, dtypes and shapes in the checkpoint's JSON state, as
numpy's memmap files are). Segments are only appended to, never rewritten, so:

- a checkpoint is a manifest (which segments, how many of their rows) plus the JSON state, and writes no row twice:
  `DiskStorage` writes each row once, when it is added; `MemoryStorage` writes at each save the rows added since the
  previous save;
- every kept checkpoint stays restorable (its rows are never overwritten, only deleted once no kept checkpoint and
  no live window refers to their segment), and a crash after a checkpoint leaves that checkpoint's rows intact;
- a segment that leaves the window and that no checkpoint names is closed and deleted at once, as rows are added,
  so the directory holds the window plus what kept checkpoints name, whether or not saves come;
- before a checkpoint names a segment, its column files, its directory and the log's directory are on the disk
  (fsync), so a power cut after a save cannot leave it naming rows that never got there;
- after a restore, new rows go to a new segment, so a newer checkpoint's rows are not touched either.

Reads of large rows (camera images) use `os.pread` into the batch, so they never map the files into this process:
resident memory stays flat however large the window is. Small rows go through `np.memmap`.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import numpy as np

from dagger_cli.core.errors import DaggerError

Specs = dict[str, tuple[np.dtype, tuple[int, ...]]]
"""field -> (dtype, shape of one row)"""

PREAD_ROW_BYTES = 16 * 1024
"""rows at least this large are read with pread (not mapped): camera images"""
SEGMENTS_PER_WINDOW = 16
"""a disk segment holds at most 1/16 of the window, so a window that moves on frees space in 1/16 steps"""


@runtime_checkable
class ReplayStorage(Protocol):
    """What `ReplayBuffer` asks of where its rows live (TorchRL's `Storage`, with checkpoints of their own): rows are
    addressed by cumulative write index, the buffer keeps the window and decides what is sampled."""

    kind: str
    """`memory`, `disk` or `read-only`: recorded in the checkpoint's state"""
    capacity: int
    """rows the window holds"""

    def prepare(self) -> None:
        """Makes (and checks) what the storage needs before the run's first row."""
        ...

    def allocate(self, specs: Specs) -> None:
        """Sizes the columns for these fields at the first row."""
        ...

    @property
    def specs(self) -> Specs: ...

    def write(self, row: int, values: dict[str, np.ndarray]) -> None:
        """Stores one row of every field at cumulative index `row`."""
        ...

    def read(self, key: str, rows: np.ndarray) -> np.ndarray:
        """One field's values at these cumulative rows (all inside the window)."""
        ...

    def moved(self, start: int) -> None:
        """The window now starts at row `start`: what lies before it may be released."""
        ...

    def checkpoint(self, window: tuple[int, int]) -> dict[str, Any]:
        """JSON state naming the window's rows as they are on disk after this call (synced)."""
        ...

    def restore(self, specs: Specs, window: tuple[int, int], state: dict[str, Any]) -> None:
        """Reopens the rows a `checkpoint` state names."""
        ...

    def prune(self, keep: set[str]) -> None:
        """Deletes stored segments that neither the window nor the checkpoints naming `keep` need."""
        ...

    def close(self) -> None: ...


class StorageError(DaggerError):
    """A replay buffer directory that cannot be written, or a disk that is full."""


def _io_error(path: Path, e: OSError, what: str) -> StorageError:
    reason = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return StorageError(f"algorithm.replay_buffer: cannot {what} {path} ({reason})")


def _fsync(path: Path, fd: int | None = None) -> None:
    """fsync of an open `fd`, or of the file or directory at `path`; a failure is one line naming `path`."""
    try:
        if fd is not None:
            os.fsync(fd)
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise _io_error(path, e, "sync") from None


def row_bytes(spec: tuple[np.dtype, tuple[int, ...]]) -> int:
    dtype, shape = spec
    return int(np.dtype(dtype).itemsize * np.prod(shape, dtype=np.int64))


@dataclass
class Segment:
    name: str
    start: int
    """cumulative index of its first row"""
    rows: int

    @property
    def end(self) -> int:
        return self.start + self.rows


class SegmentLog:
    """An append-only directory of row segments (see the module docstring)."""

    def __init__(self, root: Path, specs: Specs):
        self.root = Path(root)
        self.specs = specs
        self.segments: list[Segment] = []
        self._write_fds: dict[str, int] = {}  # field -> fd of the segment being appended to
        self._appending: Segment | None = None
        self._read_fds: dict[tuple[str, str], int] = {}
        self._maps: dict[tuple[str, str], tuple[int, np.memmap]] = {}
        self.bytes_written = 0
        self.pinned: set[str] = set()
        """segments a checkpoint names (those of the last `prune`'s kept checkpoints, of manifests handed out or
        adopted since): a segment that leaves the window is deleted at once unless pinned"""
        self._dirty: set[str] = set()  # segments written to since their last fsync
        self._new_dirs: set[str] = set()  # segment directories made since the last flush
        self._root_synced = False

    @staticmethod
    def check_writable(root: Path) -> None:
        """`root` exists as a directory this process may write to, or can be made under one: one line before
        training, not a crash in it (nothing is created yet)."""
        root = Path(root).absolute()
        existing = next(p for p in (root, *root.parents) if p.exists())
        if not existing.is_dir():
            raise StorageError(f"algorithm.replay_buffer: cannot write to {root} ({existing} is not a directory)")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StorageError(f"algorithm.replay_buffer: cannot write to {root} (permission denied on {existing})")

    def file(self, segment: str, key: str) -> Path:
        return self.root / segment / f"{quote(key, safe='')}.bin"

    # WRITING
    def append(self, row: int, values: dict[str, np.ndarray], max_rows: int | None = None) -> None:
        """Rows `row ... row + n - 1`, which must follow the log's last row; a new segment starts when the current
        one holds `max_rows` (or was closed)."""
        n = len(next(iter(values.values())))
        done = 0
        while done < n:
            seg = self._appending
            if seg is None or seg.end != row + done or (max_rows and seg.rows >= max_rows):
                seg = self._open_segment(row + done)
            take = n - done if not max_rows else min(n - done, max_rows - seg.rows)
            for key, array in values.items():
                data = np.ascontiguousarray(array[done : done + take], dtype=self.specs[key][0])
                offset = seg.rows * row_bytes(self.specs[key])
                self._pwrite(self._write_fds[key], memoryview(data).cast("B"), offset, self.file(seg.name, key))
            seg.rows += take
            self._dirty.add(seg.name)
            done += take

    def _pwrite(self, fd: int, data: memoryview, offset: int, path: Path) -> None:
        try:
            while data:
                written = os.pwrite(fd, data, offset)
                data, offset = data[written:], offset + written
                self.bytes_written += written
        except OSError as e:
            raise _io_error(path, e, "write") from None

    def _open_segment(self, start: int) -> Segment:
        self.close_segment()
        seg = Segment(f"seg-{start:012d}-{uuid.uuid4().hex[:8]}", start, 0)
        try:
            (self.root / seg.name).mkdir(parents=True)
            for key in self.specs:
                self._write_fds[key] = os.open(self.file(seg.name, key), os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as e:
            raise _io_error(self.root / seg.name, e, "create") from None
        self._new_dirs.add(seg.name)
        self.segments.append(seg)
        self._appending = seg
        return seg

    def close_segment(self) -> None:
        """The next row goes to a new segment (after a restore, and at a memory save's end)."""
        for fd in self._write_fds.values():
            os.close(fd)
        self._write_fds, self._appending = {}, None

    def flush(self) -> None:
        """Every row of the window's segments is on the disk (fsync) before a checkpoint names it: the column files
        of each segment written to since its last flush (also those closed since), the directories made since, the
        log's directory and, at the first flush, the directory that holds it."""
        live = {s.name for s in self.segments}
        appending = self._appending.name if self._appending is not None else None
        for name in sorted(self._dirty & live):
            for key in self.specs:
                _fsync(self.file(name, key), self._write_fds[key] if name == appending else None)
        self._dirty.clear()
        for name in sorted(self._new_dirs & live):
            _fsync(self.root / name)
        if self._new_dirs or not self._root_synced:
            _fsync(self.root)
        if not self._root_synced:
            _fsync(self.root.parent)
            self._root_synced = True
        self._new_dirs.clear()

    # READING
    def locate(self, rows: np.ndarray) -> np.ndarray:
        """Segment index of each row (rows must be in the log)."""
        starts = np.array([s.start for s in self.segments], dtype=np.int64)
        return np.searchsorted(starts, rows, side="right") - 1

    def read(self, key: str, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        dtype, shape = self.specs[key]
        if out is None:
            out = np.empty((len(rows), *shape), dtype=dtype)
        size = row_bytes(self.specs[key])
        where = self.locate(rows)
        for s in np.unique(where).tolist():
            seg = self.segments[s]
            pick = np.flatnonzero(where == s)
            local = rows[pick] - seg.start
            if size >= PREAD_ROW_BYTES:
                fd = self._read_fd(seg.name, key)
                flat = out.reshape(len(rows), -1).view(np.uint8)
                for i, r in zip(pick.tolist(), local.tolist()):
                    view = memoryview(flat[i])
                    if os.preadv(fd, [view], r * size) != size:
                        raise DaggerError(f"{self.file(seg.name, key)}: shorter than the checkpoint says (truncated?)")
            else:
                out[pick] = self._map(seg, key)[local]
        return out

    def _read_fd(self, segment: str, key: str) -> int:
        fd = self._read_fds.get((segment, key))
        if fd is None:
            fd = self._read_fds[(segment, key)] = os.open(self.file(segment, key), os.O_RDONLY)
        return fd

    def _map(self, seg: Segment, key: str) -> np.memmap:
        cached = self._maps.get((seg.name, key))
        if cached is None or cached[0] < seg.rows:
            dtype, shape = self.specs[key]
            path = self.file(seg.name, key)
            if path.stat().st_size < seg.rows * row_bytes(self.specs[key]):
                raise DaggerError(f"{path}: shorter than the checkpoint says (truncated?)")
            cached = self._maps[(seg.name, key)] = (seg.rows, np.memmap(path, dtype, "r", shape=(seg.rows, *shape)))
        return cached[1]

    # MANIFESTS
    def manifest(self, start: int) -> list[dict[str, Any]]:
        """The segments (and how many of their rows) holding rows `start ...` to the log's end; they are pinned (a
        checkpoint names them) until the next `prune` says which checkpoints are kept."""
        named = [{"name": s.name, "start": s.start, "rows": s.rows} for s in self.segments if s.end > start and s.rows]
        self.pinned.update(m["name"] for m in named)
        return named

    def adopt(self, manifest: list[dict[str, Any]]) -> None:
        """The log as a checkpoint's manifest describes it; new rows go to a new segment."""
        self.verify(manifest)
        self.close_segment()
        self._forget()
        self.segments = [Segment(m["name"], int(m["start"]), int(m["rows"])) for m in manifest]
        self.pinned.update(s.name for s in self.segments)

    def verify(self, manifest: list[dict[str, Any]]) -> None:
        """Every file of the manifest's segments is there and holds its rows; else a DaggerError naming it."""
        for m in manifest:
            for key, spec in self.specs.items():
                path = self.file(m["name"], key)
                try:
                    size = path.stat().st_size
                except OSError:
                    raise DaggerError(f"{path}: missing (replay buffer rows of the checkpoint)") from None
                if size < int(m["rows"]) * row_bytes(spec):
                    raise DaggerError(f"{path}: holds fewer rows than the checkpoint says (truncated?)")

    def drop_before(self, start: int) -> None:
        """Forgets segments wholly before row `start`: their descriptors and maps close, and those no checkpoint
        names (not `pinned`) are deleted now; pinned ones go in the `prune` that finds no kept checkpoint naming
        them."""
        gone = [s for s in self.segments if s.end <= start and s is not self._appending]
        if not gone:
            return
        self.segments = [s for s in self.segments if s.end > start or s is self._appending]
        for seg in gone:
            self._forget(seg.name)
            if seg.name not in self.pinned:
                self._dirty.discard(seg.name)
                self._new_dirs.discard(seg.name)
                shutil.rmtree(self.root / seg.name, ignore_errors=True)

    def prune(self, keep: set[str]) -> None:
        """Deletes every segment directory not named in `keep` (the kept checkpoints' segments, pinned from now on)
        or in use."""
        self.pinned = set(keep)
        keep = keep | {s.name for s in self.segments}
        if not self.root.is_dir():
            return
        for path in self.root.glob("seg-*"):
            if path.name not in keep:
                self._forget(path.name)
                shutil.rmtree(path, ignore_errors=True)

    def _forget(self, segment: str | None = None) -> None:
        for key in [k for k in self._read_fds if segment is None or k[0] == segment]:
            os.close(self._read_fds.pop(key))
        for key in [k for k in self._maps if segment is None or k[0] == segment]:
            del self._maps[key]

    def close(self) -> None:
        self.close_segment()
        self._forget()


class _LogBacked:
    """What both storages do with their `SegmentLog`: free what no checkpoint needs, close its files."""

    log: SegmentLog | None = None

    def prune(self, keep: set[str]) -> None:
        """Deletes the log's segments that neither the window nor a checkpoint naming segments in `keep` needs."""
        if self.log is not None:
            self.log.prune(keep)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


class MemoryStorage(_LogBacked):
    """One preallocated RAM ring of `capacity` rows per field; checkpoints append the rows added since the last
    save to a `SegmentLog` beside the checkpoints."""

    kind = "memory"

    def __init__(self, capacity: int, log_root: Path | None = None):
        self.capacity = capacity
        self.log_root = Path(log_root) if log_root is not None else None
        self.data: dict[str, np.ndarray] = {}
        self.log: SegmentLog | None = None
        self._saved = 0  # rows [.., _saved) are in the log

    def prepare(self) -> None:
        """Nothing to make before the run: the checkpoint log is made at the first save."""

    def allocate(self, specs: Specs) -> None:
        needed = self.capacity * sum(row_bytes(s) for s in specs.values())
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if needed > 0.8 * ram:
            raise StorageError(
                f"algorithm.replay_buffer: a window of {self.capacity} samples needs {needed / 1e9:.1f} GB of RAM, "
                f"this machine has {ram / 1e9:.1f} GB; set algorithm.replay_buffer.storage=disk"
            )
        self.data = {key: np.zeros((self.capacity, *shape), dtype=dtype) for key, (dtype, shape) in specs.items()}

    @property
    def specs(self) -> Specs:
        return {key: (array.dtype, array.shape[1:]) for key, array in self.data.items()}

    def write(self, row: int, values: dict[str, np.ndarray]) -> None:
        slots = (row + np.arange(len(next(iter(values.values()))))) % self.capacity
        for key, array in self.data.items():
            array[slots] = values[key]

    def read(self, key: str, rows: np.ndarray) -> np.ndarray:
        return self.data[key][np.asarray(rows) % self.capacity]

    def moved(self, start: int) -> None:
        """The window starts at row `start` now (the ring overwrote what was before)."""

    def _log(self) -> SegmentLog:
        if self.log is None:
            if self.log_root is None:
                raise ValueError("this buffer has no checkpoint directory")
            self.log = SegmentLog(self.log_root, self.specs)
        return self.log

    def checkpoint(self, window: tuple[int, int]) -> dict[str, Any]:
        """Appends the window's rows not saved yet; returns the manifest of the window's rows."""
        start, end = window
        log = self._log()
        first = max(self._saved, start)
        if first < end:
            log.append(first, {key: self.read(key, np.arange(first, end)) for key in self.data})
            log.flush()
            log.close_segment()
        self._saved = end
        log.drop_before(start)
        return {"log": str(log.root), "segments": log.manifest(start)}

    def restore(self, specs: Specs, window: tuple[int, int], state: dict[str, Any]) -> None:
        """Reads the window's rows back from the checkpoint's log into the ring, at the slots they had."""
        self.allocate(specs)
        start, end = window
        self.log = SegmentLog(Path(state["log"]), specs)
        self.log.adopt(state["segments"])
        rows = np.arange(start, end)
        for key in self.data:
            self.data[key][rows % self.capacity] = self.log.read(key, rows)
        self.log._forget()  # the rows are in RAM now: no descriptor stays open
        self._saved = end



class DiskStorage(_LogBacked):
    """The rows themselves are a `SegmentLog` (under the run dir, or `algorithm.replay_buffer.path`): written once,
    when added; a checkpoint flushes them and records the manifest."""

    kind = "disk"

    def __init__(self, capacity: int, root: Path):
        self.capacity = capacity
        self.root = Path(root)
        self.log: SegmentLog | None = None
        SegmentLog.check_writable(self.root)

    def prepare(self) -> None:
        """Makes the directory and writes a probe into it: a path that cannot be written is one line now."""
        probe = self.root / f".probe-{os.getpid()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"\0" * 4096)
            probe.unlink()
        except OSError as e:
            raise _io_error(self.root, e, "write to") from None

    def allocate(self, specs: Specs) -> None:
        self.prepare()
        self.check_space(specs)
        self.log = SegmentLog(self.root, specs)

    def check_space(self, specs: Specs | None = None, resuming: bool = False) -> None:
        """The disk holds the window plus the rows kept checkpoints name, and a kept checkpoint's rows stay until
        later saves replace it: so a whole window of new rows (and one segment, its granularity) must fit in the free
        space on top of the segments the directory holds now (none in a new run; after a restore, the kept
        checkpoints'). One line if not."""
        specs = specs or self.specs
        fix = ("free space there (algorithm.replay_buffer.path and sample_window_size cannot change on --resume)"
               if resuming else "set algorithm.replay_buffer.path to a larger disk or lower sample_window_size")
        needed = (self.capacity + self.segment_rows) * sum(row_bytes(s) for s in specs.values())
        free = shutil.disk_usage(self.root).free
        if needed <= free:
            return
        held = sum(f.stat().st_size for f in self.root.glob("seg-*/*.bin"))
        kept = f" on top of the {held / 1e9:.1f} GB the kept checkpoints hold there" if held else ""
        raise StorageError(
            f"algorithm.replay_buffer: a window of {self.capacity} samples needs {needed / 1e9:.1f} GB under "
            f"{self.root}{kept}, which has {free / 1e9:.1f} GB free; {fix}"
        )

    @property
    def specs(self) -> Specs:
        return self.log.specs if self.log is not None else {}

    @property
    def segment_rows(self) -> int:
        return max(1, -(-self.capacity // SEGMENTS_PER_WINDOW))

    def write(self, row: int, values: dict[str, np.ndarray]) -> None:
        self.log.append(row, values, max_rows=self.segment_rows)

    def read(self, key: str, rows: np.ndarray) -> np.ndarray:
        return self.log.read(key, rows)

    def moved(self, start: int) -> None:
        """The window now starts at row `start`: segments before it may go once no checkpoint needs them."""
        self.log.drop_before(start)

    def checkpoint(self, window: tuple[int, int]) -> dict[str, Any]:
        self.log.flush()
        return {"log": str(self.log.root), "segments": self.log.manifest(window[0])}

    def restore(self, specs: Specs, window: tuple[int, int], state: dict[str, Any]) -> None:
        """The checkpoint's segments are the data: nothing is copied."""
        self.log = SegmentLog(Path(state["log"]), specs)
        self.log.adopt(state["segments"])



class ReadOnlyStorage:
    """A checkpoint's rows read in place (`dagger export`): the segment files are opened read-only (`os.pread`,
    `np.memmap` mode "r"), nothing is checked for write access, made, written or deleted, so a run owned by another
    user or on a read-only mount reads as any other."""

    kind = "read-only"
    read_only = True

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.log: SegmentLog | None = None

    def restore(self, specs: Specs, window: tuple[int, int], state: dict[str, Any]) -> None:
        self.log = SegmentLog(Path(state["log"]), specs)
        self.log.adopt(state["segments"])

    @property
    def specs(self) -> Specs:
        return self.log.specs if self.log is not None else {}

    def read(self, key: str, rows: np.ndarray) -> np.ndarray:
        return self.log.read(key, rows)

    def _refuse(self, *args, **kwargs):
        raise StorageError("algorithm.replay_buffer: a checkpoint's buffer opened for reading cannot be written")

    prepare = allocate = write = moved = checkpoint = _refuse

    def prune(self, keep: set[str]) -> None:
        """Deletes nothing: the run's checkpoints are not this reader's."""

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
