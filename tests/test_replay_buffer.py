import os

import numpy as np
import pytest

from dagger_cli.core.engine.replay_buffer import ReplayBuffer
from dagger_cli.core.engine.replay_storage import DiskStorage, MemoryStorage, ReadOnlyStorage, ReplayStorage


@pytest.fixture(params=["memory", "disk"])
def make(request, tmp_path):
    """ReplayBuffer(capacity) over either storage, checkpointing under tmp_path; `make.restored(buffer)` is a new
    buffer loaded from `buffer`'s checkpoint state, as a resume would make it."""
    made = []

    def build(capacity: int, root=None) -> ReplayBuffer:
        root = root or tmp_path / f"b{len(made)}"
        storage = MemoryStorage(capacity, root) if request.param == "memory" else DiskStorage(capacity, root)
        made.append(ReplayBuffer(capacity, storage))
        return made[-1]

    def restored(buffer: ReplayBuffer) -> ReplayBuffer:
        meta = buffer.state_dict()
        other = build(buffer.capacity, buffer.storage.log.root if buffer.storage.log else None)
        other.load_state_dict(meta)
        return other

    build.restored = restored
    build.kind = request.param
    return build


def trajectory(start: int, length: int, episode: int = 0) -> dict[str, np.ndarray]:
    idx = np.arange(start, start + length)
    return {
        "obs": np.stack([idx, idx * 2], axis=1).astype(np.float32),
        "expert_action": idx[:, None, None].astype(np.float32),
        "action": np.zeros((length, 1, 1), np.float32),
        "expert_used": idx % 2 == 0,
        "beta": np.full(length, 0.5, np.float32),
        "iteration": np.full(length, 3, np.int32),
        "policy_version": np.full(length, 3, np.int32),
        "episode_id": np.full(length, episode, np.int64),
    }


def test_window_keeps_most_recent_samples():
    # GIVEN a buffer of 10 samples
    buffer = ReplayBuffer(10)
    # WHEN 3 trajectories of 4 samples (values 0..11) are added
    for t in range(3):
        buffer.add(trajectory(4 * t, 4, episode=t))
    # THEN it holds the newest 10 (2..11), counts 12 in total, and the oldest trajectory is partly kept
    stored = buffer.stored()
    assert sorted(stored["expert_action"][:, 0, 0].tolist()) == list(range(2, 12))
    assert buffer.size == 10 and buffer.total_samples == 12
    assert buffer.num_trajectories == 3
    buffer.add(trajectory(12, 4, episode=3))
    assert buffer.num_trajectories == 3  # trajectory 0 is gone entirely now


def test_metadata_travels_with_each_sample():
    buffer = ReplayBuffer(100)
    buffer.add(trajectory(0, 20, episode=7))
    batch = buffer.sample(64, np.random.default_rng(0))
    value = batch["expert_action"][:, 0, 0]
    assert np.array_equal(batch["obs"][:, 0], value)
    assert np.array_equal(batch["expert_used"], value.astype(int) % 2 == 0)
    assert set(batch["episode_id"].tolist()) == {7}
    assert set(batch["iteration"].tolist()) == {3} and set(batch["beta"].tolist()) == {0.5}


def test_memory_is_flat_once_full():
    # GIVEN a full buffer
    buffer = ReplayBuffer(50)
    buffer.add(trajectory(0, 50))
    arrays = {k: (id(v), v.nbytes) for k, v in buffer.storage.data.items()}
    # WHEN many more trajectories arrive
    for t in range(200):
        buffer.add(trajectory(50 + 7 * t, 7))
    # THEN no array was reallocated or grown
    assert {k: (id(v), v.nbytes) for k, v in buffer.storage.data.items()} == arrays
    assert buffer.size == 50 and buffer.total_samples == 50 + 200 * 7


def test_sampling_is_uniform_over_stored_samples_only():
    buffer = ReplayBuffer(20)
    buffer.add(trajectory(0, 30))  # longer than the buffer: keeps 10..29
    values = buffer.sample(20000, np.random.default_rng(1))["expert_action"][:, 0, 0]
    assert values.min() == 10 and values.max() == 29
    counts = np.bincount(values.astype(int) - 10, minlength=20)
    assert counts.min() > 800 and counts.max() < 1200  # 1000 expected per value


