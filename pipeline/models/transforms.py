"""Parameter transforms, the formulas of information_matching.transform.

- identity: y = x
- affine: y = a (x − x0) + b, a a matrix (P×P, or its diagonal, or one scale)
- log: y = ln|x|, inverted with the sign of the starting values

They are written here rather than imported because importing information_matching
changes process-wide state (see :func:`import_information_matching`) and costs about
two seconds in every worker.
"""

from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import ConfigError, check_choice

TRANSFORMS = ("identity", "affine", "log")


@dataclass(frozen=True)
class Transform:
    """Parameter transform (defaults: stages/schema.py TransformConfig)."""

    type: str
    a: tuple[float, ...]  # empty, one value, P values (diagonal) or P*P (matrix)
    b: tuple[float, ...]
    x0: tuple[float, ...]


@dataclass(frozen=True)
class Resolved:
    """A transform fixed for P parameters starting at given values."""

    a: np.ndarray  # (P, P)
    a_inv: np.ndarray
    x0: np.ndarray
    b: np.ndarray
    sign: np.ndarray | None  # log transform: signs of the starting values
    identity: bool = False  # y = x: the inverse needs no arithmetic

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.sign is not None:
            return np.log(np.abs(x))
        return self.a @ (x - self.x0) + self.b

    def inverse(self, y: np.ndarray) -> np.ndarray:
        if self.sign is not None:
            return self.sign * np.exp(y)
        if self.identity:
            return np.asarray(y, dtype=float)
        return self.a_inv @ (y - self.b) + self.x0


def _vector(name: str, raw: tuple, p: int, default: float) -> np.ndarray:
    if len(raw) not in (0, 1, p):
        raise ConfigError(f"potential.transform.{name}: expected 1 or {p} values, got {len(raw)}")
    return np.full(p, raw[0] if raw else default) if len(raw) <= 1 else np.array(raw, dtype=float)


def resolve_transform(t: Transform, values: np.ndarray) -> Resolved:
    """``t`` for parameters starting at ``values`` (P,)."""
    check_choice("potential.transform.type", t.type, TRANSFORMS)
    p = len(values)
    eye, zero = np.eye(p), np.zeros(p)
    if t.type == "identity":
        return Resolved(eye, eye, zero, zero, None, True)
    if t.type == "log":
        if np.any(values == 0):
            raise ConfigError(f"potential.transform: log needs nonzero parameters, got {values.tolist()}")
        return Resolved(eye, eye, zero, zero, np.sign(values))
    if len(t.a) == p * p and p > 1:
        a = np.array(t.a, dtype=float).reshape(p, p)
    else:
        a = np.diag(_vector("a", t.a, p, 1.0))
    if abs(np.linalg.det(a)) == 0:
        raise ConfigError(f"potential.transform.a: expected an invertible matrix, got {a.tolist()}")
    return Resolved(a, np.linalg.inv(a), _vector("x0", t.x0, p, 0.0), _vector("b", t.b, p, 0.0), None)


def import_information_matching():
    """``import information_matching``, undoing what its import does to the process:
    it replaces the default multiprocessing context's reducer (which breaks
    forkserver pools) and reseeds numpy's global random generator."""
    import multiprocessing

    ctx = multiprocessing.get_context()
    reducer, state = ctx.reducer, np.random.get_state()
    try:
        import information_matching
    finally:
        ctx.reducer = reducer
        np.random.set_state(state)
    return information_matching
