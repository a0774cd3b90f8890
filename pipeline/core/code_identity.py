"""What the code of a computation is: the project modules it runs, and the versions of
the outside packages that shape its numbers.

A module's closure is found statically from its source: every ``import`` and
``from ... import`` anywhere in it (inside functions too, since backends are imported
lazily) that names a module of this project, followed transitively, with the
``__init__.py`` of every package on the way. :func:`code_digest` hashes the sources of
that closure, so editing any module a computation runs changes its store keys and
editing any other module does not. DVC's stage deps are checked against the same
closure (tests/test_provenance.py).
"""

import ast
import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the project: pipeline/, stages/
PACKAGES = ("pipeline", "stages")
SHAPING = ("numpy", "scipy", "ase")  # outside packages whose numbers every computation uses


def module_path(name: str) -> Path | None:
    """The source file of project module ``name``, or None if it is not one."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(name: str, path: Path) -> set[str]:
    """Project modules that ``path`` (module ``name``) imports, and their packages."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules named in the import
    out = {m for module in found for m in _with_parents(module)}  # parents run their __init__
    return {m for m in out if module_path(m) is not None}


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` and the packages that hold it: ``a``, ``a.b``, ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def closure(*roots: str) -> tuple[str, ...]:
    """Every project module that importing ``roots`` can run, sorted by name."""
    seen: set[str] = set()
    todo = [r for root in roots for r in _imported_parents(root)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imported(name, module_path(name)) - seen)
    return tuple(sorted(seen))


def _imported_parents(name: str) -> list[str]:
    if module_path(name) is None:
        raise ValueError(f"{name!r} is not a module of this project ({', '.join(PACKAGES)})")
    return _with_parents(name)


def closure_files(*roots: str) -> tuple[str, ...]:
    """The closure's source files, relative to the project root, sorted."""
    return tuple(sorted(module_path(m).relative_to(ROOT).as_posix() for m in closure(*roots)))


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (``"absent"`` for one that is not installed)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@lru_cache(maxsize=None)
def code_digest(*roots: str, packages: tuple[str, ...] = ()) -> str:
    """BLAKE2b of the sources of ``closure(*roots)`` (path and bytes of each) and the
    versions of :data:`SHAPING` and ``packages``; computed once per process."""
    h = hashlib.blake2b(digest_size=20)
    for rel in closure_files(*roots):
        data = (ROOT / rel).read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    for name, version in sorted(versions(*SHAPING, *packages).items()):
        h.update(f"{name}=={version}\0".encode())
    return h.hexdigest()


def file_digest(path: Path | str) -> str:
    """BLAKE2b of a file's bytes (a model library, a calculator's source)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
