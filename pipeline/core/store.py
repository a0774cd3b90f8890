"""Content-addressed store of per-image results (numpy arrays in .npz, never pickle).

The key of an entry is the hash of an image identity and a computation fingerprint
(kind, parameters, and the identity of the code that computes it: see
:mod:`pipeline.core.code_identity`). Entries are written atomically, so several
processes may write, even the same key, at once; a reader verifies every entry (key
and content digest) and treats a damaged one as missing. ``put`` writes one loose
entry; ``put_segment`` writes many as one pack with one fsync (what
:func:`pipeline.core.fanout.get_or_compute` uses). ``pack`` gathers every entry into
one pack. Lookups read each index once.

Layout under the root::

    objects/ab/<key>.npz        loose entries
    packs/pack-<ns>-<id>.pack   concatenated entries (<ns>: creation time, so later wins)
    packs/pack-<ns>-<id>.idx    JSON index {key: [offset, length]}, written last
    tmp/                        writes in progress
"""

import fcntl
import hashlib
import io
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.atomic import TMP_SUFFIX, fsync_dir, write_bytes
from pipeline.core.errors import StoreError

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
_META = "__atomsieve__"
STORE_FORMAT = 1
STALE_TMP_SECONDS = 3600.0


def canonical_json(value) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def fingerprint(kind: str, params: Mapping, code: str) -> str:
    """Canonical fingerprint of a computation: its kind, its parameters and ``code``, the
    identity of what computes it (:func:`pipeline.core.code_identity.code_digest`)."""
    text = canonical_json({"kind": kind, "params": dict(params), "code": code})
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def entry_key(image_hash: str, computation: str) -> str:
    """Store key of one image under one computation fingerprint."""
    return hashlib.blake2b(f"{image_hash}\0{computation}".encode(), digest_size=20).hexdigest()


def _digest(arrays: Arrays) -> str:
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def encode(key: str, arrays: Arrays) -> bytes:
    """The .npz bytes of an entry: the arrays plus a metadata record."""
    for name, a in arrays.items():
        if name == _META or not isinstance(a, np.ndarray) or a.dtype.hasobject:
            raise StoreError(f"entry {key}: {name!r} must be a numeric numpy array, got {type(a).__name__}")
    meta = canonical_json({"key": key, "digest": _digest(arrays), "format": STORE_FORMAT})
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_META: np.frombuffer(meta.encode(), dtype=np.uint8)})
    return buf.getvalue()


