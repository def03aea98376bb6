"""Complete checkpoints: written atomically, checksummed, read without running code.

A checkpoint file is one header line followed by a ``torch.save`` payload::

    autopanoptic-checkpoint 2 sha256=<64 hex digits> bytes=<payload length>\\n
    <payload: torch.save of a dict of tensors and plain values>

:func:`save_checkpoint` serialises the state to memory and writes header + payload with
:func:`autopanoptic.io.atomic_write_bytes`, so a crash while saving leaves the previous checkpoint
intact. :func:`load_checkpoint` checks the length and the SHA-256 of the payload before anything is
unpickled (any changed, missing or added byte is reported as damage; the file is hashed in pieces and
the payload read straight from it, so loading needs no second copy of the file in memory), then
unpickles it with
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


def _payload_start(path: Path, f: Any) -> tuple[int, bool]:
    """Where the torch.save payload of the open file ``f`` starts (its checksum verified), and whether
    the file is of the legacy (unchecksummed) format."""
    head = f.read(len(_MAGIC) + 120)  # the header line is about 110 bytes
    if head.startswith(_ZIP):
        return 0, True
    if not head:
        raise _corrupt(path, "empty file")
    if not head.startswith(_MAGIC):
        raise CheckpointError(f"{path}: not an autopanoptic checkpoint, or its header is damaged (no "
                              f"'{_MAGIC.decode().strip()}' line); use a checkpoint autopanoptic wrote")
    m = _HEADER.match(head)
    if m is None:
        raise _corrupt(path, "damaged or incomplete header line")
    size, want = os.fstat(f.fileno()).st_size - m.end(), int(m.group(2))
    if size < want:
        raise _corrupt(path, f"{size} of {want} payload bytes")
    if size > want:
        raise _corrupt(path, f"{size - want} bytes more than the header says")
    digest = hashlib.sha256()
    f.seek(m.end())
    while chunk := f.read(1 << 22):
        digest.update(chunk)
    if digest.hexdigest().encode() != m.group(1):
        raise _corrupt(path, "checksum mismatch: its content was damaged")
    return m.end(), False


class _Window(io.RawIOBase):
    """The open binary file ``f`` from byte ``start`` on, as a seekable file of its own (so that
    ``torch.load`` reads the payload straight from the file instead of from a copy in memory)."""

    def __init__(self, f: Any, start: int):
        super().__init__()
        self._f, self._start = f, start
        f.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._f.tell() - self._start

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos + self._start if whence == 0 else pos, whence) - self._start

    def readinto(self, b: Any) -> int:
        return self._f.readinto(b)


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
        f = open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None
    with f:
        try:
            start, legacy = _payload_start(path, f)
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None
        try:
            with torch.serialization.safe_globals(_legacy_globals() if legacy else []):
                state = torch.load(_Window(f, start), map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 -- a damaged pickle can raise almost anything (EOFError,
            # UnpicklingError, BadZipFile, RuntimeError...): all mean corrupt, unless the unpickler refused a type
            raise _load_error(path, e, legacy) from None
    wanted = LEGACY_FORMAT if legacy else FORMAT
    if not isinstance(state, dict) or state.get("format") != wanted:
        raise CheckpointError(f"{path}: not an autopanoptic checkpoint (no '{wanted}' marker)")
    return state


def _load_error(path: Path, e: Exception, legacy: bool) -> CheckpointError:
    """The :class:`CheckpointError` for ``e``, raised by ``torch.load``."""
    text = str(e).strip()
    detail = text.splitlines()[0] if text else type(e).__name__
    if "Weights only load failed" in text:  # the restricted unpickler refused something
        said = text.split("WeightsUnpickler error:", 1)[-1].strip()
        detail = said.splitlines()[0] if said else detail
        name = _GLOBAL.search(text)
        if name or not legacy:  # an import, or anything odd behind a valid checksum: a crafted file
            what = f"would import or call {name.group(1)}" if name else f"needs more than plain values ({detail})"
            return CheckpointError(
                f"{path}: refused: unpickling it {what} (only tensors and plain values are loaded, no code from "
                "a file runs); autopanoptic did not write it like this: do not use it"
            )
    return _corrupt(path, detail)


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
