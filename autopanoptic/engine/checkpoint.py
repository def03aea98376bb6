"""Complete checkpoints, written atomically.

A checkpoint is one ``torch.save`` of a dict; :func:`save_checkpoint` serialises it to memory and
writes it with :func:`autopanoptic.io.atomic_write_bytes`, so a crash while saving leaves the
previous checkpoint intact. :func:`load_checkpoint` turns a missing, truncated or foreign file into a
:class:`~autopanoptic.errors.CheckpointError` with one clear line.

:func:`rng_state` / :func:`set_rng_state` capture and restore every random generator a training
loop may touch (Python's ``random``, numpy's legacy global generator, torch's CPU and CUDA
generators), so a resumed run continues exactly.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autopanoptic.errors import CheckpointError
from autopanoptic.io import atomic_write_bytes

__all__ = ["FORMAT", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]

FORMAT = "autopanoptic-checkpoint-1"
"""Stored under the key ``format``; a file without it is not one of ours."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically.

    >>> import tempfile, pathlib
    >>> p = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "c.pt", {"step": 3})
    >>> load_checkpoint(p)["step"]
    3
    """
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; errors are :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 -- a damaged pickle can raise almost anything (EOFError,
        # UnpicklingError, BadZipFile, but also ModuleNotFoundError, AttributeError, TypeError...): all mean corrupt
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({first}); delete it to start over, or restore a backup"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an autopanoptic checkpoint (no '{FORMAT}' marker)")
    return state


def rng_state() -> dict[str, Any]:
    """The state of every global random generator (python, numpy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
