"""What machine a benchmark ran on: shared by the scripts in benchmarks/ for their docs."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def code_version(repo: Path | None = None) -> str:
    """The commit the code is at, ``+dirty`` when ``autopanoptic/`` has uncommitted changes; read it
    once when a script starts (HEAD may move while it runs)."""
    import subprocess

    repo = repo or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "autopanoptic"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


HAND = "<!-- Written by hand from here on: the script that writes this page keeps it. -->"


def write_page(path: Path, text: str) -> None:
    """Write a benchmark page, keeping what follows the :data:`HAND` marker in the old page (the
    readings an engineer wrote), so regenerating the figures does not erase them."""
    from autopanoptic.io import atomic_write_text

    kept = ""
    if path.exists():
        old = path.read_text()
        if HAND in old:
            kept = old[old.index(HAND):]
    atomic_write_text(path, text.rstrip("\n") + "\n\n" + kept if kept else text)
