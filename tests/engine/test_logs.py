"""Run logs: metrics.jsonl is append-only, flushed, never duplicates a record across resumes, drops
a torn last line; the optional TensorBoard writer gets the same scalars or says how to install it."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopanoptic.engine.logs import LogError, RunLog, read_log, record_key
from autopanoptic.errors import ConfigError


def _step(stage, step, loss=1.0):
    return {"kind": "step", "stage": stage, "step": step, "loss": loss, "lr": 0.1, "images_per_s": 5.0}


def _candidate(n, arch, fitness):
    return {"kind": "candidate", "stage": "search", "n": n, "arch": list(arch), "fitness": fitness, "seconds": 0.5}


RECORDS = st.one_of(
    st.builds(_step, st.sampled_from(["supernet", "retrain"]), st.integers(0, 5), st.floats(0, 10)),
    st.builds(_candidate, st.integers(0, 5), st.lists(st.integers(0, 2), min_size=2, max_size=2), st.floats(0, 1)),
)


@given(sessions=st.lists(st.lists(RECORDS, max_size=8), min_size=1, max_size=4))
def test_resumed_sessions_log_each_record_once_in_first_seen_order(tmp_path_factory, sessions):
    root = tmp_path_factory.mktemp("log")
    expected, seen = [], set()
    for records in sessions:  # each session: the run opened again (a resume) and logging again
        with RunLog.open(root) as log:
            for record in records:
                written = log.write(record)
                assert written == (record_key(record) not in seen)
                if written:
                    seen.add(record_key(record))
                    expected.append(record)
    got = read_log(root / "metrics.jsonl")
    assert [{k: v for k, v in r.items() if k != "time"} for r in got] == expected
    assert all(isinstance(r["time"], float) for r in got)


def test_each_record_is_on_disk_before_the_log_is_closed(tmp_path):
    with RunLog.open(tmp_path) as log:
        log.write(_step("supernet", 0))
        assert [r["step"] for r in read_log(tmp_path / "metrics.jsonl")] == [0]  # flushed, not buffered
        log.write(_step("supernet", 1))
        assert len(read_log(tmp_path / "metrics.jsonl")) == 2


def test_a_torn_last_line_is_dropped_and_that_record_logged_again(tmp_path):
    with RunLog.open(tmp_path) as log:
        log.write(_step("supernet", 0))
    path = tmp_path / "metrics.jsonl"
    path.write_text(path.read_text() + json.dumps(_step("supernet", 1))[:20])  # killed mid-write
    with RunLog.open(tmp_path) as log:
        assert log.write(_step("supernet", 1))
    assert [r["step"] for r in read_log(path)] == [0, 1]
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 2


def test_a_corrupt_line_is_one_clear_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "step"}\nnot json\n')
    with pytest.raises(LogError, match=r"metrics.jsonl: line 2 is not a JSON object"):
        RunLog.open(tmp_path)


def test_a_disabled_log_writes_nothing(tmp_path):
    with RunLog.open(tmp_path, enabled=False) as log:
        assert not log.write(_step("supernet", 0))
    assert not (tmp_path / "metrics.jsonl").exists()


def test_non_finite_values_are_written_as_null(tmp_path):
    with RunLog.open(tmp_path) as log:
        log.write(_step("supernet", 0, loss=float("nan")))
    assert "NaN" not in (tmp_path / "metrics.jsonl").read_text()
    assert read_log(tmp_path / "metrics.jsonl")[0]["loss"] is None


def test_missing_tensorboard_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'autopanoptic\[tensorboard\]'"):
        RunLog.open(tmp_path, tensorboard=True)


def test_tensorboard_gets_the_same_scalars_and_the_best_fitness_so_far(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLog.open(tmp_path, tensorboard=True) as log:
        log.write(_step("supernet", 0, loss=3.0))
        log.write(_step("supernet", 1, loss=2.0))
        for n, f in enumerate([0.2, 0.5, 0.3]):
            log.write(_candidate(n, (n, 0), f))
        log.write({"kind": "eval", "stage": "evaluate", "retrain_steps": 7, "PQ": 0.4, "SQ": 0.7, "RQ": 0.5,
                   "n_images": 3, "seconds": 1.0})
    with RunLog.open(tmp_path, tensorboard=True) as log:  # a resumed search continues the best so far
        log.write(_candidate(3, (3, 0), 0.1))
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()

    def series(tag):
        return [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)]

    assert series("supernet/loss") == [(0, 3.0), (1, 2.0)]
    assert series("search/fitness")[:3] == [(0, 0.2), (1, 0.5), (2, 0.3)]
    # EventAccumulator merges the event files of both sessions
    assert sorted(series("search/best_fitness")) == [(0, 0.2), (1, 0.5), (2, 0.5), (3, 0.5)]
    assert series("evaluate/PQ") == [(7, 0.4)]
