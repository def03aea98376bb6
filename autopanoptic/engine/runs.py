"""Per-run output folders, guarded by a lock file.

Everything a run writes lives in one folder::

    <run>/config.yaml            the resolved configuration (of the last stage that ran)
    <run>/base_config.txt        the --config the run was started with (the CLI's; later commands
                                 without --config start from it)
    <run>/data/                  the synthetic dataset (when generated)
    <run>/supernet/              checkpoint.pt, losses.json
    <run>/search/                journal.jsonl, scoreboard.json, candidates.json
    <run>/arch.json              the chosen architecture
    <run>/retrain/               checkpoint.pt, losses.json
    <run>/eval/                  metrics.json, predictions.json + predictions/*.png
    <run>/report.md, <run>/plots/*.png

:class:`RunDir` takes ``<run>/.lock`` on entry (``with RunDir(path) as run:``) and refuses a second
command in the same folder while the first runs. A lock left behind by a dead process on this host
is taken over.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import attrs

from autopanoptic.errors import AutopanopticError

__all__ = ["RunDir", "RunLockedError"]


class RunLockedError(AutopanopticError, RuntimeError):
    """Another command is using the run folder."""


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not: a killed process whose parent died is one until
    init reaps it, and in a container without an init that reaps orphans it stays one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: the signal said it exists
    return state not in ("Z", "X")


@attrs.define
class RunDir:
    """A run's output folder; use as a context manager to hold its lock.

    >>> import tempfile
    >>> with RunDir(tempfile.mkdtemp()) as run:
    ...     run.path("search", "journal.jsonl").name
    'journal.jsonl'
    """

    root: Path = attrs.field(converter=lambda p: Path(p).expanduser().resolve())
    _locked: bool = attrs.field(default=False, init=False)

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    def path(self, *parts: str) -> Path:
        """``root / parts``, creating the parent folders."""
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLockedError`."""
        self.root.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and holder.get("host") == me["host"] and not _pid_alive(int(holder.get("pid", -1))):
                    self.lock_path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                who = f"process {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
                raise RunLockedError(
                    f"{self.root}: run folder is in use by {who} (lock {self.lock_path}); "
                    "wait for it to finish or use another --out folder"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._locked = True
            return
        raise RunLockedError(f"{self.root}: could not take the lock {self.lock_path}")

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.lock_path.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        """Give the lock back (only if we hold it)."""
        if self._locked:
            self.lock_path.unlink(missing_ok=True)
            self._locked = False

    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
