"""The content-addressed store: round trips, damage, crashes, concurrency, packs."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipeline.core.fanout import get_or_compute
from pipeline.core.store import Store, decode, entry_key, fingerprint

WRITER = """
import sys, numpy as np
from pipeline.core.store import Store
store, first, count, size = Store(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(first, first + count):
    store.put(f"{i:040x}", {"x": np.full(size, float(i)), "i": np.array([i])})
print("done", flush=True)
"""


def expected(i, size):
    return {"x": np.full(size, float(i)), "i": np.array([i])}


def check_entries(store, size):
    """Every loose entry on disk decodes and holds exactly what its writer meant."""
    seen = 0
    for path in (store.root / "objects").glob("*/*.npz"):
        arrays = decode(path.stem, path.read_bytes())
        i = int(path.stem, 16)
        np.testing.assert_array_equal(arrays["x"], expected(i, size)["x"])
        seen += 1
    return seen


def test_fingerprint_is_canonical_and_key_separates_images():
    assert fingerprint("fim", {"a": 1, "b": [1, 2]}, "c") == fingerprint("fim", {"b": [1, 2], "a": 1}, "c")
    assert fingerprint("fim", {"a": 1}, "c") != fingerprint("fim", {"a": 1.5}, "c")
    assert fingerprint("fim", {"a": 1}, "c") != fingerprint("descriptor", {"a": 1}, "c")
    assert fingerprint("fim", {"a": 1}, "c") != fingerprint("fim", {"a": 1}, "other code")
    fp = fingerprint("fim", {}, "c")
    assert entry_key("v1-a", fp) != entry_key("v1-b", fp)


def test_round_trip_is_exact_and_read_only(tmp_path):
    store = Store(tmp_path)
    arrays = {"f": np.arange(12.0).reshape(3, 4), "n": np.array([1, 2], dtype=np.int32)}
    store.put("k" * 40, arrays)
    got = store.get("k" * 40)
    assert got.keys() == arrays.keys()
    for name in arrays:
        np.testing.assert_array_equal(got[name], arrays[name])
        assert got[name].dtype == arrays[name].dtype and not got[name].flags.writeable
    assert store.get("j" * 40) is None


def test_objects_are_refused(tmp_path):
    from pipeline.core.errors import StoreError

    with pytest.raises(StoreError, match="numeric numpy array"):
        Store(tmp_path).put("a" * 40, {"x": np.array([object()])})


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "wrong-key"])
def test_damaged_entry_is_missing_with_a_warning_then_recomputed(tmp_path, caplog, damage):
    store = Store(tmp_path)
    key = "a" * 40
    store.put(key, {"x": np.arange(1000.0)})
    path = store._loose(key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        i = data.index(np.arange(1000.0)[500:501].tobytes())
        path.write_bytes(data[:i] + b"\x00" * 8 + data[i + 8:])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    else:
        other = tmp_path / "other"
        Store(other).put("b" * 40, {"x": np.arange(1000.0)})
        path.write_bytes(Store(other)._loose("b" * 40).read_bytes())
    assert store.get(key) is None
    assert "damaged entry" in caplog.text
    calls = []
    fetched = get_or_compute(store, [key], [7], lambda p: calls.append(p) or {"x": np.arange(float(p))})
    assert calls == [7] and fetched.computed == 1
    np.testing.assert_array_equal(store.get(key)["x"], np.arange(7.0))


def test_get_or_compute_computes_only_missing_keys(tmp_path):
    store = Store(tmp_path)
    square = lambda p: {"y": np.array([p * p])}  # noqa: E731
    first = get_or_compute(store, ["k1", "k2"], [2, 3], square)
    assert first.computed == 2 and [r["y"][0] for r in first.results] == [4, 9]
    calls = []
    again = get_or_compute(store, ["k2", "k3", "k1", "k3"], [3, 4, 2, 4],
                                 lambda p: calls.append(p) or square(p), executor=lambda: ThreadPoolExecutor(2))
    assert calls == [4] and again.computed == 1
    assert [r["y"][0] for r in again.results] == [9, 16, 4, 16]


@pytest.mark.heavy
def test_sigkill_mid_write_leaves_no_readable_corrupt_entry(tmp_path):
    size = 2_000_000  # 16 MB per entry: each write takes long enough to be interrupted
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(100 * round_), "50", str(size)], env=env)
        time.sleep(0.8 + 0.23 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = Store(tmp_path)
    written = check_entries(store, size)
    assert written > 0
    leftovers = list((tmp_path / "tmp").glob("*.tmp"))
    assert leftovers, "no write was interrupted: the test did not test a crash"
    for i in range(600):  # every key reads as absent or as its full, correct value
        got = store.get(f"{i:040x}")
        if got is not None:
            np.testing.assert_array_equal(got["x"], expected(i, size)["x"])
    assert store.gc(stale_seconds=0)["temp_files"] == len(leftovers)


@pytest.mark.heavy
def test_two_processes_writing_the_same_keys(tmp_path):
    size = 200_000
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "0", "60", str(size)],
                              env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.communicate()[0].strip() for p in procs] == ["done", "done"]
    assert check_entries(Store(tmp_path), size) == 60
    assert not list((tmp_path / "tmp").glob("*.tmp"))


def test_pack_then_lookup_without_loose_files(tmp_path):
    store = Store(tmp_path)
    for i in range(30):
        store.put(f"{i:040x}", expected(i, 10))
    assert store.pack() == 30
    assert not list((tmp_path / "objects").glob("*/*.npz"))
    store.put(f"{99:040x}", expected(99, 10))
    fresh = Store(tmp_path)
    for i in list(range(30)) + [99]:
        np.testing.assert_array_equal(fresh.get(f"{i:040x}")["x"], expected(i, 10)["x"])
    info = fresh.info()
    assert (info.packs, info.packed_entries, info.loose_entries) == (1, 30, 1)
    assert fresh.pack() == 31  # a repack gathers the pack and the loose entry into one
    assert fresh.info().packs == 1 and Store(tmp_path).get(f"{99:040x}") is not None


def test_pack_index_is_read_once(tmp_path, monkeypatch):
    store = Store(tmp_path)
    for i in range(5):
        store.put(f"{i:040x}", expected(i, 3))
    store.pack()
    reader = Store(tmp_path)
    reads = []
    real = type(tmp_path).read_text
    monkeypatch.setattr(type(tmp_path), "read_text", lambda self, *a, **k: reads.append(self) or real(self, *a, **k))
    for i in range(5):
        assert reader.get(f"{i:040x}") is not None
    assert len([p for p in reads if p.suffix == ".idx"]) == 1


def test_results_are_stored_in_segments_and_read_back_by_a_new_reader(tmp_path):
    store = Store(tmp_path)
    keys = [f"{i:040x}" for i in range(600)]
    fetched = get_or_compute(store, keys, list(range(600)), lambda i: expected(i, 4))
    assert fetched.computed == 600
    info = Store(tmp_path).info()
    assert (info.loose_entries, info.packs, info.packed_entries) == (0, 3, 600)  # 256 + 256 + 88
    fresh = Store(tmp_path)
    for i in (0, 255, 256, 599):
        np.testing.assert_array_equal(fresh.get(keys[i])["x"], expected(i, 4)["x"])
    assert get_or_compute(fresh, keys, list(range(600)), lambda i: pytest.fail("recomputed")).computed == 0


def test_a_failing_run_keeps_what_it_finished(tmp_path):
    keys = [f"{i:040x}" for i in range(50)]

    def fails_at_30(i):
        if i == 30:
            raise RuntimeError("boom")
        return expected(i, 4)

    with pytest.raises(RuntimeError, match="boom"):
        get_or_compute(Store(tmp_path), keys, list(range(50)), fails_at_30)
    calls = []
    again = get_or_compute(Store(tmp_path), keys, list(range(50)), lambda i: calls.append(i) or expected(i, 4))
    assert calls == list(range(30, 50)) and again.computed == 20


def test_a_recomputed_packed_entry_wins_over_its_damaged_copy(tmp_path, caplog):
    store, key = Store(tmp_path), "c" * 40
    get_or_compute(store, [key], [5], lambda i: expected(i, 1000))
    pack = next((tmp_path / "packs").glob("*.pack"))
    data = pack.read_bytes()
    i = data.index(np.full(1, 5.0).tobytes() * 8)
    pack.write_bytes(data[:i] + b"\x00" * 8 + data[i + 8:])
    fresh = Store(tmp_path)
    assert get_or_compute(fresh, [key], [6], lambda i: expected(i, 1000)).computed == 1
    assert "damaged packed entry" in caplog.text
    np.testing.assert_array_equal(Store(tmp_path).get(key)["x"], expected(6, 1000)["x"])
    assert Store(tmp_path).pack() == 1 and Store(tmp_path).get(key)["x"][0] == 6.0
    assert Store(tmp_path).info().packs == 1  # the superseded segment went too


SEGMENT_WRITER = """
import sys, time, numpy as np
from pipeline.core.store import Store
from pipeline.core.fanout import get_or_compute
keys = [f"{i:040x}" for i in range(2000)]
def slow(i):
    time.sleep(0.002)
    return {"x": np.full(100_000, float(i)), "i": np.array([i])}
get_or_compute(Store(sys.argv[1]), keys, list(range(2000)), slow)
"""


@pytest.mark.heavy
def test_sigkill_mid_run_loses_at_most_the_unwritten_segment(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", SEGMENT_WRITER, str(tmp_path)], env=env)
    time.sleep(4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store, readable = Store(tmp_path), 0
    for i in range(2000):  # every key reads as absent or as its full, correct value
        got = store.get(f"{i:040x}")
        if got is not None:
            np.testing.assert_array_equal(got["x"], expected(i, 100_000)["x"])
            readable += 1
    assert 0 < readable < 2000, "the run was not interrupted between segments"
    store.gc(stale_seconds=0)
    assert not list((tmp_path / "tmp").glob("*.tmp"))
    assert all(p.with_suffix(".idx").exists() for p in (tmp_path / "packs").glob("*.pack"))
