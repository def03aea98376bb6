"""Scale-out on PyTorch's own distributed runtime (``torch.distributed``, ``torchrun``; gloo on CPU,
NCCL on GPU). Nothing here starts processes: ``torchrun`` does, and :func:`init_from_env` joins the
process group it describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``).

What is shared and how (see docs/distributed.md):

* training (:func:`autopanoptic.engine.train.train`): every rank runs the same architectures at each
  step (the fair cycle is a pure function of the seed), each on its own slice of the global batch
  (:func:`shard`); :func:`reduce_gradients` sums the gradients *and* the per-parameter usage counts
  over ranks and divides one by the other, which equals single-process training on the global batch
  for losses that are means over images. Rank 0 alone writes checkpoints; every rank reads them.
* evaluation (:func:`evaluate_sharded`): the single process's batches are dealt round-robin; what
  each image gave (PQ statistics, AP records, exported PNG bytes) is gathered to rank 0 and combined
  **in image order**, so PQ, box / mask AP, mIoU and the exported files equal a single process's.
  Rank 0 alone writes; the result is broadcast to every rank.
* search (:func:`autopanoptic.engine.search.search_supernet`): the candidates of a batch are dealt
  to ranks and their fitnesses gathered; every rank runs the same deterministic policy, rank 0 alone
  writes the journal.

Without a process group every helper is the identity (rank 0 of 1), so single-process code pays nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import torch

from autopanoptic.errors import AutopanopticError

__all__ = [
    "DistributedError",
    "World",
    "all_gather_objects",
    "all_gather_tensor",
    "barrier",
    "broadcast_object",
    "evaluate_sharded",
    "exit_process",
    "gather_objects",
    "init_from_env",
    "join_wait_group",
    "main_first",
    "reduce_gradients",
    "reduce_mean",
    "shard",
    "wait_for_all",
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

    if _SOLO or not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size())


_SOLO = False
_JOINED = False  # init_from_env joined a process group in this process (exit_process's default)


@contextlib.contextmanager
def solo() -> Iterator[None]:
    """Run a block on this rank as if there were no process group (every helper here is then the
    identity, :func:`world` is rank 0 of 1). The other ranks must not call collectives meanwhile:
    they wait at a :func:`barrier` after it (see ``pipeline.retrain`` with ``retrain.parallel: single``).
    """
    global _SOLO
    before, _SOLO = _SOLO, True
    try:
        yield
    finally:
        _SOLO = before


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
        global _JOINED
        _JOINED = True
        try:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            join_wait_group()
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


WAIT_TIMEOUT = datetime.timedelta(days=7)
"""How long :func:`wait_for_all` lets a rank wait for the others."""
_WAIT_GROUP: Any = None


def join_wait_group() -> None:
    """Create the group :func:`wait_for_all` waits on. Every rank calls it right after joining the
    process group (:func:`init_from_env`, the local workers), in the same order as any other group."""
    import torch.distributed as dist

    global _WAIT_GROUP
    _WAIT_GROUP = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)


def wait_for_all() -> None:
    """Wait for every rank after work whose length differs between ranks: a network retrained by one
    rank alone (``retrain.parallel: single``, its random controls), the trainings ``check-ranking``
    deals, data one rank generates. A plain :func:`barrier` there would hit the process group's
    timeout for collectives (NCCL's default is 10 minutes, gloo's 30) while a rank still trains; this
    one waits on a gloo group of its own whose timeout is :data:`WAIT_TIMEOUT`."""
    import torch.distributed as dist

    if world().active:
        dist.barrier(group=_WAIT_GROUP)


@contextlib.contextmanager
def main_first() -> Iterator[World]:
    """Rank 0 runs the block first (e.g. to generate data), then the other ranks (which then find it)."""
    w = world()
    if w.active and not w.is_main:
        wait_for_all()
    yield w
    if w.active and w.is_main:
        wait_for_all()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    import torch.distributed as dist

    w = world()
    if not w.active:
        return [obj]
    out: list[Any] = [None] * w.size
    dist.all_gather_object(out, obj)
    return out


def all_gather_tensor(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's 1-D tensor ``t`` (lengths may differ; same dtype and device everywhere), in rank
    order: two tensor collectives (the lengths, then the padded data), no pickling; ``[t]`` when
    not distributed."""
    import torch.distributed as dist

    w = world()
    if not w.active:
        return [t]
    n = torch.tensor([t.numel()], dtype=torch.int64, device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(w.size)]
    dist.all_gather(sizes, n)
    lengths = [int(x.item()) for x in sizes]
    if max(lengths) == 0:
        return [t.reshape(-1)[:0] for _ in lengths]
    padded = torch.zeros(max(lengths), dtype=t.dtype, device=t.device)
    padded[: t.numel()] = t.reshape(-1)
    out = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(out, padded)
    return [o[:k] for o, k in zip(out, lengths)]


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (picklable) on rank 0, in rank order; ``None`` on the other ranks;
    ``[obj]`` when not distributed. Unlike :func:`all_gather_objects`, only rank 0 receives the data
    (for payloads that only its writer needs)."""
    import torch.distributed as dist

    w = world()
    if not w.active:
        return [obj]
    out: list[Any] | None = [None] * w.size if w.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank (``obj`` itself when not distributed)."""
    import torch.distributed as dist

    w = world()
    if not w.active:
        return obj
    box = [obj if w.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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


def reduce_gradients(params: Sequence[torch.nn.Parameter], counts: dict[int, int], device: torch.device) -> dict[int, int]:
    """Sum gradients and usage counts over ranks; divide each gradient by its summed count.

    ``counts[id(p)]`` is how many passes *on this rank* reached ``p`` (gradients are un-normalised
    sums over those passes, each pass a mean over the rank's slice of the batch). The result on
    every rank is ``sum_r grad_r / sum_r count_r`` -- for equal slices the mean over passes of the
    global-batch gradient, exactly what one process computes. Parameters no rank used keep
    ``grad = None``; a parameter used elsewhere but not here takes part with a zero gradient.
    Returns the summed counts (``id(p) -> passes``, over all ranks; unused parameters left out).
    """
    import torch.distributed as dist

    n = torch.tensor([float(counts.get(id(p), 0)) for p in params], dtype=torch.float64, device=device)
    dist.all_reduce(n)
    used = [(p, c) for p, c in zip(params, n.tolist()) if c > 0]
    if not used:
        return {}
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
    return {id(p): int(c) for p, c in used}


GATHER_CHUNK = 64
"""Images each rank sends to rank 0 per gather in :func:`evaluate_sharded` (bounds rank 0's memory)."""


@attrs.frozen(eq=False)
class _Image:
    """What one rank sends rank 0 about one image of a sharded evaluation."""

    position: int  # in ``indices`` (image order)
    stats: Any  # PQStats.to_array()
    ap: Any = None  # APRecords (branch_metrics)
    annotation: dict[str, Any] | None = None  # predictions.json entry (export)
    png: bytes | None = None  # exported PNG (export)
    drawing: tuple[Any, Any] | None = None  # (panoptic, segments_info) of the first ``draw`` images


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def evaluate_sharded(model: torch.nn.Module, dataset: Any, indices: Sequence[int], *, batch_size: int = 4,
                     export_dir: str | os.PathLike[str] | None = None, draw: int = 0,
                     draw_dir: str | os.PathLike[str] | None = None, branch_metrics: bool = False,
                     chunk: int = GATHER_CHUNK, **kwargs: Any):
    """:func:`~autopanoptic.engine.evaluate.evaluate` over all ranks, with the single-process result.

    The batches a single process would form (``batch_size`` consecutive images of ``indices``) are
    dealt round-robin to the ranks, so every image goes through the network in the very batch it
    would have in one process. What each image gave -- its PQ statistics, with ``branch_metrics``
    its AP records (:class:`~autopanoptic.data.metrics.APRecords`), with ``export_dir`` its
    ``segments_info`` and PNG bytes, and for the first ``draw`` images its id map -- is gathered to
    rank 0 (``torch.distributed.gather_object`` after the evaluation, ``chunk`` images per rank at a
    time: each rank keeps its own share's compressed PNGs until then, rank 0 receives at most
    ``chunk x ranks`` of them at once and writes them as they arrive) and combined there
    **in image order**: statistics summed, AP records concatenated, ``predictions.json`` written
    with its annotations in image order, the drawings made from the dataset's images. The
    semantic confusion matrices are summed on each rank and the ranks' sums added on rank 0 (integer
    counts: exact in any order, and a matrix per image would be large for many classes).

    Rank 0 alone writes (the PNGs, ``predictions.json``, ``ground_truth.json``, the drawings), with
    the same bytes a single process writes; every rank returns the same
    :class:`~autopanoptic.engine.evaluate.EvalResult` (stats, AP, semantic summary, paths).
    An error on any rank (e.g. an unreadable image) stops every rank with that message.
    ``kwargs`` go to ``evaluate`` (``arch``, ``device``, ``progress``, ...). Without a process
    group this is ``evaluate`` itself.
    """
    from autopanoptic.data import PQStats
    from autopanoptic.data import metrics as M
    from autopanoptic.engine import evaluate as E
    from autopanoptic.io import atomic_write_bytes

    w = world()
    indices = [int(i) for i in indices]
    if not w.active:
        return E.evaluate(model, dataset, indices, batch_size=batch_size, export_dir=export_dir, draw=draw,
                          draw_dir=draw_dir, branch_metrics=branch_metrics, **kwargs)
    if batch_size < 1:
        raise DistributedError(f"batch_size must be >= 1, got {batch_size}")
    if chunk < 1:
        raise DistributedError(f"chunk must be >= 1, got {chunk}")
    categories = dataset.categories
    positions = list(range(len(indices)))
    batches = [positions[s : s + batch_size] for s in range(0, len(positions), batch_size)]
    shares = [[p for b in batches[r :: w.size] for p in b] for r in range(w.size)]
    mine = shares[w.rank]
    export = export_dir is not None
    n_draw = min(int(draw), len(indices)) if draw_dir is not None else 0
    sent: list[_Image] = []
    confusion = M.SemanticConfusion.zeros(categories.num_stuff + 1)

    def keep(r: Any) -> None:
        nonlocal confusion
        p = mine[len(sent)]
        sent.append(_Image(
            position=p, stats=r.stats.to_array(), ap=r.ap,
            annotation=r.annotation() if export else None,
            png=E.encode_prediction_png(r.panoptic) if export else None,
            drawing=(r.panoptic, r.segments_info) if p < n_draw else None,
        ))
        if r.confusion is not None:
            confusion = confusion + r.confusion

    error = None
    try:
        E.evaluate(model, dataset, [indices[p] for p in mine], batch_size=batch_size, on_image=keep,
                   branch_metrics=branch_metrics, **kwargs)
        if len(sent) != len(mine):
            raise DistributedError(f"rank {w.rank}: {len(sent)} images evaluated, {len(mine)} expected")
    except Exception as e:  # every rank must learn of it, or the others would wait for ever
        error = e
    status = all_gather_objects((None if error is None else _one_line(error), confusion.to_array()))
    failed = [(r, msg) for r, (msg, _) in enumerate(status) if msg is not None]
    if failed:
        if error is not None:
            raise error
        r, msg = failed[0]
        raise DistributedError(f"evaluation failed on rank {r}: {msg}")

    received: dict[int, _Image] = {}
    main_error: Exception | None = None  # rank 0 goes on gathering after an error, so no rank waits for ever
    pred_dir = Path(export_dir) / "predictions" if export else None
    rounds = -(-max(len(s) for s in shares) // chunk)
    for k in range(rounds):
        parts = gather_objects(sent[k * chunk : (k + 1) * chunk])
        sent[k * chunk : (k + 1) * chunk] = [None] * len(sent[k * chunk : (k + 1) * chunk])  # gone to rank 0
        if parts is None or main_error is not None:
            continue
        try:
            for part in parts:
                for im in part:
                    if im.png is not None:  # written as it arrives: rank 0 never holds every PNG
                        atomic_write_bytes(pred_dir / im.annotation["file_name"], im.png)
                    received[im.position] = attrs.evolve(im, png=None)
        except Exception as e:
            main_error = e

    result = None
    if w.is_main and main_error is None:
        try:
            if sorted(received) != positions:
                raise DistributedError(f"rank 0 received {len(received)} of {len(positions)} images")
            order = [received[p] for p in positions]
            stats = PQStats.zeros(categories)
            for im in order:  # image order, as one process sums: the same floats
                stats = stats + PQStats.from_array(im.stats, categories)
            drawn = []
            for im in order[:n_draw]:
                pan, segs = im.drawing
                drawn.append(E.draw_prediction(Path(draw_dir) / f"prediction_{len(drawn)}.png",
                                               dataset[indices[im.position]]["image"], pan, segs, categories))
            total = M.SemanticConfusion.zeros(categories.num_stuff + 1)
            for _, matrix in status:
                total = total + M.SemanticConfusion(matrix)
            result = E.finish(
                dataset, indices, stats, export_dir=export_dir, drawn=drawn,
                annotations=[im.annotation for im in order] if export else (),
                ap_records=M.APRecords.concat([im.ap for im in order]) if branch_metrics else None,
                confusion=total if branch_metrics else None,
            )
        except Exception as e:
            main_error = e
    result = broadcast_object(_one_line(main_error) if main_error is not None else result)
    if main_error is not None:
        raise main_error
    if isinstance(result, str):
        raise DistributedError(f"evaluation failed on rank 0: {result}")
    return result


def exit_process(code: Any = 0, *, joined: bool | None = None) -> None:
    """End this process with ``code`` (as ``sys.exit(code)`` would: ``None`` is 0, a string is printed
    and gives 1). In a process that joined a process group (``joined``, by default: whether
    :func:`init_from_env` joined one here), leave without the interpreter's C++ teardown, as
    multiprocessing's fork workers do: finalising a process that ran gloo collectives can abort in a
    C++ destructor ("terminate called without an active exception", exit status -6; seen in CI in a
    worker of :mod:`autopanoptic.engine.workers` and in a ``torchrun`` rank, each time after the work
    had succeeded), which would fail a run that succeeded. The exit functions still run first
    (multiprocessing's finalizers release DataLoader queues' semaphores, logging flushes), and the
    streams are flushed; call it last, after the group is destroyed and everything is written.
    """
    if not (_JOINED if joined is None else joined):
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not change the exit status
            pass
    os._exit(status & 0xFF)
