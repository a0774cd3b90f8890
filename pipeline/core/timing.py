"""Labelled wall-clock timers, logged as they finish and reported in summaries."""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Timers:
    """``with timers("read"): ...`` adds the block's seconds under ``"read"`` when the
    block finishes (a failed block is not timed)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self.seconds[label] = self.seconds.get(label, 0.0) + elapsed
        log.info("%s: %.3f s", label, elapsed)

    def as_dict(self) -> dict[str, float]:
        """Seconds per label, rounded to the millisecond, plus their total."""
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["total"] = round(sum(self.seconds.values()), 3)
        return out
