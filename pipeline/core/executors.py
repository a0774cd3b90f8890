"""Where per-image work runs: a ``concurrent.futures.Executor`` chosen by name.

- ``serial``: in this process, in submission order (for debugging and tiny inputs).
- ``process``: a local process pool (the default), started by forkserver so workers
  never inherit threads or open KIM models.
- ``dask``: Dask distributed on the cluster a ``DaskSpec`` names: local, a running
  scheduler, SSH hosts, SLURM or PBS (:mod:`pipeline.core.dask_backend`, imported
  only when chosen).

Worker counts: 0 means the cores this job was given (:func:`allocated_cores`: the batch
system's allocation, else the affinity mask), as Amp's assign_cores read them.

Objects that cannot be pickled (a KIM model, an ASE calculator) are made inside the
worker with :func:`worker_resource`, once per worker thread, and reused.
"""

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from pipeline.core.errors import ConfigError, check_choice

EXECUTORS = ("serial", "process", "dask")
T = TypeVar("T")
_local = threading.local()


class SerialExecutor(Executor):
    """Runs each task when it is submitted, in the calling thread."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # delivered through the future, as pools do
            future.set_exception(err)
        return future


ALLOCATION = (("SLURM_CPUS_PER_TASK", "SLURM's cores per task"), ("SLURM_NTASKS", "SLURM's tasks"),
              ("PBS_NP", "PBS's processors"), ("NSLOTS", "Grid Engine's slots"))


def allocated_cores(environ=None) -> int:
    """The cores this job may use: the first batch-system variable of :data:`ALLOCATION`
    that is set, else the CPU affinity mask (what ``taskset`` or a container allows)."""
    environ = os.environ if environ is None else environ
    for name, what in ALLOCATION:
        if environ.get(name):
            try:
                value = int(environ[name])
            except ValueError:
                raise ConfigError(f"runtime.workers=auto: {name}={environ[name]!r} ({what}) is not a count") from None
            if value >= 1:
                return value
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else multiprocessing.cpu_count()


@contextmanager
def open_executor(kind: str, workers: int, dask) -> Iterator[Executor]:
    """An executor of ``kind`` with ``workers`` workers (0: :func:`allocated_cores`), shut
    down on exit; ``dask`` (a ``DaskSpec``; None: a local cluster) for ``kind="dask"``."""
    check_choice("runtime.executor", kind, EXECUTORS)
    if workers < 0:
        raise ConfigError(f"runtime.workers: expected auto, or 1 or more, got {workers}")
    n = workers or allocated_cores()
    if kind == "serial":
        yield SerialExecutor()
    elif kind == "process":
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("forkserver"),
                                 initializer=exit_with, initargs=(os.getpid(),)) as pool:
            yield pool
    else:
        from pipeline.core.dask_backend import DaskSpec, dask_executor

        with dask_executor(n, dask or DaskSpec("local", None, (), 1, "{}")) as pool:
            yield pool


@dataclass(frozen=True)
class ExecutorSpec:
    """A maker of an executor (``spec()`` opens it, see :func:`open_executor`) that
    knows its worker count and their start-up cost, so callers can tell whether
    starting it pays (:func:`pipeline.core.fanout.get_or_compute`)."""

    kind: str
    workers: int  # 0: allocated_cores()
    dask: object  # a pipeline.core.dask_backend.DaskSpec, or None: a local cluster
    min_parallel_seconds: float  # start-up cost of the workers, s; 0: always start them

    @property
    def count(self) -> int:
        return self.workers or allocated_cores()

    def __call__(self):
        return open_executor(self.kind, self.workers, self.dask)


def exit_with(parent: int, every: float = 1.0) -> None:
    """In a worker: end this process within ``every`` seconds of process ``parent``'s end
    (a killed stage must not leave its workers behind, each holding a model)."""
    def watch() -> None:
        while True:
            time.sleep(every)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid was reused by another user's process
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_resource(factory: Callable[..., T], *args: Hashable) -> T:
    """``factory(*args)``, made once per worker thread and then reused."""
    cache = _local.__dict__.setdefault("resources", {})
    key = (factory.__module__, factory.__qualname__, args)
    if key not in cache:
        cache[key] = factory(*args)
    return cache[key]
