"""Fan-out of per-image work through the store: compute only what it lacks, on the
configured executor, and store the results as they arrive.

Results are stored in segments (packs of up to SEGMENT_ENTRIES entries,
SEGMENT_BYTES or SEGMENT_SECONDS of work, one fsync each instead of one per entry), and
what is buffered is stored also when the run fails or is interrupted; a killed run
loses at most one segment's work. The store is a cache: a write that fails is warned
about, and the results are still returned.
"""

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, as_completed
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from tqdm.auto import tqdm

from pipeline.core.errors import StoreError
from pipeline.core.executors import SerialExecutor
from pipeline.core.store import Arrays, Shapes, Store, conformity, encode, frozen

log = logging.getLogger(__name__)
SEGMENT_ENTRIES = 256
SEGMENT_BYTES = 64 << 20
SEGMENT_SECONDS = 5.0


@dataclass(frozen=True)
class Fetched:
    """Results of :func:`get_or_compute`, in item order, and how many were computed."""

    results: tuple[Arrays, ...]
    computed: int



def get_or_compute(
    store: Store,
    keys: Sequence[str],
    payloads: Sequence,
    fn: Callable[..., Arrays],
    executor: Callable[[], AbstractContextManager[Executor]] | None = None,
    desc: str = "computing",
    shapes: Callable[..., Shapes] | None = None,
) -> Fetched:
    """``fn(payload)`` for every key not yet stored; stored results for the rest.

    ``executor`` makes the executor to submit work to (e.g. a
    :class:`pipeline.core.executors.ExecutorSpec`, whose ``count`` is its number of
    workers, and ``min_parallel_seconds``, their start-up cost); with None, work is
    done here. Where that cost is > 0, the first missing items (up to 3) are computed
    here and timed, and the executor is made only if it pays: if the rest split among
    the workers, plus the start-up, is expected to take less than the rest here. Results are stored in
    segments as they arrive, and what is buffered is stored also when the run
    fails or is interrupted; a killed run loses at most one segment's work.

    The store checks what it serves: an entry that is not what ``fn`` returns (every
    array float64 and finite, and the names and shapes ``shapes(payload)`` declares) is
    dropped, said, and recomputed; a result that is not is returned but not stored.
    """
    min_parallel_seconds = getattr(executor, "min_parallel_seconds", 0.0)  # a bare maker: always start it
    if len(keys) != len(payloads):
        raise ValueError(f"{len(keys)} keys but {len(payloads)} payloads")
    results: list[Arrays | None] = store.get_many(keys)
    for i, (k, r) in enumerate(zip(keys, results)):
        bad = conformity(r, shapes(payloads[i]) if shapes else None) if r is not None else ""
        if bad:
            log.warning("store: entry %s is not what %s computes (%s); it is recomputed", k, desc, bad)
            store.discard_key(k)
            results[i] = None
    todo: dict[str, int] = {}
    for i, (k, r) in enumerate(zip(keys, results)):
        if r is None:
            todo.setdefault(k, i)
    pending = list(todo.items())
    buffer: dict[str, bytes] = {}
    failed: list[StoreError] = []
    flushed, size = time.monotonic(), 0

    def flush() -> None:
        nonlocal flushed, size
        if not failed:
            try:
                store.put_segment(buffer)
            except StoreError as err:  # a cache: the results are still returned, not kept
                failed.append(err)
                log.warning("%s; this run's results are used but not cached", err)
        buffer.clear()
        flushed, size = time.monotonic(), 0

    with tqdm(total=len(todo), desc=desc, disable=None if todo else True, leave=False) as bar:  # terminal only

        def keep(key: str, arrays: Arrays) -> None:
            nonlocal size
            results[todo[key]] = frozen(arrays)
            bad = conformity(arrays, shapes(payloads[todo[key]]) if shapes else None)
            if bad:
                log.warning("%s: a result is not stored (%s)", desc, bad)
                bar.update()
                return
            buffer[key] = encode(key, arrays)
            size += len(buffer[key])
            bar.update()
            full = len(buffer) >= SEGMENT_ENTRIES or size >= SEGMENT_BYTES
            if full or time.monotonic() - flushed > SEGMENT_SECONDS:
                flush()

        try:
            if executor is not None and min_parallel_seconds > 0 and pending:
                timed: list[float] = []
                while pending and len(timed) < 3 and sum(timed) < min_parallel_seconds:
                    (key, i), pending = pending[0], pending[1:]
                    start = time.perf_counter()
                    keep(key, fn(payloads[i]))
                    timed.append(time.perf_counter() - start)
                rest, workers = min(timed) * len(pending), getattr(executor, "count", os.cpu_count() or 1)
                if workers < 2 or min_parallel_seconds + rest / workers >= rest:
                    log.info("%s: %d items left (about %.2g s), too little work to start %d workers; "
                             "computing here", desc, len(pending), rest, workers)
                    executor = None
            with executor() if pending and executor is not None else nullcontext(None) as ex:
                for key, arrays in _compute(pending, payloads, fn, ex):
                    keep(key, arrays)
        finally:
            flush()
    done = {k: results[i] for k, i in todo.items()}
    return Fetched(tuple(r if r is not None else done[k] for k, r in zip(keys, results)), len(todo))

def _compute(pending, payloads, fn, executor) -> Iterator[tuple[str, Arrays]]:
    if executor is None or isinstance(executor, SerialExecutor):  # one at a time, so each is stored as it ends
        for key, i in pending:
            yield key, fn(payloads[i])
        return
    futures = {executor.submit(fn, payloads[i]): key for key, i in pending}
    try:
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        for fut in futures:
            fut.cancel()
