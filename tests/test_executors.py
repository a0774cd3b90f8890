"""Executors: serial, process pool and a real Dask cluster give the serial results."""

import os
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from conftest import labelled_si, require

from pipeline.atoms.hashing import image_hash
from pipeline.core.errors import ConfigError
from pipeline.core.executors import open_executor, worker_resource
from pipeline.core.fanout import get_or_compute
from pipeline.core.store import Store


class Counter:
    made = 0

    def __init__(self, tag):
        Counter.made += 1
        self.tag, self.pid, self.serial = tag, os.getpid(), Counter.made


def pid_and_serial(tag):
    r = worker_resource(Counter, tag)
    return r.pid, r.serial


def images():
    return [labelled_si(s, (1 + s % 2, 1, 1)) for s in range(12)]


@pytest.mark.parametrize("kind", ["serial", "process"])
def test_local_executors_equal_serial_results(kind):
    with open_executor(kind, 2, None) as ex:
        got = list(ex.map(image_hash, images()))
    assert got == [image_hash(a) for a in images()]


def test_resource_is_made_once_per_worker():
    with open_executor("process", 2, None) as ex:
        seen = list(ex.map(pid_and_serial, ["kim"] * 40))
    by_pid = {}
    for pid, serial in seen:
        by_pid.setdefault(pid, set()).add(serial)
    assert 1 <= len(by_pid) <= 2 and all(s == {1} for s in by_pid.values())


def test_bad_executor_options():
    with pytest.raises(ConfigError, match=r"runtime.executor: expected one of \['dask', 'process', 'serial'\]"):
        with open_executor("mpi", 0, None):
            pass
    with pytest.raises(ConfigError, match="runtime.workers"):
        with open_executor("process", -1, None):
            pass


@pytest.fixture
def dask_cluster(tmp_path):
    require("distributed", "the Dask test needs dask[distributed] (in the dev extras)")
    bindir = Path(sys.executable).parent
    dask = shutil.which("dask", path=str(bindir)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the `dask` command is not installed")
    sched_file = tmp_path / "scheduler.json"
    here = Path(__file__).resolve().parent  # workers import this module's helpers by name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                              env=env, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
                                           "--no-dashboard", "--host", "127.0.0.1"],
                                          env=env, stderr=subprocess.DEVNULL))
        import json

        from distributed import Client

        address = json.loads(sched_file.read_text())["address"]
        with Client(address) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


@pytest.mark.heavy
def test_dask_cluster_equals_serial(dask_cluster, tmp_path):
    frames = images()
    expected = [image_hash(a) for a in frames]
    from pipeline.core.dask_backend import DaskSpec

    with open_executor("dask", 2, DaskSpec("address", dask_cluster, (), 1, "{}")) as ex:
        got = list(ex.map(image_hash, frames))
        workers = {pid for pid, _ in ex.map(pid_and_serial, ["kim"] * 20)}
        fetched = get_or_compute(Store(tmp_path), [f"{i:040x}" for i in range(len(frames))], frames, _hash_array,
                                 executor=lambda: nullcontext(ex))
    assert got == expected
    assert 1 <= len(workers) <= 2 and os.getpid() not in workers
    assert [bytes(r["h"]).decode() for r in fetched.results] == expected


def _hash_array(atoms):
    import numpy as np

    return {"h": np.frombuffer(image_hash(atoms).encode(), dtype=np.uint8)}
