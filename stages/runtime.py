"""Where a stage's work runs and where its per-image results are cached: neither is a
stage parameter, since neither changes a result.

A relative ``store.path`` is taken from the project root, not the working directory:
DVC runs queued and ``--temp`` experiments in copies of the project under
``.dvc/tmp/exps/``, and every one of them must share the project's one store.
"""

from pathlib import Path

from pipeline.core.store import Store
from stages.common import project_root
from stages.schema import Config


def store_of(cfg: Config) -> Store:
    """The project's store; a relative ``store.path`` is taken from :func:`project_root`."""
    return Store(project_root() / Path(cfg.store.path).expanduser())


def workers_of(value) -> int:
    """``runtime.workers`` as a count: ``auto`` (or the legacy 0) is 0, which the
    executors read as the allocated cores."""
    from pipeline.core.errors import ConfigError

    if value in ("auto", 0):
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"runtime.workers: expected auto or a count >= 1, got {value!r}")
    return value


def dask_of(d):
    import json

    from pipeline.core.dask_backend import DaskSpec

    return DaskSpec(d.cluster, d.address, tuple(d.hosts), d.jobs, json.dumps(d.cluster_kwargs, sort_keys=True))


def executor_factory(runtime):
    """The configured executor's maker, for pipeline.core.fanout.get_or_compute."""
    from pipeline.core.executors import ExecutorSpec

    return ExecutorSpec(runtime.executor, workers_of(runtime.workers),
                        dask_of(runtime.dask) if runtime.executor == "dask" else None, runtime.min_parallel_seconds)
