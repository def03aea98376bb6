"""Complete checkpoints: written atomically, checksummed, read without running code.

A checkpoint file is one header line followed by a ``torch.save`` payload::

    autopanoptic-checkpoint 2 sha256=<64 hex digits> bytes=<payload length>\\n
    <payload: torch.save of a dict of tensors and plain values>

:func:`save_checkpoint` serialises the state to memory and writes header + payload with
:func:`autopanoptic.io.atomic_write_bytes`, so a crash while saving leaves the previous checkpoint
intact. :func:`load_checkpoint` checks the length and the SHA-256 of the payload before anything is
unpickled (any changed, missing or added byte is reported as damage), then unpickles it with
``torch.load(..., weights_only=True)``: only tensors and plain values (dicts, lists, tuples, numbers,
strings) can come out of a file; a pickle that would import or call anything else is refused.
Every failure is a :class:`~autopanoptic.errors.CheckpointError` with one clear line; the file is
never changed.

Checkpoints of the previous format (``autopanoptic-checkpoint-1``: a bare ``torch.save`` zip, no
checksum) still load, also with ``weights_only=True`` (numpy arrays, which their random-generator
state holds, are the only extra type allowed for them); they carry no checksum, so their damage is
detected only as far as the zip and pickle structure show it. :func:`upgrade_checkpoint` (CLI:
``autopanoptic checkpoint upgrade FILE``) rewrites one in the current format; a resumed run's next
checkpoint is written in the current format anyway.

:func:`rng_state` / :func:`set_rng_state` capture and restore every random generator a training
loop may touch (Python's ``random``, numpy's legacy global generator, torch's CPU and CUDA
generators) in plain form (ints, lists, tensors), so a resumed run continues exactly.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autopanoptic.errors import CheckpointError
from autopanoptic.io import atomic_write_bytes

__all__ = [
    "FORMAT",
    "LEGACY_FORMAT",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "upgrade_checkpoint",
]

FORMAT = "autopanoptic-checkpoint-2"
"""Stored under the key ``format`` of the payload; a payload without it is not one of ours."""
LEGACY_FORMAT = "autopanoptic-checkpoint-1"
"""The ``format`` of checkpoints written before checksums (a bare ``torch.save`` zip file)."""

_MAGIC = b"autopanoptic-checkpoint "
_HEADER = re.compile(rb"autopanoptic-checkpoint 2 sha256=([0-9a-f]{64}) bytes=(0|[1-9][0-9]{0,15})\n")
_ZIP = b"PK\x03\x04"  # what a bare torch.save file (the legacy format) starts with


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, tuples, dicts) to ``path`` atomically.

    >>> import tempfile, pathlib
    >>> p = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "c.pt", {"step": 3})
    >>> load_checkpoint(p)["step"]
    3
    """
    buf = io.BytesIO()
    torch.save({**state, "format": FORMAT}, buf)
    payload = buf.getvalue()
    header = b"%s2 sha256=%s bytes=%d\n" % (_MAGIC, hashlib.sha256(payload).hexdigest().encode(), len(payload))
    return atomic_write_bytes(path, header + payload)


def _corrupt(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: truncated or corrupt checkpoint ({detail}); delete it to start over, or restore a backup"
    )


def _payload(path: Path, blob: bytes) -> tuple[bytes, bool]:
    """The torch.save payload of ``blob`` and whether it is of the legacy (unchecksummed) format."""
    if blob.startswith(_ZIP):
        return blob, True
    if not blob:
        raise _corrupt(path, "empty file")
    if not blob.startswith(_MAGIC):
        raise CheckpointError(f"{path}: not an autopanoptic checkpoint, or its header is damaged (no "
                              f"'{_MAGIC.decode().strip()}' line); use a checkpoint autopanoptic wrote")
    m = _HEADER.match(blob)
    if m is None:
        raise _corrupt(path, "damaged or incomplete header line")
    payload, want = blob[m.end():], int(m.group(2))
    if len(payload) < want:
        raise _corrupt(path, f"{len(payload)} of {want} payload bytes")
    if len(payload) > want:
        raise _corrupt(path, f"{len(payload) - want} bytes more than the header says")
    if hashlib.sha256(payload).hexdigest().encode() != m.group(1):
        raise _corrupt(path, "checksum mismatch: its content was damaged")
    return payload, False


def _legacy_globals() -> list[Any]:
    """numpy arrays (the numpy random state of format-1 checkpoints), under numpy 2's and 1's names."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    return [(_reconstruct, "numpy._core.multiarray._reconstruct"), (_reconstruct, "numpy.core.multiarray._reconstruct"),
            np.ndarray, np.dtype, type(np.dtype(np.uint32))]


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; errors are :class:`CheckpointError`.

    The payload's checksum is verified first; unpickling runs no code (``weights_only=True``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None
    payload, legacy = _payload(path, blob)
    try:
        with torch.serialization.safe_globals(_legacy_globals() if legacy else []):
            state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 -- a damaged pickle can raise almost anything (EOFError,
        # UnpicklingError, BadZipFile, RuntimeError...): all mean corrupt, unless the unpickler refused a type
        text = str(e).strip()
        detail = text.splitlines()[0] if text else type(e).__name__
        if "Weights only load failed" in text:  # the restricted unpickler refused something
            said = text.split("WeightsUnpickler error:", 1)[-1].strip()
            detail = said.splitlines()[0] if said else detail
            name = _GLOBAL.search(text)
            if name or not legacy:  # an import, or anything odd behind a valid checksum: a crafted file
                what = f"would import or call {name.group(1)}" if name else f"needs more than plain values ({detail})"
                raise CheckpointError(
                    f"{path}: refused: unpickling it {what} (only tensors and plain values are loaded, no code from "
                    "a file runs); autopanoptic did not write it like this: do not use it"
                ) from None
        raise _corrupt(path, detail) from None
    wanted = LEGACY_FORMAT if legacy else FORMAT
    if not isinstance(state, dict) or state.get("format") != wanted:
        raise CheckpointError(f"{path}: not an autopanoptic checkpoint (no '{wanted}' marker)")
    return state


def upgrade_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Rewrite a legacy (format-1, unchecksummed) checkpoint in the current format, atomically.

    Returns ``False`` (and changes nothing) when ``path`` already is in the current format.
    """
    path = Path(path)
    state = load_checkpoint(path)
    if state["format"] == FORMAT:
        return False
    if isinstance(state.get("rng"), dict) and "numpy" in state["rng"]:
        state["rng"] = {**state["rng"], "numpy": _plain_numpy_state(state["rng"]["numpy"])}
    save_checkpoint(path, state)
    return True


def _plain_numpy_state(state: Any) -> dict[str, Any]:
    """numpy's legacy global generator state (tuple or dict form) as ints, a list and a float."""
    if isinstance(state, dict):
        return state
    name, key, pos, has_gauss, gauss = state
    return {"bit_generator": str(name), "key": [int(k) for k in key], "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def rng_state() -> dict[str, Any]:
    """The state of every global random generator (python, numpy, torch CPU and CUDA), as plain values."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _plain_numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (also the numpy array form of format-1 checkpoints)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = _plain_numpy_state(state["numpy"])
    np.random.set_state((npy["bit_generator"], np.asarray(npy["key"], dtype=np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
