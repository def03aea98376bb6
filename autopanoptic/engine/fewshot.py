"""Few-shot supernets: split a trained supernet on one layer, one child per op of that layer.

Few-shot NAS (Zhao et al., ICML 2021) lowers the interference of weight sharing by splitting the
one-shot supernet into sub-supernets, each of which trains only the paths that take one op of a
chosen layer; a path is then scored by the child of its op. Here the children start from the trained
supernet's weights (a copy each) and continue strict-fair training for ``steps`` steps on cycles of
the sampling space whose ``layer`` is fixed to the child's op (every other layer stays strictly
fair). The layer to split is, by default, the one whose ops the supernet's own fitness tells apart
most (:func:`most_influential_layer`: the largest spread of per-op mean ranks over a pool of paths
the supernet has scored; no ground truth is used).

Example::

    children = train_children(supernet, restriction, layer, dataset, pool, cfg.train, steps=100)
    fit = path_fitness(children[arch[layer]], arch, dataset, val, calib)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.search.space import Arch

__all__ = ["most_influential_layer", "train_children"]


def most_influential_layer(n_choices: Sequence[int], archs: Sequence[Arch], fitness: Sequence[float]) -> int:
    """The layer (of the space of ``archs``) whose choices differ most in mean fitness rank: the
    largest standard deviation of the per-choice mean ranks (choices no path used are skipped).

    >>> most_influential_layer([2, 2], [(0, 0), (0, 1), (1, 0), (1, 1)], [0.1, 0.2, 0.8, 0.9])
    0
    """
    from autopanoptic.search.stats import average_ranks

    ranks = average_ranks(fitness)
    a = np.asarray(archs)
    spread = []
    for layer, n in enumerate(n_choices):
        means = [ranks[a[:, layer] == c].mean() for c in range(n) if (a[:, layer] == c).any()]
        spread.append(float(np.std(means)) if len(means) > 1 else -1.0)
    return int(np.argmax(spread))


def train_children(
    supernet: torch.nn.Module,
    restriction: OpRestriction,
    layer: int,
    dataset: Any,
    pool: Sequence[int],
    train_cfg: Any,
    *,
    steps: int,
    lr_scale: float = 0.5,
    device: torch.device | str = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[int, torch.nn.Module]:
    """One child per choice of ``layer`` of the sampling space (``restriction.sub``); returns
    ``{full-space choice index of the op: child supernet}`` (score a full-space path ``arch`` with
    ``children[arch[layer]]``). Each child trains ``steps`` strict-fair steps (the
    supernet's recipe ``train_cfg`` with ``lr * lr_scale``, cosine, no warm-up, its own data order)
    with ``layer`` fixed to its choice. With ``checkpoint_dir`` the children resume."""
    from autopanoptic.engine.train import fair_cycle_for_step, train

    sub = restriction.sub
    cfg = attrs.evolve(train_cfg, steps=int(steps), lr=train_cfg.lr * lr_scale, warmup_steps=0, schedule="cosine",
                       checkpoint_every=max(1, min(train_cfg.checkpoint_every, int(steps))))
    children: dict[int, torch.nn.Module] = {}
    for c in range(sub.n_choices[layer]):

        def archs_for_step(step: int, c: int = c) -> list[Arch]:
            cycle = fair_cycle_for_step(sub, cfg.seed + 1 + c, step)
            return [restriction.to_full(a[:layer] + (c,) + a[layer + 1 :]) for a in cycle]

        child = copy.deepcopy(supernet)
        train(child, dataset, pool, cfg, archs_for_step=archs_for_step,
              checkpoint_path=None if checkpoint_dir is None else Path(checkpoint_dir) / f"child{c}.pt",
              fingerprint={"fewshot_layer": layer, "choice": c, "steps": int(steps), "lr_scale": lr_scale},
              device=device, progress=progress, desc=f"few-shot child {c}")
        children[restriction.index_maps[layer][c]] = child  # the same layers; the op's full-space index
    return children
