"""Dense vs pruned latent matching at 4k / 8k / 16k latents: time ratio and agreement, in one run.

Two SAE-like dictionaries (unit decoder rows in `--dim` dimensions): B holds a noisy,
permuted copy of a share of A's directions (`--shared`) and new random directions
for the rest, as two SAEs of one layer trained on different populations would.
Both methods run on the same dictionaries, alternating, best of `--repeats`; the
script prints the time of each, the speed-up of pruned over dense, and whether they
agree: identical pairs at or above the threshold, and the summed similarity.

    python bench/diff_matching.py --sizes 4096 8192 16384 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from MedSegLensLib.diffing import CosineSimilarity, match_dense, match_pruned


def dictionaries(n: int, dim: int, shared: float, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    perm = rng.permutation(n)
    b = a[perm] + (noise / np.sqrt(dim)) * rng.normal(size=(n, dim)).astype(np.float32)
    new = perm >= int(shared * n)
    b[new] = rng.normal(size=(int(new.sum()), dim))
    return a, b / np.linalg.norm(b, axis=1, keepdims=True)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--dim", type=int, default=128, help="SAE input width (decoder row length)")
    parser.add_argument("--shared", type=float, default=0.7, help="share of B's latents that copy one of A's")
    parser.add_argument("--noise", type=float, default=0.5, help="noise on the copied directions (cosine ~0.9)")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--neighbours", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(
        f"{'latents':>8} {'dense s':>9} {'pruned s':>9} {'speed-up':>9} {'pairs>=thr':>10} {'same pairs':>10} "
        f"{'sum sim dense':>13} {'pruned/dense':>12} {'same partner':>12}"
    )
    for n in args.sizes:
        a, b = dictionaries(n, args.dim, args.shared, args.noise, args.seed)
        source = CosineSimilarity(a, b)
        dense_t, pruned_t = [], []
        for _ in range(args.repeats):
            dense, t = timed(lambda source=source: match_dense(source))
            dense_t.append(t)
            pruned, t = timed(lambda source=source: match_pruned(source, neighbours=args.neighbours))
            pruned_t.append(t)
        above_d = {(x, y) for x, y, s in zip(dense.a, dense.b, dense.similarity) if s >= args.threshold}
        above_p = {(x, y) for x, y, s in zip(pruned.a, pruned.b, pruned.similarity) if s >= args.threshold}
        row = {
            "latents": n,
            "dim": args.dim,
            "dense_s": min(dense_t),
            "pruned_s": min(pruned_t),
            "speedup": min(dense_t) / min(pruned_t),
            "pairs_above_dense": len(above_d),
            "pairs_above_pruned": len(above_p),
            "same_pairs_above": above_d == above_p,
            "pairs_above_differing": len(above_d ^ above_p),
            "total_dense": dense.total(),
            "total_ratio": pruned.total() / dense.total(),
            "same_partner_fraction": float(np.mean(dense.partner_of_a() == pruned.partner_of_a())),
        }
        rows.append(row)
        print(
            f"{n:>8} {row['dense_s']:>9.2f} {row['pruned_s']:>9.2f} {row['speedup']:>8.1f}x {len(above_d):>10} "
            f"{str(row['same_pairs_above']):>10} {row['total_dense']:>13.1f} {row['total_ratio']:>12.5f} "
            f"{row['same_partner_fraction']:>12.3f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
