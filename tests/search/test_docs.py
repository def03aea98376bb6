"""The tutorial's code runs (so it cannot rot), and the search modules' docstring examples hold."""

from __future__ import annotations

import doctest
import importlib
import re

import pytest

from conftest import REPO

TUTORIAL = REPO / "docs" / "search-tutorial.md"


def test_tutorial_code_blocks_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{TUTORIAL.name} block {i + 1}", "exec"), namespace)
    assert "evaluations journaled" in capsys.readouterr().out


MODULES = [
    "autopanoptic.search",
    "autopanoptic.search.fair",
    "autopanoptic.search.scoreboard",
    "autopanoptic.search.run",
    "autopanoptic.search.objective",
    "autopanoptic.search.toy",
    "autopanoptic.search.policies.base",
    "autopanoptic.search.policies.path_priority",
    "autopanoptic.search.policies.evolution",
    "autopanoptic.search.policies.random_search",
    "autopanoptic.search.policies.guided",
    "autopanoptic.search.stats",
    "autopanoptic.search.pareto",
    "autopanoptic.search.hull",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
