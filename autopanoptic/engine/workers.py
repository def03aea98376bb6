"""The local process group: every stage uses all the cores of this machine, without ``torchrun``.

:func:`launch` starts ``n`` worker processes with ``torch.multiprocessing`` (spawn), joins them into
one ``torch.distributed`` process group (gloo on CPU; NCCL and ``cuda:RANK`` on CUDA) through a
``TCPStore`` that this process serves on a free port of ``127.0.0.1`` (no port to choose, no race
with another run), and runs ``fn(*args)`` on every rank. The workers see the same environment
variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...), so the library's
``torchrun`` code paths (:mod:`autopanoptic.engine.distributed`) run unchanged: supernet training
deals the strict-fair cycle's passes (:mod:`autopanoptic.engine.parallel`), the search deals its
candidates, retraining shares each batch and evaluation its batches.

Rank 0's return value comes back to the caller. An error on any rank stops every rank (PyTorch's
process monitor ends the others) and is raised here as a :class:`WorkerError` with the failing
rank's one-line message.

>>> default_workers("cpu") == usable_cpus()
True
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from autopanoptic.engine.distributed import exit_process, join_wait_group
from autopanoptic.errors import AutopanopticError

__all__ = ["WorkerError", "default_workers", "launch", "usable_cpus"]


class WorkerError(AutopanopticError, RuntimeError):
    """A worker process failed (the message is that worker's error, in one line)."""


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_workers(device: torch.device | str) -> int:
    """Workers a stage uses unless told: one per usable core on CPU, one on CUDA (one process per GPU
    is ``--workers N`` or ``torchrun``)."""
    return usable_cpus() if torch.device(device).type == "cpu" else 1


def useful_workers(cfg: Any) -> int:
    """The most worker processes a run's supernet training keeps busy, which the default ``--workers``
    stops at: the passes of one strict-fair cycle (``train.parallel: cycle``, one architecture per
    pass; the search deals as many candidates per cycle by default) or the images of one batch
    (``data`` / ``sync``). More workers would wait, and each holds its own copy of the model."""
    if cfg.train.parallel != "cycle":
        return max(1, cfg.train.batch_size)
    from autopanoptic.engine.restrict import OpRestriction
    from autopanoptic.errors import ConfigError
    from autopanoptic.nn.supernet import make_config

    try:
        mc = make_config(cfg.model.preset, 1, 1, **{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in cfg.model.overrides})
        return OpRestriction.build(mc.search_space(), cfg.model.exclude_ops).sub.cycle_length
    except (ConfigError, KeyError, TypeError, ValueError):  # a bad preset or override: the stage says what is wrong
        return usable_cpus()


def _under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _worker(rank: int, n: int, port: int, device: str, threads: int, fn: Callable[..., Any], args: tuple,
            folder: str, timeout: datetime.timedelta | None = None) -> None:
    import torch.distributed as dist

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n),
                       "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if threads:
        torch.set_num_threads(threads)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    try:
        store = dist.TCPStore("127.0.0.1", port, is_master=False)
        dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=rank, world_size=n, timeout=timeout)
        join_wait_group()
        result = fn(*args)
        if rank == 0:
            Path(folder, "result.pkl").write_bytes(pickle.dumps(result))
        if dist.is_initialized():  # nobody tears its group down while another rank is still in a collective
            dist.barrier()
    except BaseException as e:
        text = str(e).strip()
        line = text.splitlines()[0] if text else type(e).__name__
        if not isinstance(e, (AutopanopticError, OSError, ValueError)):
            line = f"{type(e).__name__}: {line}"
        Path(folder, f"error_{rank}.txt").write_text(line)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    # Done, and every rank is past the barrier: leave without the C++ teardown, which can abort
    # (seen in 2 CI runs of tests/engine/test_workers.py, with no rank reporting an error).
    exit_process(0, joined=True)


def launch(n: int, fn: Callable[..., Any], args: tuple = (), *, device: torch.device | str = "cpu",
           threads: int = 1, timeout: datetime.timedelta | None = None) -> Any:
    """Run ``fn(*args)`` on ``n`` local worker processes forming one process group; rank 0's result.

    ``fn`` and ``args`` must be picklable (``fn`` a module-level function). With ``n <= 1``, or
    when this process already is a rank (``torchrun``, or a worker), ``fn(*args)`` runs here.
    ``threads``: PyTorch CPU threads per worker (``0`` = PyTorch's default). ``timeout``: how long a
    collective of the process group may wait (None = PyTorch's default; waits after work of unequal
    length use :func:`~autopanoptic.engine.distributed.wait_for_all`, which has its own).
    """
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    if n <= 1 or _under_torchrun() or (dist.is_available() and dist.is_initialized()):
        return fn(*args)
    if not dist.is_available():
        raise WorkerError("this PyTorch has no torch.distributed; use --workers 1")
    if torch.device(device).type == "cuda" and n > torch.cuda.device_count():
        raise WorkerError(f"--workers {n} on CUDA needs {n} GPUs; this machine has {torch.cuda.device_count()}")
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # served while we wait
    monitor = logging.getLogger("torch.multiprocessing.spawn")  # its "Terminating process" warnings: ours is the error
    level = monitor.level
    monitor.setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="autopanoptic-workers-") as folder:
        try:
            mp.start_processes(_worker, args=(n, store.port, str(device), threads, fn, tuple(args), folder, timeout),
                               nprocs=n, join=True, start_method="spawn")
        except ProcessException as e:
            # the worker that failed first (the others fail when it is gone: "connection closed by peer")
            errors = sorted(Path(folder).glob("error_*.txt"), key=lambda f: f.stat().st_mtime_ns)
            cause = errors[0].read_text() if errors else (
                f"worker {e.error_index} of {n} exited with code {getattr(e, 'exit_code', '?')}")
            raise WorkerError(cause) from None
        finally:
            monitor.setLevel(level)
        return pickle.loads(Path(folder, "result.pkl").read_bytes())