def test_state_round_trip_continues_identically(make):
    # GIVEN a wrapped-around buffer and its saved state
    a = make(16)
    for t in range(5):
        a.add(trajectory(5 * t, 5, episode=t))
    b = make.restored(a)
    # WHEN both receive the same trajectory and are sampled with the same RNG
    for buf in (a, b):
        buf.add(trajectory(100, 3, episode=9))
    sa, sb = a.sample(32, np.random.default_rng(5)), b.sample(32, np.random.default_rng(5))
    # THEN they agree on contents, counts and the very samples drawn
    assert a.size == b.size and a.total_samples == b.total_samples and a.num_trajectories == b.num_trajectories
    for key in a.stored():
        assert np.array_equal(a.stored()[key], b.stored()[key])
        assert np.array_equal(sa[key], sb[key])


def test_mismatched_fields_are_rejected():
    buffer = ReplayBuffer(10)
    buffer.add(trajectory(0, 3))
    bad = trajectory(3, 3)
    bad["obs"] = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match="obs"):
        buffer.add(bad)
    with pytest.raises(ValueError, match="differ in length"):
        buffer.add({**trajectory(0, 3), "beta": np.zeros(2, np.float32)})


def test_text_fields_survive_the_checkpoint_as_numbers(make):
    # GIVEN dict observations with a prompt per sample (as π₀ envs give them)
    buffer = make(8)
    prompts = np.array(["put the bowl on the plate", "adjust the bottle", "pick", "é ü 中"])
    buffer.add({"obs/prompt": prompts, "obs/state": np.zeros((4, 2), np.float32)})
    meta = buffer.state_dict()
    # THEN every stored column is numeric, and loading restores the exact strings
    assert set(meta["dtypes"].values()) == {"int32", "float32"}
    assert make.restored(buffer).stored()["obs/prompt"].tolist() == prompts.tolist()


def test_text_of_any_length_arrives_whole_in_later_batches(make):
    # GIVEN a buffer whose first trajectory holds a short prompt
    buffer = make(6)
    buffer.add({"obs/prompt": np.array(["short"] * 2), "obs/state": np.zeros((2, 2), np.float32)})
    # WHEN later trajectories bring longer ones, as numpy text of other widths and as Python strings
    longer = "a much longer instruction, with ünïcödé → and more"
    buffer.add({"obs/prompt": np.array([longer] * 3), "obs/state": np.ones((3, 2), np.float32)})
    buffer.add({"obs/prompt": np.array(["mid length", longer], dtype=object), "obs/state": np.ones((2, 2), np.float32)})
    # THEN every stored and sampled prompt is whole, also after a checkpoint round trip
    expected = ["short", longer, longer, longer, "mid length", longer]
    assert buffer.stored()["obs/prompt"].tolist() == expected
    assert set(buffer.sample(64, np.random.default_rng(0))["obs/prompt"].tolist()) == set(expected)
    assert make.restored(buffer).stored()["obs/prompt"].tolist() == expected


def test_the_text_table_holds_only_the_strings_still_stored(make):
    # GIVEN a small ring that sees a new instruction in every trajectory (RoboTwin's vary per episode)
    buffer = make(10)
    for t in range(200):
        buffer.add({"obs/prompt": np.array([f"instruction number {t} " + "x" * t] * 3)})
    # THEN the table reuses the entries of overwritten prompts, and the checkpoint carries only live ones
    stored = buffer.stored()["obs/prompt"].tolist()
    assert stored == [f"instruction number {t} " + "x" * t for t in (196, 197, 197, 197, 198, 198, 198, 199, 199, 199)]
    meta = buffer.state_dict()
    assert len([s for s in meta["text"]["obs/prompt"] if s is not None]) == 4
    assert len(meta["text"]["obs/prompt"]) <= 10
    # AND resuming from it continues to reuse entries correctly
    restored = make.restored(buffer)
    for buf in (buffer, restored):
        buf.add({"obs/prompt": np.array(["new"] * 9)})
    assert restored.stored()["obs/prompt"].tolist() == buffer.stored()["obs/prompt"].tolist() == [
        "instruction number 199 " + "x" * 199] + ["new"] * 9


