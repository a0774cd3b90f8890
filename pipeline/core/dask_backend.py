"""Dask distributed as a ``concurrent.futures`` executor (optional backend)."""

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from pipeline.core.errors import BackendMissing, ConfigError

CONNECT_SECONDS = 5
INSTALL_HINT = "pip install 'atomsieve[dask]'  (or: pip install 'dask[distributed]')"


@contextmanager
def dask_executor(workers: int, address: str | None) -> Iterator[Executor]:
    """An executor on the scheduler at ``address``, or on a local cluster of
    ``workers`` single-threaded worker processes when ``address`` is None."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise BackendMissing(f"runtime.executor=dask needs Dask distributed: {INSTALL_HINT}") from err
    if address:
        try:
            client = Client(address, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as err:
            raise ConfigError(f"runtime.dask.address: no Dask scheduler answered at {address} within "
                              f"{CONNECT_SECONDS} s ({type(err).__name__}: {err}); start one (`dask scheduler`) "
                              "or set runtime.dask.address=null for a local cluster") from err
        with client:
            yield client.get_executor(pure=False)
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client.get_executor(pure=False)
