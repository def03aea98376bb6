"""Training one architecture from scratch and scoring it: the "truth" a supernet is judged against.

:func:`train_and_score` builds a freshly initialised standalone network for ``arch`` (no supernet
weights: the result must not depend on any supernet), trains it with one fixed recipe (a
:class:`~autopanoptic.config.RetrainConfig`: steps, batch, lr, schedule, seed) on a pool of training
images and returns its PQ / SQ / RQ on a set of evaluation images, with the final training loss.
Both ``autopanoptic check-ranking`` (a quick truth for a few architectures) and the ground-truth
benchmark (``benchmarks/ground_truth.py``) call it.

Example::

    from autopanoptic.config import RetrainConfig
    score = train_and_score("tiny", arch, ds, range(300), ds, range(300, 500),
                            RetrainConfig(steps=1500, lr=0.02, warmup_steps=10), seed=0)
    score.pq, score.loss
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from autopanoptic.config import RetrainConfig
from autopanoptic.search.space import Arch

__all__ = ["Score", "train_and_score"]


@attrs.frozen
class Score:
    """What one from-scratch training of one architecture reached (PQ etc. as fractions)."""

    pq: float
    sq: float
    rq: float
    pq_things: float
    pq_stuff: float
    loss: float  # mean training loss of the last 10% of the steps (at least 1)
    steps: int
    seconds: float
    extra: Any = None  # what ``train_and_score(then=...)`` returned (JSON-able), else None

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        if out["extra"] is None:
            del out["extra"]
        return out


def scratch_fingerprint(preset: str, arch: Arch, recipe: RetrainConfig,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a from-scratch training's checkpoint must match to resume: the recipe as flat
    ``retrain.<key>`` entries, so that a key added to the config later, at its default, does not
    refuse an older checkpoint (:func:`autopanoptic.engine.train._fingerprint_diff`)."""
    return {"preset": preset, "arch": list(arch), "overrides": dict(overrides or {}),
            **{f"retrain.{k}": v for k, v in attrs.asdict(recipe).items()}}


def train_and_score(
    preset: str,
    arch: Arch,
    train_dataset: Any,
    train_pool: Sequence[int],
    eval_dataset: Any,
    eval_indices: Sequence[int],
    recipe: RetrainConfig,
    *,
    seed: int,
    overrides: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    checkpoint_path: str | Path | None = None,
    flip: bool = True,
    eval_batch_size: int = 4,
    progress: bool = False,
    alone: bool = False,
    resize: Any = None,
    amp: str = "off",
    then: Callable[[torch.nn.Module], Any] | None = None,
) -> Score:
    """Train ``arch`` from a fresh initialisation (``torch.manual_seed(seed)``) with ``recipe``
    (its ``seed`` replaced by ``seed``: the data order and flips follow it too) and score it.

    With ``checkpoint_path`` an interrupted training resumes exactly (see
    :func:`autopanoptic.engine.train.train`). ``alone``: train in this process only, even under a
    process group (one architecture per rank); the checkpoint is then this process's to write.
    ``resize`` (a :class:`~autopanoptic.engine.resize.Resize`) and ``amp`` apply to training and
    evaluation, with ``recipe.amp`` overridden by ``amp`` unless it is ``off``. ``then(net)`` is
    called with the trained network after scoring (e.g. to keep its weights or score it on other
    images); what it returns becomes ``Score.extra``.
    """
    from autopanoptic.engine.distributed import solo
    from autopanoptic.engine.evaluate import evaluate
    from autopanoptic.engine.train import train
    from autopanoptic.nn import build_network

    recipe = attrs.evolve(recipe, seed=int(seed), **({"amp": amp} if amp != "off" else {}))
    cats = train_dataset.categories
    started = time.perf_counter()
    torch.manual_seed(int(seed))
    net = build_network(preset, arch, cats.num_things, cats.num_stuff, **dict(overrides or {}))
    with solo() if alone else contextlib.nullcontext():
        result = train(
            net, train_dataset, list(train_pool), recipe, archs_for_step=lambda step: [None],
            checkpoint_path=checkpoint_path,
            fingerprint=scratch_fingerprint(preset, arch, recipe, overrides),
            device=device, flip=flip, progress=progress, desc="scratch", resize=resize,
        )
    tail = max(1, recipe.steps // 10)
    losses = [r["loss"] for r in result.losses[-tail:]]
    res = evaluate(net, eval_dataset, eval_indices, device=device, batch_size=eval_batch_size, resize=resize,
                   amp=recipe.amp)
    s = res.summary()
    seconds = time.perf_counter() - started  # training and the scoring above, not ``then``
    extra = then(net) if then is not None else None
    return Score(
        pq=float(s["All"]["pq"]), sq=float(s["All"]["sq"]), rq=float(s["All"]["rq"]),
        pq_things=float(s["Things"]["pq"]), pq_stuff=float(s["Stuff"]["pq"]),
        loss=float(sum(losses) / len(losses)) if losses else math.nan,
        steps=int(result.steps), seconds=seconds, extra=extra,
    )