def test_a_checkpoint_with_text_as_code_points_still_loads():
    # GIVEN a buffer state saved before the text table (text as UTF-32 code points, its <U dtype in the state)
    prompts = np.array(["put the bowl on the plate", "adjust"])
    arrays = {"obs/prompt": prompts.view(np.uint32).reshape(2, -1)}
    meta = {"capacity": 4, "size": 2, "next": 2, "total_samples": 2, "trajectory_ends": [2],
            "dtypes": {"obs/prompt": str(prompts.dtype)}}
    buffer = ReplayBuffer(4)
    buffer.load_state_dict(meta, arrays)
    buffer.add({"obs/prompt": np.array(["a longer prompt than any of the first ones"])})
    assert buffer.stored()["obs/prompt"].tolist() == [*prompts.tolist(), "a longer prompt than any of the first ones"]


def test_later_batches_must_match_the_first_in_kind():
    buffer = ReplayBuffer(10)
    buffer.add(trajectory(0, 3))
    for key, value, message in [
        ("iteration", np.full(3, 2.5), "iteration.*int32.*float64"),
        ("obs", np.array([["a", "b"]] * 3), "obs"),
    ]:
        with pytest.raises(ValueError, match=message):
            buffer.add({**trajectory(3, 3), key: value})
    with pytest.raises(ValueError, match="holds text"):
        text = ReplayBuffer(4)
        text.add({"obs/prompt": np.array(["x"])})
        text.add({"obs/prompt": np.array([1.0])})
    assert buffer.size == 3  # nothing of a refused trajectory was stored
    buffer.add({**trajectory(3, 3), "obs": np.zeros((3, 2), np.float64)})  # narrowing within a kind is fine


# STORAGES AND INCREMENTAL CHECKPOINTS
def images(start: int, length: int) -> dict[str, np.ndarray]:
    """A trajectory with a camera-sized field (read with pread on disk) and a prompt."""
    idx = np.arange(start, start + length)
    return {
        "obs/image": np.broadcast_to((idx % 251).astype(np.uint8)[:, None, None], (length, 96, 96)).copy(),
        "obs/prompt": np.array([f"task {i // 7}" for i in idx]),
        "expert_action": idx[:, None].astype(np.float32),
    }


def test_disk_and_memory_storage_hold_and_draw_the_same_samples(tmp_path):
    # GIVEN the same trajectories into a RAM buffer and a disk buffer, past wrapping around
    memory, disk = ReplayBuffer(40), ReplayBuffer(40, DiskStorage(40, tmp_path / "disk"))
    for t in range(13):
        for buffer in (memory, disk):
            buffer.add(images(7 * t, 7))
    # THEN they hold the same window and draw the very same batches from the same RNG
    for key, value in memory.stored().items():
        assert np.array_equal(value, disk.stored()[key])
    a, b = memory.sample(256, np.random.default_rng(3)), disk.sample(256, np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(set(a["expert_action"][:, 0].astype(int).tolist())) == list(range(51, 91))


def test_a_checkpoint_writes_only_the_rows_added_since_the_last(make):
    # GIVEN a buffer saved once
    buffer = make(64)
    buffer.add(images(0, 30))
    buffer.state_dict()
    log = buffer.storage.log
    row = sum(buffer.row_bytes(k) for k in buffer.fields)
    before = log.bytes_written
    # WHEN 20 rows are added and it is saved again
    buffer.add(images(30, 20))
    buffer.state_dict()
    # THEN the rows written are the 20 new ones, once (disk: when added; memory: at the save)
    assert log.bytes_written - before == 20 * row


def test_every_kept_checkpoint_restores_after_the_window_moved_on(make):
    # GIVEN checkpoint states taken as the window wraps around twice, then rows added after the last (a crash)
    buffer = make(32)
    saved = []
    for t in range(12):
        buffer.add(images(9 * t, 9))
        if t in (3, 7):
            saved.append((buffer.state_dict(), buffer.stored()))
    buffer.prune({m["name"] for meta, _ in saved for m in meta["storage"]["segments"]})
    # THEN each restores exactly its own window, and continues identically from there
    for meta, expected in saved:
        restored = make(32, buffer.storage.log.root)
        restored.load_state_dict(meta)
        assert all(np.array_equal(expected[k], v) for k, v in restored.stored().items())
    again = make(32, buffer.storage.log.root)
    again.load_state_dict(saved[0][0])
    again.add(images(500, 5))
    assert again.stored()["expert_action"][-5:, 0].tolist() == list(range(500, 505))
    # AND a restore leaves the other checkpoint's rows alone
    last = make(32, buffer.storage.log.root)
    last.load_state_dict(saved[1][0])
    assert all(np.array_equal(saved[1][1][k], v) for k, v in last.stored().items())


def test_segments_no_checkpoint_needs_are_deleted(tmp_path):
    # GIVEN a disk buffer whose window moved far past its first checkpoint
    buffer = ReplayBuffer(32, DiskStorage(32, tmp_path / "rb"))
    buffer.add(images(0, 32))
    first = buffer.state_dict()
    for t in range(20):
        buffer.add(images(32 + 8 * t, 8))
    second = buffer.state_dict()
    segments = lambda: {p.name for p in (tmp_path / "rb").glob("seg-*")}  # noqa: E731
    names = lambda meta: {m["name"] for m in meta["storage"]["segments"]}  # noqa: E731
    # WHEN only the second checkpoint is kept
    buffer.prune(names(second))
    # THEN only the segments of its window remain: about one window of rows on disk, not the whole run's
    assert segments() == names(second) and not names(first) & segments()
    on_disk = sum(f.stat().st_size for f in (tmp_path / "rb").rglob("*.bin"))
    assert on_disk <= 32 * 1.25 * sum(buffer.row_bytes(k) for k in buffer.fields)


def test_a_disk_buffer_that_cannot_be_written_fails_in_one_line(tmp_path):
    from dagger_cli.core.engine.replay_storage import StorageError

    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError) as e:
        DiskStorage(10, tmp_path / "file" / "rb")
    assert "file/rb" in str(e.value) and "\n" not in str(e.value)
    # AND a window larger than the disk's free space is refused before anything is written
    buffer = ReplayBuffer(10**12, DiskStorage(10**12, tmp_path / "rb"))
    with pytest.raises(StorageError, match="GB free.*algorithm.replay_buffer.path"):
        buffer.add(images(0, 2))
    assert not list((tmp_path / "rb").glob("seg-*"))


