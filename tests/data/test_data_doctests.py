"""The examples in the docstrings of autopanoptic.data run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["format", "pq", "synthetic", "dataset", "visualize", "torch"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(f"autopanoptic.data.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name != "torch":
        assert result.attempted > 0


def test_data_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, autopanoptic.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
