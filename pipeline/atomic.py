"""Atomic file writes: a reader sees the old file, the whole new one, or nothing.

Data goes to a temporary file in the target's directory, is flushed and fsynced, and
is renamed over the target; the directory is then fsynced so the rename is durable.
"""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"


def temp_name(path: Path) -> Path:
    """A unique temporary sibling of ``path`` (same filesystem, hidden, ``.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` and rename it to ``path`` atomically."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, tmp_dir: Path | None = None, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in ``tmp_dir`` or beside it).

    The file is always fsynced before the rename, so a crash never leaves a partial
    file at ``path``; ``durable`` also fsyncs the directory, so that the rename itself
    survives a power cut (a cache entry lost that way is only recomputed)."""
    tmp = temp_name(path) if tmp_dir is None else tmp_dir / temp_name(path).name
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


@contextmanager
def staged(paths: list[Path]) -> Iterator[list[Path]]:
    """Temporary paths for several outputs, all renamed into place only if the block
    finishes without error; on error every temporary file is removed, and so are
    directories this call created."""
    made = [d for d in {p.parent for p in paths} if not d.exists()]
    for d in made:
        d.mkdir(parents=True)
    tmps = [temp_name(p) for p in paths]
    ok = False
    try:
        yield tmps
        for tmp, path in zip(tmps, paths):
            commit(tmp, path)
        ok = True
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        for d in made if not ok else ():
            if not any(d.iterdir()):
                d.rmdir()
