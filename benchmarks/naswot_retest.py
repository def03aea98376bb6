"""How much NASWOT's ranking of the ground-truth architectures depends on its own randomness.

NASWOT scores an untrained network: its score moves with the initialisation seed and with the images
it sees. This script scores the 64 architectures of ``tiny.json`` with several initialisation seeds
and image sets and prints the Spearman correlations between the rankings (no ground truth is read:
this is the estimator's test-retest reliability, which caps how much averaging could gain).

    .venv/bin/python benchmarks/naswot_retest.py          # about a minute on one core
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ground_truth import PRESET, TABLE, open_truth_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ground-truth"), help="the table's data (generated if absent)")
    ap.add_argument("--inits", type=int, default=4, help="initialisation seeds 0..N-1")
    args = ap.parse_args()

    import torch

    from autopanoptic.engine.datasets import load_batch
    from autopanoptic.engine.truth import GroundTruth
    from autopanoptic.nn.proxies import naswot_scores
    from autopanoptic.nn.supernet import make_config
    from autopanoptic.search.stats import spearman_rho

    torch.set_num_threads(1)
    archs = GroundTruth.load(args.table).archs
    ds, splits = open_truth_data(args.work)
    config = make_config(PRESET, ds.categories.num_things, ds.categories.num_stuff)
    train = list(splits.train)
    sets = {"8 images (A)": train[:8], "8 other images (B)": train[8:16], "32 images": train[:32]}
    scores: dict[tuple[str, int], np.ndarray] = {}
    for name, idx in sets.items():
        images = load_batch(ds, idx)[0]
        for seed in range(args.inits):  # the library's scoring: each network initialised from `seed`
            scores[name, seed] = np.array(naswot_scores(config, archs, [images], seed=seed, images=len(images)))

    def rho(a, b) -> float:
        return spearman_rho(list(a), list(b))

    a8, b8, a32 = sets
    rows = [
        ("another initialisation seed, 8 images (A)", [rho(scores[a8, 0], scores[a8, s]) for s in range(1, args.inits)]),
        ("another initialisation seed, 32 images", [rho(scores[a32, 0], scores[a32, s]) for s in range(1, args.inits)]),
        ("other images (A against B), same seed", [rho(scores[a8, s], scores[b8, s]) for s in range(args.inits)]),
        ("8 images (A) against 32, seed 0", [rho(scores[a8, 0], scores[a32, 0])]),
        (f"mean over {args.inits} seeds: A against B",
         [rho(np.mean([scores[a8, s] for s in range(args.inits)], 0), np.mean([scores[b8, s] for s in range(args.inits)], 0))]),
    ]
    print(f"NASWOT of the {len(archs)} architectures of {args.table.name}: Spearman rho between two rankings")
    print("| what changes | rho (each pair) |\n|---|---|")
    for what, vals in rows:
        print(f"| {what} | {', '.join(f'{v:.3f}' for v in vals)} |")


if __name__ == "__main__":
    main()
