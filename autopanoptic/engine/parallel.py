"""How one optimizer step is split over the ranks of a process group: by the cycle, or by the batch.

A strict-fair step is ``m`` independent forward/backward passes (one per architecture of the
cycle, each on its own batch) followed by one optimizer step. Two ways to share it over ``R`` ranks
(``train(..., parallel=...)``; see docs/distributed.md for when each wins):

* ``"cycle"``: the passes are dealt (:func:`my_passes`: rank ``r`` runs passes ``r, r+R, ...``,
  uneven shares allowed, ranks beyond ``m`` idle); each runs on the whole batch, exactly as in one
  process. Gradients and per-parameter usage counts are summed over ranks before the division, so
  the step is the single-process step (float sums in another order). BatchNorm running statistics
  are kept equal too: :class:`BatchNormReplay` gathers every pass's batch statistics and replays
  the running-average updates on every rank in pass order.
* ``"data"``: every rank runs every pass on its slice of the batch (:func:`data_shards` ranks take
  part: the largest divisor of the batch size not above ``R``; the others idle). BatchNorm normalises
  each slice by its own statistics, as per-GPU BatchNorm does in detection training.
* ``"sync"``: ``"data"`` with BatchNorm over the whole batch (:mod:`autopanoptic.engine.syncbn`):
  for small batches, where a slice of one or two images would change what BatchNorm sees.

Every pass is seeded by :func:`pass_seed` (``seed``, ``step``, pass), so the random choices inside a
network (e.g. the RPN's anchor sampling) do not depend on which rank runs the pass: the result is
deterministic for a given number of ranks, and the cycle mode equals one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from autopanoptic.engine import distributed
from autopanoptic.engine.distributed import World

__all__ = ["MODES", "BatchNormReplay", "data_shards", "my_passes", "pass_seed", "sum_over_ranks"]

MODES = ("cycle", "data", "sync")
"""The ways :func:`autopanoptic.engine.train.train` splits a step over ranks."""


def pass_seed(seed: int, step: int, j: int, rank: int | None = None) -> int:
    """The torch seed of pass ``j`` of optimizer step ``step`` (``rank`` only for data-parallel slices).

    >>> pass_seed(0, 3, 1) == pass_seed(0, 3, 1) != pass_seed(0, 3, 2)
    True
    """
    key = [int(seed), 17, int(step), int(j)] + ([] if rank is None else [int(rank)])
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> 1)


def my_passes(m: int, w: World) -> list[int]:
    """The passes of an ``m``-pass step that rank ``w.rank`` runs in cycle mode (dealt round-robin).

    >>> my_passes(12, World(1, 5))
    [1, 6, 11]
    """
    return list(range(w.rank, m, w.size))


def data_shards(batch_size: int, ranks: int) -> int:
    """How many ranks share a batch in data mode: the largest divisor of ``batch_size`` <= ``ranks``.

    >>> data_shards(2, 2), data_shards(2, 16), data_shards(12, 8)
    (2, 2, 6)
    """
    return max(d for d in range(1, min(batch_size, ranks) + 1) if batch_size % d == 0)


def sum_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The sum over ranks of dicts of numbers (keys may differ: a missing key counts 0), added in
    rank order on every rank, so the result is the same float everywhere and on every run."""
    out: dict[str, float] = {}
    for part in distributed.all_gather_objects(dict(values)):
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def running_update(m: _BatchNorm, mean: torch.Tensor, var: torch.Tensor) -> None:
    """One running-statistics update of ``m`` by a batch's ``mean`` and unbiased ``var``, as
    BatchNorm's own forward does it (``momentum``, or the cumulative average when it is None)."""
    m.num_batches_tracked.add_(1)
    f = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
    m.running_mean.mul_(1 - f).add_(mean.to(m.running_mean.dtype), alpha=f)
    m.running_var.mul_(1 - f).add_(var.to(m.running_var.dtype), alpha=f)


