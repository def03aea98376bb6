"""The `autopanoptic demo` command (search-core demo on a generated landscape)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from autopanoptic_cli.main import main


def test_demo_writes_journals_and_prints_a_table(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--toy", "--out", str(out), "--no-progress", "--seed", "1"])
    assert res.exit_code == 0, res.output
    for label in ("path-priority T=5 E=12", "evolution", "random search", "regret", str(out)):
        assert label in res.output
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["policy"].split(" ")[0]: r for r in summary["rows"]}
    assert rows["path-priority"]["evaluations"] <= 60
    assert rows["evolution"]["evaluations"] == 1000 and rows["random"]["evaluations"] == 300
    assert all(r["regret"] >= 0 for r in rows.values())
    assert all(r["fitness"] + r["regret"] == __import__("pytest").approx(summary["landscape"]["optimum"]) for r in rows.values())
    assert sorted(p.name for p in out.iterdir()) == ["journal-evolution.jsonl", "journal-path-priority.jsonl", "journal-random.jsonl", "summary.json"]
    # a non-empty output folder is refused with one clear line, nothing overwritten
    before = (out / "summary.json").read_bytes()
    res = CliRunner().invoke(main, ["demo", "--toy", "--out", str(out), "--no-progress"])
    assert res.exit_code == 2 and "not empty" in res.output
    assert (out / "summary.json").read_bytes() == before


def test_demo_default_folder_is_per_run(tmp_path, monkeypatch):
    import autopanoptic.search.demo as demo_module
    from autopanoptic.search import PathPriority, RandomSearch

    # the folder logic is what this test is about: small budgets keep it quick
    monkeypatch.setattr(demo_module, "DEMO_POLICIES", (("path-priority T=1", PathPriority(cycles=1)), ("random search", RandomSearch(budget=5))))
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        res = CliRunner().invoke(main, ["demo", "--toy", "--no-progress"])
        assert res.exit_code == 0, res.output
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(name.startswith("demo-") for name in runs)
