"""QUESTS entropy (knn) of a million environments on this machine, checked against exact
kernel sums on a subsample (the quests package cannot hold this set: its entropy is a
dense N×N computation, and at 1,000,000 it would take hours).

    python benchmarks/bench_quests_million.py [--environments 1000000] [--subsample 2000]

The environments are QUESTS descriptors (dimension 63) of rattled 64-atom Si cells at
several temperatures (bench_quests.environments). Measured in a child process: the
knn entropy at the stage's defaults, its seconds and the child's peak memory (max RSS,
descriptors included). Check: for a seeded random subsample of environments, their
exact log kernel sums against all N (blocked, float64), against knn's for the same
environments; H from the subsample (its sampling standard error reported) against
knn's H. Goals (issue 15): ≤ 120 s, ≤ 4 GB, |ΔH|/H ≤ 1e-3.
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
from bench_quests import QUESTS, environments

H = 0.015


def child(n: int, subsample: int) -> dict:
    from pipeline.scores import entropy

    x = environments(n)
    start = time.perf_counter()
    sums = entropy.kernel_sums(x, x, H, "knn", QUESTS.batch_size, QUESTS.knn_k, QUESTS.knn_far_samples, QUESTS.seed)
    seconds = time.perf_counter() - start
    scores = entropy.scores(sums)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # GB (Linux: kB)
    pick = np.sort(np.random.default_rng(1).choice(n, subsample, replace=False))
    start = time.perf_counter()
    exact = entropy.log_kernel_sums(x[pick], x, H, QUESTS.batch_size)
    exact_seconds = time.perf_counter() - start
    gap = sums.log_p[pick] - exact
    h_sub = float(-np.mean(exact - math.log(n)))
    return {"environments": n, "knn_seconds": seconds, "peak_gb": peak, "entropy_knn": scores.entropy,
            "entropy_stderr": scores.entropy_stderr, "entropy_subsample": h_sub,
            "subsample_stderr": float(np.std(exact, ddof=1) / math.sqrt(subsample)),
            "log_p_gap_mean": float(np.mean(gap)), "log_p_gap_rms": float(np.sqrt(np.mean(gap ** 2))),
            "log_p_z_rms": float(np.sqrt(np.mean((gap / np.maximum(sums.error[pick], 1e-9)) ** 2))),  # 1e-9: rounding
            "log_p_z_over_3": float(np.mean(np.abs(gap) > 3 * np.maximum(sums.error[pick], 1e-9))),
            "resampled": sums.resampled, "sparse": sums.sparse,
            "exact_subsample_seconds": exact_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--environments", type=int, default=1_000_000)
    parser.add_argument("--subsample", type=int, default=2000)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.environments, args.subsample)))
        return
    out = subprocess.run([sys.executable, __file__, "--child", "--environments", str(args.environments),
                          "--subsample", str(args.subsample)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    # H on the subsample estimates the mean over all N, so compare per-point sums on the
    # same environments: the mean gap of log p is exactly the H difference they make
    rel = abs(r["log_p_gap_mean"]) / r["entropy_knn"]
    print("| environments | knn seconds | peak memory | H (knn) ± stderr | H (exact, subsample) ± sampling | "
          "mean Δlog p on the subsample | |ΔH|/H there | rms Δlog p / knn stderr | share beyond 3 stderr | "
          "samples grown | still sparse |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {r['environments']:,} | {r['knn_seconds']:.1f} | {r['peak_gb']:.2f} GB | {r['entropy_knn']:.5f} ± "
          f"{r['entropy_stderr']:.1e} | {r['entropy_subsample']:.4f} ± {r['subsample_stderr']:.4f} | "
          f"{r['log_p_gap_mean']:+.2e} (rms {r['log_p_gap_rms']:.1e}) | {rel:.1e} | {r['log_p_z_rms']:.2f} | "
          f"{r['log_p_z_over_3']:.4f} | {r['resampled']:,} | {r['sparse']:,} |")
    print(f"(exact sums of the {args.subsample} subsample environments against all: {r['exact_subsample_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
