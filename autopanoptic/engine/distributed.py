"""Scale-out on PyTorch's own distributed runtime (``torch.distributed``, ``torchrun``; gloo on CPU,
NCCL on GPU). Nothing here starts processes: ``torchrun`` does, and :func:`init_from_env` joins the
process group it describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``).

What is shared and how (see docs/distributed.md):

* training (:func:`autopanoptic.engine.train.train`): every rank runs the same architectures at each
  step (the fair cycle is a pure function of the seed), each on its own slice of the global batch
  (:func:`shard`); :func:`reduce_gradients` sums the gradients *and* the per-parameter usage counts
  over ranks and divides one by the other, which equals single-process training on the global batch
  for losses that are means over images. Rank 0 alone writes checkpoints; every rank reads them.
* evaluation (:func:`autopanoptic.engine.evaluate.evaluate`): images are sharded round-robin, the
  per-image PQ statistics are gathered and summed **in image order**, so PQ is bit-identical to a
  single process.
* search (:func:`autopanoptic.engine.search.search_supernet`): the candidates of a batch are dealt
  to ranks and their fitnesses gathered; every rank runs the same deterministic policy, rank 0 alone
  writes the journal.

Without a process group every helper is the identity (rank 0 of 1), so single-process code pays nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import attrs
import torch

from autopanoptic.errors import AutopanopticError

__all__ = [
    "DistributedError",
    "World",
    "all_gather_objects",
    "barrier",
    "init_from_env",
    "main_first",
    "reduce_gradients",
    "reduce_mean",
    "shard",
    "world",
]

T = TypeVar("T")


class DistributedError(AutopanopticError, RuntimeError):
    """The distributed set-up cannot work (e.g. a batch that does not split over the ranks)."""


@attrs.frozen
class World:
    """This process's place among the ranks: ``rank`` of ``size`` (``0`` of ``1`` when not distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def active(self) -> bool:
        """True when more than one rank takes part."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the only writer of checkpoints, journals and reports)."""
        return self.rank == 0


def world() -> World:
    """The current :class:`World` (from the initialised process group, else rank 0 of 1).

    >>> world()
    World(rank=0, size=1)
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(device: torch.device | str = "cpu") -> tuple[World, torch.device]:
    """Join the process group ``torchrun`` describes in the environment (if ``WORLD_SIZE`` > 1).

    Returns the world and the device of this rank (``cuda:LOCAL_RANK`` for a CUDA device, else
    ``device`` unchanged). gloo is used on CPU, NCCL on CUDA. Outside ``torchrun`` (no
    ``WORLD_SIZE``, or 1) nothing happens.
    """
    import torch.distributed as dist

    device = torch.device(device)
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return world(), device
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this PyTorch has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DistributedError(f"could not join the torchrun process group ({first})") from None
    return world(), device


def shard(items: Sequence[T], w: World | None = None) -> list[T]:
    """This rank's share of ``items``: every ``size``-th item from position ``rank``.

    >>> shard(list(range(7)), World(1, 3))
    [1, 4]
    """
    w = w or world()
    return list(items)[w.rank :: w.size]


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    import torch.distributed as dist

    if world().active:
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[World]:
    """Rank 0 runs the block first (e.g. to generate data), then the other ranks (which then find it)."""
    w = world()
    if w.active and not w.is_main:
        barrier()
    yield w
    if w.active and w.is_main:
        barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    import torch.distributed as dist

    w = world()
    if not w.active:
        return [obj]
    out: list[Any] = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of a dict of numbers with the same keys on every rank (for loss logs)."""
    import torch.distributed as dist

    w = world()
    if not w.active or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / w.size for k, v in zip(keys, t.tolist())}


def reduce_gradients(params: Sequence[torch.nn.Parameter], counts: dict[int, int], device: torch.device) -> None:
    """Sum gradients and usage counts over ranks; divide each gradient by its summed count.

    ``counts[id(p)]`` is how many passes *on this rank* reached ``p`` (gradients are un-normalised
    sums over those passes, each pass a mean over the rank's slice of the batch). The result on
    every rank is ``sum_r grad_r / sum_r count_r`` -- for equal slices the mean over passes of the
    global-batch gradient, exactly what one process computes. Parameters no rank used keep
    ``grad = None``; a parameter used elsewhere but not here takes part with a zero gradient.
    """
    import torch.distributed as dist

    n = torch.tensor([float(counts.get(id(p), 0)) for p in params], dtype=torch.float64, device=device)
    dist.all_reduce(n)
    used = [(p, c) for p, c in zip(params, n.tolist()) if c > 0]
    if not used:
        return
    flat = torch.cat([
        (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1) for p, _ in used
    ])  # one collective for all; mixed dtypes are promoted, then cast back below
    dist.all_reduce(flat)
    offset = 0
    for p, c in used:
        k = p.numel()
        g = flat[offset : offset + k].view_as(p).to(p.dtype) / c
        offset += k
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)


def evaluate_sharded(model: torch.nn.Module, dataset: Any, indices: Sequence[int], *, batch_size: int = 4,
                     **kwargs: Any):
    """:func:`~autopanoptic.engine.evaluate.evaluate` over all ranks, with the single-process result.

    The batches a single process would form (``batch_size`` consecutive images of ``indices``) are
    dealt round-robin to the ranks, so every image goes through the network in the very batch it
    would have in one process; the per-image PQ statistics are gathered and summed in image order,
    so the returned :class:`~autopanoptic.engine.evaluate.EvalResult` (on every rank) has exactly
    the single-process statistics. ``kwargs`` go to ``evaluate`` (``arch``, ``device``, ...);
    exporting predictions or drawings is a single-process job (``export_dir`` / ``draw_dir`` are
    refused when distributed).
    """
    from autopanoptic.data import PQStats
    from autopanoptic.engine.evaluate import EvalResult, evaluate

    w = world()
    indices = [int(i) for i in indices]
    if not w.active:
        return evaluate(model, dataset, indices, batch_size=batch_size, **kwargs)
    if kwargs.get("export_dir") is not None or kwargs.get("draw_dir") is not None:
        raise DistributedError("exporting predictions or drawings runs in one process; evaluate without torchrun")
    if batch_size < 1:
        raise DistributedError(f"batch_size must be >= 1, got {batch_size}")
    batches = [indices[s : s + batch_size] for s in range(0, len(indices), batch_size)]
    mine = [i for b in batches[w.rank :: w.size] for i in b]
    per_image: list[tuple[int, Any]] = []
    evaluate(model, dataset, mine, batch_size=batch_size,
             on_image=lambda i, s: per_image.append((i, s.to_array())), **kwargs)
    gathered = {}
    for part in all_gather_objects(per_image):
        gathered.update(part)
    stats = PQStats.zeros(dataset.categories)
    for i in indices:
        stats = stats + PQStats.from_array(gathered[i], dataset.categories)
    return EvalResult(stats=stats, n_images=len(indices))
