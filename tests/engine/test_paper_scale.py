"""benchmarks/paper_scale.py at its smallest CPU configuration: it runs the paper-size networks
end to end (supernet step under bf16, retraining step, evaluation) and prices the paper's schedules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = pytest.mark.slow


def test_the_paper_scale_benchmark_runs_on_cpu_and_prices_the_schedules(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("paper_scale", BENCH / "paper_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.main(["--device", "cpu", "--size", "48", "--passes", "1", "--eval-images", "1", "--amp", "bf16",
                     "--deformable", "no", "--no-write"])
    assert [r["what"] for r in rows] == ["supernet step", "retrain step", "evaluation", "data path (1 process)"]
    assert all(r["amp"] == "bf16" for r in rows[:3])
    assert rows[3]["img_per_s"] > 0 and rows[3]["consumed"] > 0
    assert rows[0]["step_s"] > 0 and rows[0]["fwd_img_ms"] > 0 and rows[2]["img_per_s"] > 0
    out = capsys.readouterr().out
    assert "| bf16 |" in out and "hours on 8 devices" in out
