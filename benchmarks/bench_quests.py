"""Descriptors, QUESTS entropy and LTAU against the reference packages, side by side.

    python benchmarks/bench_quests.py [--environments 100000] [--skip-quests-entropy]

Every measurement runs in its own process, so peak memory (max RSS) is its own.
- descriptors: environments per second of rattled 64-atom Si cells, atomsieve against
  quests.descriptor.get_descriptors (its numba compile time reported separately);
- entropy of --environments descriptors (dimension 63, from rattled Si cells at several
  temperatures): quests.entropy.entropy, atomsieve exact, atomsieve knn at the stage's
  defaults over 5 far-field seeds: seconds, peak memory, |ΔH|/H and D against exact,
  beside the standard errors knn reports;
- LTAU with 100,000 training and 10,000 query atoms (k = 10, Flat index) against the
  bare FAISS search it contains.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from functools import partial

import numpy as np

from pipeline.scores.entropy import FAR_BLOCK
from stages.schema import DescriptorConfig, QuestsConfig

DESCRIPTOR = DescriptorConfig()

QUESTS = QuestsConfig()  # the stage's defaults: batch_size, knn_k, knn_far_samples
SEEDS = 5  # knn: far-field sample seeds, each run timed and compared on its own


def cells(n: int, seed: int = 0) -> list:
    from ase.build import bulk

    base = bulk("Si", "diamond", a=5.431, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        atoms = base.copy()
        atoms.rattle(rng.choice([0.02, 0.05, 0.1, 0.2]), seed=seed + i)
        out.append(atoms)
    return out


def environments(n: int) -> np.ndarray:
    from pipeline.atoms.descriptors import quests

    return np.concatenate([quests(a, DESCRIPTOR.k, DESCRIPTOR.cutoff) for a in cells(-(-n // 64), seed=7)])[:n]


def task(name: str, n: int) -> dict:
    """One measurement, run in a child process."""
    if name in ("descriptors-ours", "descriptors-ours-2procs"):
        from pipeline.atoms.descriptors import quests
        from pipeline.core.executors import open_executor

        frames = cells(n // 64)
        workers = 2 if name.endswith("2procs") else 0
        describe = partial(quests, k=DESCRIPTOR.k, cutoff=DESCRIPTOR.cutoff)
        with open_executor("process" if workers else "serial", workers or 1, None) as ex:
            list(ex.map(describe, frames[:2]))  # workers started and warm
            start = time.perf_counter()
            count = sum(len(d) for d in ex.map(describe, frames, chunksize=16)) if workers else \
                sum(len(describe(a)) for a in frames)
        return {"seconds": time.perf_counter() - start, "environments": count}
    if name == "descriptors-quests":
        from quests.descriptor import get_descriptors

        frames = cells(n // 64)
        start = time.perf_counter()
        get_descriptors(frames[:1])
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        count = len(get_descriptors(frames))
        return {"seconds": time.perf_counter() - start, "environments": count, "compile_seconds": compile_s}
    x = environments(n)
    start = time.perf_counter()
    if name == "entropy-quests":
        from quests.entropy import entropy as reference

        value = reference(x[:64], 0.015)  # compile first
        start = time.perf_counter()
        value = reference(x, 0.015)
    elif name == "entropy-exact":
        from pipeline.scores import entropy

        sums = entropy.exact_sums(x, x, 0.015, QUESTS.batch_size)
        return {"seconds": time.perf_counter() - start, **asdict(entropy.scores(sums))}
    elif name == "entropy-knn":
        from pipeline.scores import entropy

        runs = []
        for seed in range(SEEDS):
            start = time.perf_counter()
            sums = entropy.kernel_sums(x, x, 0.015, "knn", QUESTS.batch_size, QUESTS.knn_k, QUESTS.knn_far_samples, seed)
            runs.append({"seconds": time.perf_counter() - start, **asdict(entropy.scores(sums))})
        return {"runs": runs}
    elif name in ("ltau-faiss", "ltau-ours"):
        from pipeline.scores import ltau

        train, query = x[: n - 10_000], x[n - 10_000:]
        fit = ltau.fit_pdfs(np.random.default_rng(0).lognormal(-3, 1, size=(len(train), 20)), 100, "log")
        index = ltau.build_index(train, "Flat", {})
        q32 = np.ascontiguousarray(query, dtype=np.float32)
        best = np.inf
        for _ in range(3):  # FAISS's threaded search varies from run to run: best of three
            start = time.perf_counter()
            if name == "ltau-faiss":
                index.search(q32, 10)
            else:
                ltau.uncertainty(fit, ltau.neighbours(index, query, 10))
            best = min(best, time.perf_counter() - start)
        return {"seconds": best}
    return {"seconds": time.perf_counter() - start, "entropy": float(value)}


def child(name: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--task", name, "--environments", str(n)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--environments", type=int, default=100_000)
    parser.add_argument("--descriptor-environments", type=int, default=64_000)
    parser.add_argument("--skip-quests-entropy", action="store_true")
    parser.add_argument("--skip-entropy", action="store_true", help="descriptors and LTAU only")
    parser.add_argument("--task")
    args = parser.parse_args()
    if args.task:
        result = task(args.task, args.environments)
        result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    one = child("descriptors-ours", args.descriptor_environments)
    ours, ref = child("descriptors-ours-2procs", args.descriptor_environments), child("descriptors-quests", args.descriptor_environments)
    rate = lambda r: r["environments"] / r["seconds"]  # noqa: E731
    print(f"descriptors, {ours['environments']} environments: atomsieve {rate(ours):,.0f}/s on 2 processes "
          f"({rate(one):,.0f}/s on one), quests {rate(ref):,.0f}/s on 2 numba threads "
          f"(ratio {rate(ours) / rate(ref):.2f}; quests compile {ref['compile_seconds']:.1f} s)")
    if not args.skip_entropy:
        entropy_rows(args, child("entropy-exact", args.environments))
    bare, full = child("ltau-faiss", 110_000), child("ltau-ours", 110_000)
    print(f"LTAU, 100,000 training x 10,000 query atoms, k 10, best of 3: bare FAISS search {bare['seconds']:.3f} s, "
          f"atomsieve {full['seconds']:.3f} s (ratio {full['seconds'] / bare['seconds']:.2f})")


def entropy_rows(args, exact: dict) -> None:
    out = child("entropy-knn", args.environments)
    knn = [{**r, "max_rss_mb": out["max_rss_mb"]} for r in out["runs"]]
    h, d = exact["entropy"], exact["diversity"]
    secs = [r["seconds"] for r in knn]
    print(f"entropy, {args.environments} environments, dim 63, h 0.015:")
    print(f"  atomsieve exact: {exact['seconds']:7.1f} s, {exact['max_rss_mb']:6.0f} MB, H = {h:.6f}, D = {d:.6f}")
    print(f"  atomsieve knn (k {QUESTS.knn_k}, {QUESTS.knn_far_samples} far samples per {FAR_BLOCK} queries), "
          f"seeds 0-{SEEDS - 1}: {min(secs):.2f}-{max(secs):.2f} s, {knn[0]['max_rss_mb']:.0f} MB")
    for seed, r in enumerate(knn):
        print(f"    seed {seed}: {r['seconds']:5.2f} s, H = {r['entropy']:.6f} (|dH|/H = {abs(r['entropy'] - h) / h:.1e}, "
              f"reported SE/H {r['entropy_stderr'] / h:.1e}), D - D_exact = {r['diversity'] - d:+.4f} "
              f"(reported SE {r['diversity_stderr']:.4f})")
    print(f"    max |dH|/H over seeds: {max(abs(r['entropy'] - h) for r in knn) / h:.1e}")
    if not args.skip_quests_entropy:
        q = child("entropy-quests", args.environments)
        print(f"  quests:          {q['seconds']:7.1f} s, {q['max_rss_mb']:6.0f} MB, H = {q['entropy']:.6f}")
        print(f"  speed-up vs quests: exact {q['seconds'] / exact['seconds']:.1f}x, "
              f"knn {q['seconds'] / max(secs):.1f}x (slowest seed)")


if __name__ == "__main__":
    main()
