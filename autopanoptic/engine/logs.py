"""Run logs: ``<run>/metrics.jsonl`` as a run goes, and optionally TensorBoard, behind one interface.

Every stage appends one JSON object per line to ``<run>/metrics.jsonl``:

- a training step (``kind: "step"``): ``stage`` (``supernet`` / ``retrain``), ``step``, ``lr``,
  each loss term and ``loss`` (their sum), ``images_per_s``;
- a search candidate (``kind: "candidate"``): ``stage: "search"``, ``n`` (evaluation order),
  ``arch`` (full-space choice indices), ``fitness`` (PQ on the search-validation split, 0-1),
  ``seconds`` (BN recalibration + evaluation of that architecture);
- an evaluation (``kind: "eval"``): ``stage: "evaluate"``, ``retrain_steps``, ``PQ`` / ``SQ`` /
  ``RQ`` of All, Things and Stuff (``PQ_Things`` ...; 0-1), ``n_images``, ``seconds``.

Every record also has ``time`` (Unix seconds). Only rank 0 writes (other ranks get a log that
drops everything). Each line is flushed as it is written, so a killed run keeps what it logged;
a partly written last line (killed mid-write) is dropped when the log is opened again. A resumed
run repeats the steps after its last checkpoint and re-evaluates an unjournaled search batch:
records are keyed (``stage`` + ``step``, ``stage`` + ``arch``, ``stage`` + ``retrain_steps``) and a
key already in the file is not written again, so the file never holds two records of one thing.

With ``log.tensorboard: true`` the same records also go to TensorBoard event files in
``<run>/tensorboard/`` as scalars (``supernet/loss``, ``search/fitness``, ``search/best_fitness``,
``evaluate/PQ`` ...); this needs the optional extra ``pip install 'autopanoptic[tensorboard]'``.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> with RunLog.open(root) as log:
...     log.write({"kind": "step", "stage": "supernet", "step": 0, "loss": 2.5, "lr": 0.02})
...     log.write({"kind": "step", "stage": "supernet", "step": 0, "loss": 2.5, "lr": 0.02})  # a repeat
>>> [(r["stage"], r["step"]) for r in read_log(root / "metrics.jsonl")]
[('supernet', 0)]
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from autopanoptic.errors import AutopanopticError, ConfigError
from autopanoptic.io import atomic_write_text

__all__ = ["LOG_NAME", "TENSORBOARD_DIR", "LogError", "RunLog", "check_tensorboard", "read_log", "record_key"]

LOG_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"

TENSORBOARD_MISSING = (
    "log.tensorboard=true needs TensorBoard, which is not installed: pip install 'autopanoptic[tensorboard]' "
    "(or set log.tensorboard=false)"
)


class LogError(AutopanopticError, ValueError):
    """A run log is not valid JSON lines."""


def record_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a record: a repeat of the same key is not written twice.

    >>> record_key({"kind": "candidate", "stage": "search", "n": 3, "arch": [0, 2], "fitness": 0.4})
    ('candidate', 'search', (0, 2))
    """
    kind = record.get("kind")
    if kind == "step":
        return (kind, record.get("stage"), record.get("step"))
    if kind == "candidate":
        return (kind, record.get("stage"), tuple(record.get("arch", ())))
    if kind == "eval":
        return (kind, record.get("stage"), record.get("retrain_steps"))
    return (kind, record.get("stage"), json.dumps(record, sort_keys=True))


def _complete_lines(path: Path) -> tuple[list[str], bool]:
    """The complete lines of ``path`` and whether a partial last line followed them."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return [], False
    lines = text.split("\n")
    partial = lines.pop() != ""
    return [line for line in lines if line.strip()], partial


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` in order (a partly written last line is ignored).

    Raises :class:`LogError` naming the file and line when a complete line is not a JSON object.
    """
    path = Path(path)
    lines, _ = _complete_lines(path)
    out = []
    for lineno, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            raise LogError(f"{path}: line {lineno} is not a JSON object; move the file away to start a new log")
        out.append(obj)
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_tensorboard() -> None:
    """Raise :class:`ConfigError` saying how to install TensorBoard if it is missing."""
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it; its own error names no extra)
    except ImportError:
        raise ConfigError(TENSORBOARD_MISSING) from None


class _TensorBoard:
    """Scalars of the log records in a ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, logdir: Path):
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(logdir))

    def write(self, record: dict[str, Any], best: float | None) -> None:
        kind, stage = record.get("kind"), record.get("stage")
        w = self._writer
        if kind == "step":
            for name, value in record.items():
                if name not in ("kind", "stage", "step", "time") and isinstance(value, (int, float)):
                    w.add_scalar(f"{stage}/{name}", value, record["step"])
        elif kind == "candidate":
            w.add_scalar(f"{stage}/fitness", record["fitness"], record["n"])
            w.add_scalar(f"{stage}/best_fitness", best, record["n"])
            w.add_scalar(f"{stage}/seconds", record["seconds"], record["n"])
        elif kind == "eval":
            for name, value in record.items():
                if name.startswith(("PQ", "SQ", "RQ")) and isinstance(value, (int, float)):
                    w.add_scalar(f"{stage}/{name}", value, record["retrain_steps"])
        w.flush()

    def close(self) -> None:
        self._writer.close()


class RunLog:
    """The log of one run folder. Use as a context manager; :meth:`write` appends one record."""

    def __init__(self, path: Path | None, tensorboard: _TensorBoard | None = None):
        self.path = path
        self._tb = tensorboard
        self._seen: set[tuple[Any, ...]] = set()
        self._f = None
        self._best: float | None = None
        if path is None:
            return
        lines, partial = _complete_lines(path)
        if partial:  # killed mid-write: keep the complete lines only
            atomic_write_text(path, "".join(line + "\n" for line in lines))
        for record in read_log(path):
            self._seen.add(record_key(record))
            self._track_best(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")

    @classmethod
    def open(cls, run_root: str | os.PathLike[str], *, tensorboard: bool = False, enabled: bool = True) -> RunLog:
        """The log of ``run_root`` (``enabled=False``, e.g. on ranks other than 0: a log that drops
        everything). Raises :class:`ConfigError` when ``tensorboard`` is asked for but not installed."""
        if not enabled:
            return cls(None)
        root = Path(run_root)
        tb = _TensorBoard(root / TENSORBOARD_DIR) if tensorboard else None
        return cls(root / LOG_NAME, tb)

    @classmethod
    def disabled(cls) -> RunLog:
        """A log that drops everything."""
        return cls(None)

    @property
    def best_fitness(self) -> float | None:
        """The best candidate fitness logged so far (in this file), or ``None``."""
        return self._best

    def write(self, record: dict[str, Any]) -> bool:
        """Append ``record`` (adding ``time``) unless its :func:`record_key` is already logged.

        Returns whether it was written.
        """
        if self._f is None:
            return False
        key = record_key(record)
        if key in self._seen:
            return False
        self._seen.add(key)
        record = {**{k: _json_safe(v) for k, v in record.items()}, "time": round(time.time(), 3)}
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        self._track_best(record)
        if self._tb is not None:
            self._tb.write(record, self._best)
        return True

    def _track_best(self, record: dict[str, Any]) -> None:
        f = record.get("fitness")
        if record.get("kind") == "candidate" and isinstance(f, (int, float)):
            self._best = f if self._best is None else max(self._best, f)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