def decode(key: str, data: bytes) -> Arrays:
    """Arrays of an entry, read-only; raises ``ValueError`` if it is damaged."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(arrays.pop(_META).tobytes())
    except Exception as err:  # zip, npy and JSON errors all mean a damaged entry
        raise ValueError(f"unreadable: {type(err).__name__}: {err}") from err
    if meta.get("key") != key:
        raise ValueError(f"holds key {meta.get('key')!r}")
    if meta.get("digest") != _digest(arrays):
        raise ValueError("content digest mismatch")
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


Shapes = Mapping[str, tuple[int | None, ...]]  # what a computation declares it returns: name -> shape (None: any)


def conformity(arrays: Arrays, shapes: Shapes | None = None) -> str:
    """Why an entry is not what a computation returns ("" if it is): floating arrays float64 and
    finite; given ``shapes``, exactly those names, float64, with those shapes."""
    for name, a in arrays.items():
        if a.dtype.kind == "f" and a.dtype != np.float64 or shapes is not None and a.dtype != np.float64:
            return f"{name!r} is {a.dtype}, expected float64"
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            return f"{name!r} holds NaN or infinite values"
    if shapes is None:
        return ""
    if set(arrays) != set(shapes):
        return f"holds {sorted(arrays)}, expected {sorted(shapes)}"
    for name, shape in shapes.items():
        got = arrays[name].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            return f"{name!r} has shape {got}, expected {tuple('any' if s is None else s for s in shape)}"
    return ""


def read_index(path: Path) -> dict[str, tuple[int, int]]:
    """A pack index ``{key: [offset, length]}``; ``ValueError`` if it is not one."""
    entries = json.loads(path.read_text())
    if not isinstance(entries, dict):
        raise ValueError(f"expected an object {{key: [offset, length]}}, got {type(entries).__name__}")
    for key, value in entries.items():
        if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int and v >= 0 for v in value)):
            raise ValueError(f"entry {key!r}: expected [offset >= 0, length >= 0], got {value!r}")
    return {k: (v[0], v[1]) for k, v in entries.items()}


def _pack_name() -> str:
    return f"pack-{time.time_ns():020d}-{secrets.token_hex(4)}"


def frozen(arrays: Arrays) -> Arrays:
    """Read-only copies of ``arrays``."""
    out = {name: np.array(a) for name, a in arrays.items()}
    for a in out.values():
        a.setflags(write=False)
    return out


@dataclass(frozen=True)
class StoreInfo:
    loose_entries: int
    loose_bytes: int
    packs: int
    packed_entries: int
    packed_bytes: int
    temp_files: int


MARKER = ".atomsieve-store"  # written in a store's root when it is made: what gc, pack and info look for
SYSTEM = ("/etc", "/usr", "/var", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev", "/proc", "/sys",
          "/run")  # never a store; /var/tmp is
LAYOUT = {"objects", "packs", "tmp", ".lock", MARKER}


def check_place(root: Path) -> None:
    """A store is never in a system folder."""
    resolved = root.expanduser().resolve()
    if resolved.is_relative_to("/var/tmp"):
        return
    for system in SYSTEM:
        if resolved == Path(system) or resolved.is_relative_to(system):
            raise StoreError(f"store.path: {root} is in the system folder {system}; choose a folder of yours "
                             "(the default .atomsieve/store, or e.g. ~/.cache/atomsieve)")


class Store:
    """A content-addressed store rooted at ``root`` (created, with its marker, on first write)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        check_place(self.root)
        self._index: dict[str, tuple[Path, int, int]] = {}
        self._indexed: frozenset[Path] = frozenset()

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            marker = self.root / MARKER
            if not marker.exists():
                marker.write_text(canonical_json({"format": STORE_FORMAT}) + "\n")
        except OSError as err:  # e.g. store.path names a file
            raise StoreError(f"store {self.root}: cannot make the folder {path} ({err.strerror}); "
                             "store.path must name a folder") from err

    def check_is_store(self, action: str) -> None:
        """Refuse a folder that is not a store: it has the marker, or only a store's files (then gets it)."""
        if not self.root.is_dir():
            raise StoreError(f"atomsieve store {action}: {self.root}: no such store")
        if (self.root / MARKER).exists():
            return
        other = sorted(p.name for p in self.root.iterdir() if p.name not in LAYOUT)
        if other:
            raise StoreError(f"atomsieve store {action}: {self.root} is not an atomsieve store (no {MARKER}; it holds "
                             f"{other[:3]}{' ...' if len(other) > 3 else ''}); refusing to touch it")
        self._mkdir(self.root)

    def _loose(self, key: str) -> Path:
        return self.root / "objects" / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Arrays | None:
        """The entry's arrays (read-only), or None if absent or damaged."""
        return self._get(key, reload=True)

    def get_many(self, keys: Sequence[str]) -> list[Arrays | None]:
        """:meth:`get` of every key, the pack indexes read once for all (a miss does not
        look for packs written since)."""
        self._load_index()
        return [self._get(k, reload=False) for k in keys]

    def _get(self, key: str, reload: bool) -> Arrays | None:
        path = self._loose(key)
        try:
            return decode(key, path.read_bytes())
        except FileNotFoundError:
            pass
        except ValueError as err:
            log.warning("store: damaged entry %s (%s); it will be recomputed", path, err)
            self.discard(path)
        return self._get_packed(key) if reload or key in self._index else None

    def discard(self, path: Path) -> None:
        """Remove a bad loose entry; a read-only store keeps it (unused; `store gc` removes it later)."""
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            log.warning("store: cannot remove %s (%s); it is not used", path, err.strerror)

    def discard_key(self, key: str) -> None:
        """Remove ``key``'s loose entry (a packed one is superseded by the next write of the key)."""
        self.discard(self._loose(key))

    def _get_packed(self, key: str) -> Arrays | None:
        for attempt in range(2):
            if key not in self._index or attempt:
                self._load_index()
            if key not in self._index:
                return None
            pack, offset, length = self._index[key]
            try:
                with open(pack, "rb") as f:
                    f.seek(offset)
                    data = f.read(length)
            except FileNotFoundError:  # repacked meanwhile: reload the index once
                continue
            try:
                return decode(key, data)
            except ValueError as err:
                log.warning("store: damaged packed entry %s in %s (%s)", key, pack, err)
                return None
        return None

    def _load_index(self) -> None:
        idx_files = frozenset((self.root / "packs").glob("pack-*.idx"))
        if idx_files == self._indexed:
            return
        index: dict[str, tuple[Path, int, int]] = {}
        for idx in sorted(idx_files):
            try:
                entries = read_index(idx)
            except (OSError, ValueError) as err:
                log.warning("store: damaged pack index %s (%s); ignored, its entries will be recomputed "
                            "(`atomsieve store gc` removes it)", idx, err)
                continue
            pack = idx.with_suffix(".pack")
            index.update({k: (pack, off, n) for k, (off, n) in entries.items()})
        self._index, self._indexed = index, idx_files

    def put(self, key: str, arrays: Arrays) -> None:
        """Write an entry atomically (an existing one with this key is replaced)."""
        data = encode(key, arrays)
        path = self._loose(key)
        self._mkdir(path.parent)
        self._mkdir(self.root / "tmp")
        try:
            write_bytes(path, data, tmp_dir=self.root / "tmp", durable=False)
        except OSError as err:
            raise StoreError(f"store {self.root}: cannot write entry {key}: {err}") from err

    def put_segment(self, entries: Mapping[str, bytes]) -> None:
        """Write encoded entries as one pack (atomic: its index is written last)."""
        if not entries:
            return
        packs, index, offset = self.root / "packs", {}, 0
        for key, data in entries.items():
            index[key] = [offset, len(data)]
            offset += len(data)
        name = _pack_name()
        self._mkdir(packs)
        self._mkdir(self.root / "tmp")
        try:
            write_bytes(packs / f"{name}.pack", b"".join(entries.values()), tmp_dir=self.root / "tmp", durable=False)
            write_bytes(packs / f"{name}.idx", canonical_json(index).encode(), tmp_dir=self.root / "tmp",
                        durable=False)
        except OSError as err:
            raise StoreError(f"store {self.root}: cannot write {len(entries)} entries: {err}") from err

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's maintenance lock; ``.lock`` is never truncated, nor followed if
        it is a symbolic link."""
        self._mkdir(self.root)
        try:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise StoreError(f"store {self.root}: cannot open {self.root / '.lock'} ({err.strerror}); "
                             "it must be a plain file: remove it") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _loose_paths(self) -> list[Path]:
        return sorted((self.root / "objects").glob("*/*.npz"))

    def info(self) -> StoreInfo:
        """Counts and sizes of loose entries, packs and temporary files."""
        loose = self._loose_paths()
        self._load_index()
        packs = sorted((self.root / "packs").glob("pack-*.pack"))
        return StoreInfo(
            loose_entries=len(loose),
            loose_bytes=sum(p.stat().st_size for p in loose),
            packs=len(packs),
            packed_entries=len(self._index),
            packed_bytes=sum(p.stat().st_size for p in packs),
            temp_files=len(list((self.root / "tmp").glob(f"*{TMP_SUFFIX}"))),
        )

    def gc(self, stale_seconds: float = STALE_TMP_SECONDS) -> dict[str, int]:
        """Remove temporary files and packs without an index older than
        ``stale_seconds``, damaged loose entries, and damaged pack indexes with their
        packs. Returns counts of what was removed."""
        removed = {"temp_files": 0, "damaged_entries": 0, "orphan_packs": 0, "damaged_indexes": 0}
        with self._locked():
            now = time.time()
            for tmp in (self.root / "tmp").glob(f"*{TMP_SUFFIX}"):
                if now - tmp.stat().st_mtime > stale_seconds:
                    tmp.unlink(missing_ok=True)
                    removed["temp_files"] += 1
            for path in self._loose_paths():
                try:
                    bad = conformity(decode(path.stem, path.read_bytes()))
                except ValueError:
                    bad = "damaged"
                if bad:
                    path.unlink(missing_ok=True)
                    removed["damaged_entries"] += 1
            for idx in (self.root / "packs").glob("pack-*.idx"):
                try:
                    read_index(idx)
                except (OSError, ValueError):
                    idx.with_suffix(".pack").unlink(missing_ok=True)
                    idx.unlink(missing_ok=True)
                    removed["damaged_indexes"] += 1
            for pack in (self.root / "packs").glob("pack-*.pack"):  # a writer's index may be on its way
                if not pack.with_suffix(".idx").exists() and now - pack.stat().st_mtime > stale_seconds:
                    pack.unlink(missing_ok=True)
                    removed["orphan_packs"] += 1
        return removed

    def pack(self) -> int:
        """Gather every valid entry (loose and packed) into one new pack; return its
        entry count. The index is written after the pack, and old files are removed
        only after both are in place."""
        with self._locked():
            self._load_index()
            old_packs = {idx.with_suffix(".pack") for idx in self._indexed}  # superseded ones too
            entries: dict[str, bytes] = {}
            for key in sorted(self._index):
                arrays = self._get_packed(key)
                if arrays is not None:
                    entries[key] = encode(key, arrays)
            loose = self._loose_paths()
            for path in loose:
                data = path.read_bytes()
                try:
                    decode(path.stem, data)
                except ValueError:
                    continue
                entries[path.stem] = data
            if not entries:
                return 0
            self.put_segment(entries)
            fsync_dir(self.root / "packs")  # the new pack's renames are durable before anything is removed
            for path in loose:
                if path.stem in entries:
                    path.unlink(missing_ok=True)
            for pack in old_packs:
                pack.with_suffix(".idx").unlink(missing_ok=True)
                pack.unlink(missing_ok=True)
            fsync_dir(self.root / "packs")
            self._load_index()
            return len(entries)