class BatchNormReplay:
    """Keeps BatchNorm running statistics of a cycle-parallel step equal to one process's.

    In one process the running mean / variance of a BatchNorm layer is updated by every pass that
    uses it, in pass order. When passes are dealt to ranks each rank would only see its own. So,
    while active, a forward hook records each training-mode BatchNorm call's batch mean and
    (unbiased) variance with the pass index; :meth:`sync` gathers the records of all ranks, puts
    every layer's buffers back to where the step began and replays the updates
    (``running = (1 - momentum) * running + momentum * batch``, or the cumulative average when
    ``momentum`` is None) in pass order on every rank.

    >>> bn = torch.nn.BatchNorm1d(2)
    >>> with BatchNormReplay(bn) as replay:
    ...     replay.begin_step(); replay.begin_pass(0); _ = bn(torch.randn(4, 2)); replay.sync()
    >>> int(bn.num_batches_tracked)
    1
    """

    def __init__(self, model: torch.nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        self._handles: list[Any] = []
        self._records: list[tuple[int, int, int, torch.Tensor, torch.Tensor]] = []
        self._start: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pass = 0

    def __enter__(self) -> BatchNormReplay:
        for i, m in enumerate(self.layers):
            self._handles.append(m.register_forward_hook(self._hook(i)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, i: int):
        def hook(module: _BatchNorm, args: tuple[Any, ...], output: Any) -> None:
            if not module.training:
                return
            x = args[0].detach().float()
            dims = [0, *range(2, x.dim())]
            var, mean = torch.var_mean(x, dim=dims, correction=1)
            self._records.append((self._pass, len(self._records), i, mean, var))

        return hook

    def begin_step(self) -> None:
        """Remember every layer's buffers (the step's starting point)."""
        self._records.clear()
        self._start = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
                       for m in self.layers]

    def begin_pass(self, j: int) -> None:
        """The following BatchNorm calls belong to pass ``j`` of the step."""
        self._pass = int(j)

    def _gathered(self) -> list[tuple[int, int, int, torch.Tensor, torch.Tensor]]:
        """Every rank's records, in (pass, call) order: two tensor gathers (no pickling: the
        per-object gather cost about 65 ms per tiny-supernet step on CPU, a sixth of the step)."""
        if not self.layers:
            return []
        dev = self.layers[0].running_mean.device
        head = torch.tensor([[p, k, i, m.numel()] for p, k, i, m, _ in self._records], dtype=torch.float64,
                            device=dev).reshape(-1)
        vals = (torch.cat([t.reshape(-1) for *_, m, v in self._records for t in (m, v)]) if self._records
                else torch.zeros(0, device=dev))
        out = []
        for h, v in zip(distributed.all_gather_tensor(head), distributed.all_gather_tensor(vals)):
            off = 0
            for p, k, i, c in h.view(-1, 4).long().tolist():
                out.append((p, k, i, v[off : off + c], v[off + c : off + 2 * c]))
                off += 2 * c
        return sorted(out, key=lambda r: (r[0], r[1]))

    def sync(self) -> None:
        """Replay every rank's recorded updates in pass order (see the class docstring)."""
        by_layer: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for _, _, i, mean, var in self._gathered():
            by_layer.setdefault(i, []).append((mean, var))
        with torch.no_grad():
            for i, stats in by_layer.items():
                m, (rm, rv, n) = self.layers[i], self._start[i]
                if m.momentum is None:  # cumulative average: one update after the other
                    m.running_mean.copy_(rm)
                    m.running_var.copy_(rv)
                    m.num_batches_tracked.copy_(n)
                    for mean, var in stats:
                        running_update(m, mean, var)
                    continue
                m.num_batches_tracked.copy_(n + len(stats))
                # k updates r <- (1 - f) r + f x_j, in order, at once: (1 - f)^k r + sum_j f (1 - f)^(k-1-j) x_j
                f, k = float(m.momentum), len(stats)
                w = f * (1 - f) ** torch.arange(k - 1, -1, -1, dtype=torch.float64, device=rm.device)
                means = torch.stack([s[0] for s in stats]).double()
                varis = torch.stack([s[1] for s in stats]).double()
                m.running_mean.copy_(((1 - f) ** k * rm.double() + w @ means).to(rm.dtype))
                m.running_var.copy_(((1 - f) ** k * rv.double() + w @ varis).to(rv.dtype))
        self._records.clear()


def shard_batch(idx: Sequence[int], flips: Sequence[bool], w: World, shards: int) -> tuple[list[int], list[bool]]:
    """Rank ``w.rank``'s slice of a batch shared by the first ``shards`` ranks (empty for the others)."""
    if w.rank >= shards:
        return [], []
    part = World(w.rank, shards)
    return distributed.shard(idx, part), distributed.shard(flips, part)
