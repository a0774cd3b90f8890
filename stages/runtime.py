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


def executor_factory(runtime):
    """The configured executor's maker, for pipeline.core.fanout.get_or_compute."""
    from pipeline.core.executors import ExecutorSpec

    return ExecutorSpec(runtime.executor, runtime.workers, runtime.dask.address, runtime.min_parallel_seconds)
