"""The convex solvers information matching may use, and their options, checked before a solve.

Any solver cvxpy has installed that takes semidefinite constraints may be named
(``matching.solver``); ``matching.solver_options`` passes keywords to it as cvxpy's
``solve`` does (Orchestrator's ``solver_kwargs``). The options are checked first, so
that a misspelt one is a one-line error and never a silent default: SDPA (whose
library ignores unknown options, with a message on stdout) against its own table of
parameters and their types, every other solver by a trial solve of a 1×1 problem,
which is where cvxpy refuses an unknown or ill-typed setting.
"""

import numpy as np

from pipeline.core.errors import ConfigError

# SCS stops at 1e-4 by default, far looser than the others; ask it for as much as they give
DEFAULT_OPTIONS = {"SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 500_000}}
KNOWN = ("CLARABEL", "SCS", "SDPA")  # installed with atomsieve


def sdp_solvers() -> list[str]:
    """The installed cvxpy solvers that take semidefinite (PSD) constraints."""
    import cvxpy as cp
    from cvxpy.reductions.solvers import defines

    out = []
    for name in cp.installed_solvers():
        solver = defines.SOLVER_MAP_CONIC.get(name)
        kinds = {c.__name__ for c in getattr(solver, "SUPPORTED_CONSTRAINTS", ())}
        if kinds & {"PSD", "SvecPSD"}:
            out.append(name)
    return out


def check_solver(name: str) -> None:
    if name not in sdp_solvers():
        raise ConfigError(f"matching.solver: expected an installed cvxpy solver that takes semidefinite constraints, "
                          f"one of {sdp_solvers()}, got {name!r}")


def options(name: str, given: dict | None) -> dict:
    """The keywords for cvxpy's ``solve`` with ``name``: atomsieve's defaults for it,
    updated by ``given`` (checked; :class:`ConfigError` naming the option otherwise)."""
    given = dict(given or {})
    if given:
        (_check_sdpa if name == "SDPA" else _check_by_trial)(name, given)
    return {**DEFAULT_OPTIONS.get(name, {}), **given}


def _check_sdpa(name: str, given: dict) -> None:
    from sdpap.param import param

    table = param()
    for key, value in given.items():
        if key not in table:
            raise ConfigError(f"matching.solver_options.{key}: not an option of {name}; expected one of "
                              f"{sorted(table)}")
        want = type(table[key])
        ok = isinstance(value, want) or (want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok or (want is int and isinstance(value, bool)):
            raise ConfigError(f"matching.solver_options.{key}: {name} expects {want.__name__} (default "
                              f"{table[key]!r}), got {value!r}")


def _check_by_trial(name: str, given: dict) -> None:
    import warnings

    import cvxpy as cp

    x = cp.Variable((1, 1), PSD=True)
    problem = cp.Problem(cp.Minimize(cp.trace(x)), [x >= np.ones((1, 1))])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            problem.solve(solver=name, **given)
    except cp.error.SolverError:
        pass  # the options were taken; the trial itself may stop early under them
    except (TypeError, ValueError, AttributeError, KeyError) as err:
        raise ConfigError(f"matching.solver_options: {name} refuses {given}: {err}") from None