def test_a_disk_buffer_frees_what_leaves_its_window_without_a_save(tmp_path):
    # GIVEN a disk buffer of 32 samples (segments of 2 rows), sampled as the learner does, one checkpoint state
    # taken early on (as a kept checkpoint names its segments) and no save after it (runner.save_interval: -1)
    root = tmp_path / "rb"
    fds_before = len(os.listdir("/proc/self/fd"))
    buffer = ReplayBuffer(32, DiskStorage(32, root))
    row = None
    rng = np.random.default_rng(0)

    def usage():
        files = list(root.rglob("*.bin"))
        return len(list(root.glob("seg-*"))), sum(f.stat().st_size for f in files), len(os.listdir("/proc/self/fd"))

    seen = []
    for t in range(300):  # 2,100 rows: 65 windows
        buffer.add(images(7 * t, 7))
        buffer.sample(16, rng)
        if t == 6:
            early, early_rows = buffer.state_dict(), buffer.stored()
        if t >= 12:  # the window went round twice past the checkpoint
            seen.append(usage())
        row = row or sum(buffer.row_bytes(k) for k in buffer.fields)
    # THEN segment directories, bytes on disk and open descriptors stay at one window plus the checkpoint's rows:
    # the same after 2,100 rows as after 100
    pinned = len(early["storage"]["segments"])
    dirs, size, fds = zip(*seen)
    assert max(dirs) <= 16 + 2 + pinned
    assert max(size) <= (32 + 2 * 2) * row + sum(m["rows"] for m in early["storage"]["segments"]) * row
    assert max(fds) - fds_before <= (16 + 2 + 1) * len(buffer.fields)  # read maps of the window, writes of one
    # AND the checkpoint's rows were kept whole, until a collect says no kept checkpoint names them
    again = ReplayBuffer(32, DiskStorage(32, root))
    again.load_state_dict(early)
    assert all(np.array_equal(early_rows[k], v) for k, v in again.stored().items())
    again.close()
    buffer.prune(set())
    assert len(list(root.glob("seg-*"))) <= 17


def test_every_storage_offers_the_replay_storage_contract(tmp_path):
    # GIVEN each storage a buffer or an export can sit on; THEN each has every method the contract names
    for storage in (MemoryStorage(4), DiskStorage(4, tmp_path / "rb"), ReadOnlyStorage(4)):
        assert isinstance(storage, ReplayStorage), type(storage).__name__
