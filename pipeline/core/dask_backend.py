"""Dask distributed as a ``concurrent.futures`` executor (optional backend), on the
cluster a :class:`DaskSpec` names:

- ``local``: single-threaded worker processes on this machine;
- ``address``: a running scheduler (``tcp://host:8786``);
- ``ssh``: Dask's ``SSHCluster`` over ``hosts`` (the first runs the scheduler, each
  one workers), what Amp's setup_parallel did with pxssh and ZMQ;
- ``slurm`` / ``pbs``: dask-jobqueue's ``SLURMCluster`` / ``PBSCluster``, ``jobs``
  batch jobs submitted.

``kwargs`` (canonical JSON) are the cluster class's own keyword arguments, passed
through; one it refuses is a :class:`ConfigError` naming it.
"""

import json
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass

from pipeline.core.errors import BackendMissing, ConfigError, check_choice

CONNECT_SECONDS = 5
INSTALL_HINT = "pip install 'atomsieve[dask]'  (or: pip install 'dask[distributed]')"
CLUSTERS = ("local", "address", "ssh", "slurm", "pbs")


@dataclass(frozen=True)
class DaskSpec:
    """Which Dask cluster (defaults: stages/schema.py DaskConfig)."""

    cluster: str
    address: str | None
    hosts: tuple[str, ...]
    jobs: int
    kwargs: str  # canonical JSON of the cluster class's keyword arguments


def check(spec: DaskSpec) -> None:
    check_choice("runtime.dask.cluster", spec.cluster, CLUSTERS)
    if (spec.cluster == "address") != bool(spec.address):
        raise ConfigError(f"runtime.dask: cluster=address goes with an address, and an address with cluster=address; "
                          f"got cluster={spec.cluster}, address={spec.address}")
    if spec.cluster == "ssh" and not spec.hosts:
        raise ConfigError("runtime.dask.hosts: cluster=ssh needs at least one host (the first runs the scheduler)")
    if spec.cluster in ("slurm", "pbs") and spec.jobs < 1:
        raise ConfigError(f"runtime.dask.jobs: expected at least 1 batch job, got {spec.jobs}")


def probe(spec: DaskSpec) -> None:
    """Refuse, within CONNECT_SECONDS, a scheduler address or SSH host nothing answers at
    (before anything is queued that would fail there later)."""
    import socket
    from urllib.parse import urlparse

    if spec.cluster == "address":
        url = urlparse(spec.address if "://" in spec.address else f"tcp://{spec.address}")
        targets, key = [(url.hostname, url.port or 8786)], "runtime.dask.address"
    elif spec.cluster == "ssh":
        port = int((json.loads(spec.kwargs).get("connect_options") or {}).get("port", 22))
        targets, key = [(h, port) for h in dict.fromkeys(spec.hosts)], "runtime.dask.hosts"
    else:
        return
    for host, port in targets:
        try:
            socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
        except OSError as err:
            raise ConfigError(f"{key}: nothing answers at {host}:{port} ({type(err).__name__}: {err})") from err


def jobqueue_cluster(kind: str, kwargs: dict):
    """dask-jobqueue's cluster object of ``kind`` (slurm | pbs), no job submitted yet;
    its ``job_script()`` is what a submission would run."""
    try:
        import dask_jobqueue
    except ImportError as err:
        raise BackendMissing(f"runtime.dask.cluster={kind} needs dask-jobqueue: pip install dask-jobqueue") from err
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"runtime.dask.cluster_kwargs: {cls.__name__} refuses {kwargs}: {err}") from err


def _ssh_cluster(spec: DaskSpec, workers: int, kwargs: dict):
    try:
        from distributed import SSHCluster
    except ImportError as err:
        raise BackendMissing(f"runtime.dask.cluster=ssh needs Dask distributed and asyncssh: {INSTALL_HINT} asyncssh") \
            from err
    defaults = {"connect_options": {"known_hosts": None, "connect_timeout": CONNECT_SECONDS},
                "worker_options": {"nthreads": 1, "n_workers": workers}, "scheduler_options": {"dashboard_address": None}}
    options = {**defaults, **kwargs}
    for key, value in defaults.items():  # the user's options of a group are added to, not instead of, ours
        options[key] = {**value, **dict(kwargs.get(key) or {})}
    try:
        return SSHCluster(list(spec.hosts), **options)
    except (OSError, TimeoutError, RuntimeError) as err:  # SSHCluster: RuntimeError("Cluster failed to start")
        raise ConfigError(f"runtime.dask.hosts: cannot start Dask over SSH on {list(spec.hosts)} "
                          f"({type(err).__name__}: {err}); check the host, the key and that the same Python "
                          "(with atomsieve) is at remote_python") from err
    except TypeError as err:
        raise ConfigError(f"runtime.dask.cluster_kwargs: SSHCluster refuses {kwargs}: {err}") from err


@contextmanager
def _connected(address: str, what: str):
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as err:
        raise ConfigError(f"{what}: no Dask scheduler answered at {address} within {CONNECT_SECONDS} s "
                          f"({type(err).__name__}: {err}); start one (`dask scheduler`) or use "
                          "runtime.dask.cluster=local") from err
    with client:
        yield client.get_executor(pure=False)


@contextmanager
def dask_executor(workers: int, spec: DaskSpec) -> Iterator[Executor]:
    """An executor on the cluster ``spec`` names; ``workers`` worker processes where
    atomsieve starts them (local, ssh: per host)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise BackendMissing(f"runtime.executor=dask needs Dask distributed: {INSTALL_HINT}") from err
    check(spec)
    kwargs = json.loads(spec.kwargs)
    if spec.cluster == "address":
        with _connected(spec.address, "runtime.dask.address") as pool:
            yield pool
        return
    if spec.cluster == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               **kwargs)
    elif spec.cluster == "ssh":
        cluster = _ssh_cluster(spec, workers, kwargs)
    else:
        cluster = jobqueue_cluster(spec.cluster, kwargs)
        cluster.scale(jobs=spec.jobs)
    with cluster, Client(cluster) as client:
        yield client.get_executor(pure=False)
