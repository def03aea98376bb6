"""The search core never loads torch or autopanoptic.nn."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import autopanoptic.search, autopanoptic.search.toy, autopanoptic.search.demo, autopanoptic.search.run
from autopanoptic.search import run, PathPriority
from autopanoptic.search.spaces import nas_bench_macro
from autopanoptic.search.toy import Landscape
run(PathPriority(cycles=1), nas_bench_macro(), Landscape.random(nas_bench_macro(), 0), seed=0, progress=True)
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.") or m.startswith("autopanoptic.nn"))
print("LOADED:", bad)
"""


def test_search_core_does_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert "LOADED: []" in proc.stdout, proc.stdout
