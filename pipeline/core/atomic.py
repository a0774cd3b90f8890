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


def open_new(path: Path):
    """``path`` opened for binary writing, created here and now: never an existing file,
    and never through a symbolic link planted at that name."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    return os.fdopen(fd, "wb")


def write_bytes(path: Path, data: bytes, tmp_dir: Path | None = None, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in ``tmp_dir`` or beside it).

    The file is always fsynced before the rename, so a crash never leaves a partial
    file at ``path``; ``durable`` also fsyncs the directory, so that the rename itself
    survives a power cut (a cache entry lost that way is only recomputed)."""
    tmp = temp_name(path) if tmp_dir is None else tmp_dir / temp_name(path).name
    try:
        with open_new(tmp) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> int:
    """Remove the temporary siblings of ``path`` (:func:`temp_name`) that a killed
    writer left behind: those whose process is gone. Returns how many."""
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        parts = tmp.name[len(path.name) + 2:].split(".")
        if len(parts) == 3 and parts[0].isdigit() and not _alive(int(parts[0])):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def staged(paths: list[Path]) -> Iterator[list[Path]]:
    """Temporary paths for several outputs, all renamed into place only if the block
    finishes without error; on error every temporary file is removed, and so are
    directories this call created. Temporary files that a killed earlier writer of
    these outputs left are removed first."""
    for path in paths:
        if path.parent.is_dir():
            remove_stale_temps(path)
    made = [d for d in {p.parent for p in paths} if not d.exists()]
    for d in made:
        d.mkdir(parents=True)
    tmps = [temp_name(p) for p in paths]
    ok = False
    try:
        for tmp in tmps:  # made here, empty: whoever writes them writes our own new file
            open_new(tmp).close()
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
