"""Image hashing throughput: atomsieve's identity against Amp's scheme, side by side.

    python benchmarks/bench_hash.py [--images 10000] [--atoms 64] [--repeats 3]

Amp's scheme (amp.utilities.get_hash, re-stated from its formula): md5 of str(pbc),
every cell entry and position printed with '%.15f', and str(atomic numbers). Both run
on the same rattled diamond Si cells in this process; the best of ``--repeats`` runs
is reported, with the ratio of rates. Goal: at least 10x Amp's rate.
"""

import argparse
import hashlib
import time

import numpy as np
from ase.build import bulk

from pipeline.atoms.hashing import image_hash, image_hashes


def amp_hash(atoms) -> str:
    text = str(atoms.pbc)
    for number in atoms.cell.flatten():
        text += "%.15f" % number
    text += str(atoms.get_atomic_numbers())
    for number in atoms.get_positions().flatten():
        text += "%.15f" % number
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def make_images(n: int, atoms_per_image: int, seed: int = 0) -> list:
    base = bulk("Si", "diamond", a=5.431, cubic=True)
    base = base.repeat((int(round((atoms_per_image / 8) ** (1 / 3))),) * 3)
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        atoms = base.copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        images.append(atoms)
    return images


def best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--atoms", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = make_images(args.images, args.atoms)
    assert len(images[0]) == args.atoms, f"{args.atoms} atoms is not a cubic repeat of 8"
    rows = [
        ("amp md5 of '%.15f' strings", best_seconds(lambda: [amp_hash(a) for a in images], args.repeats)),
        ("atomsieve image_hashes (batched)", best_seconds(lambda: image_hashes(images), args.repeats)),
        ("atomsieve image_hash (one by one)", best_seconds(lambda: [image_hash(a) for a in images], args.repeats)),
    ]
    amp = rows[0][1]
    print(f"{args.images} images of {args.atoms} atoms, best of {args.repeats}")
    print(f"{'scheme':36s} {'seconds':>9s} {'images/s':>11s} {'vs amp':>7s}")
    for name, sec in rows:
        print(f"{name:36s} {sec:9.3f} {args.images / sec:11.0f} {amp / sec:6.1f}x")


if __name__ == "__main__":
    main()
