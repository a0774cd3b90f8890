"""Information matching at scale: atomsieve's match (information-matching's ConvexOpt
formulation, CLARABEL, max_frobenius preconditioning, the violation verified) on
random rank-3 PSD candidate FIMs with P = 9, against ConvexOpt with the package's own
default solver (SDPA) on the same problems, each size in a child process (peak memory
its own) with a time limit.

    python benchmarks/bench_matching_scale.py [--sizes 1000 10000 100000] [--limit 600]

Goal (issue 15): 100,000 candidates in ≤ 20 s and ≤ 4 GB, violation within
matching.max_violation.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def problem(n: int, p: int = 9, rank: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p, rank)) * 10 ** rng.uniform(-0.5, 0.5, size=(n, 1, 1))
    y = rng.normal(size=(p, p))
    return x @ x.transpose(0, 2, 1), y @ y.T / 10


def child(kind: str, n: int) -> dict:
    cands, target = problem(n)
    start = time.perf_counter()
    if kind == "atomsieve":
        from dataclasses import asdict

        from pipeline.scores.matching import match
        from stages.schema import MatchingConfig

        options = {k: v for k, v in asdict(MatchingConfig()).items() if k not in ("candidates", "weight_upper_bound_key")}
        r = match(cands, target, **options)
        out = {"selected": len(r.selected), "min_eigenvalue_rel": r.min_eigenvalue, "status": r.status}
    else:
        from pipeline.models.transforms import import_information_matching

        import_information_matching()
        from information_matching.convex_optimization import ConvexOpt

        opt = ConvexOpt(target, {i: f for i, f in enumerate(cands)})
        opt.solve()
        w = np.clip(np.asarray(opt.result["wm"], dtype=float) * opt.scale_conf / opt.scale_qoi, 0, None)
        gap = np.einsum("i,ijk->jk", w, cands) - target
        out = {"selected": int(np.sum(w > 1e-6 * w.max())), "status": opt.problem.status,
               "min_eigenvalue_rel": float(np.linalg.eigvalsh((gap + gap.T) / 2).min() / np.linalg.norm(target))}
    return {"seconds": time.perf_counter() - start, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            **out}


def died(code: int) -> str:
    """A child's exit without a message: its exit code, or the signal that ended it."""
    import signal

    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}, no message"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--limit", type=float, default=600.0, help="seconds allowed to each run")
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    print("| candidates | atomsieve (CLARABEL) | ConvexOpt, default solver |")
    print("| --- | --- | --- |")
    for n in args.sizes:
        cells = []
        for kind in ("atomsieve", "convexopt"):
            try:
                out = subprocess.run([sys.executable, __file__, "--child", kind, str(n)], capture_output=True,
                                     text=True, timeout=args.limit)
                r = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
                cells.append(f"{r['seconds']:.1f} s, {r['peak_gb']:.2f} GB, {r['selected']} selected, {r['status']}, "
                             f"min eig {r['min_eigenvalue_rel']:.1e}" if r else f"failed: "
                             f"{(out.stderr.strip().splitlines() or [died(out.returncode)])[-1][:80]}")
            except subprocess.TimeoutExpired:
                cells.append(f"not done in {args.limit:.0f} s")
        print(f"| {n:,} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
