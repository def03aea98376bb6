"""Latency tables: the value (predictor, JSON round trip, refusal of other devices / files), the
linear correction, and a real (tiny, one-repeat) measurement on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from autopanoptic.errors import ArchitectureError, ConfigError
from autopanoptic.nn import build_supernet
from autopanoptic.nn.latency import (
    LatencyKey,
    LatencyTable,
    build_latency_table,
    check_latency,
    device_name,
    fit_correction,
)

ms = st.floats(0, 1000, allow_nan=False, allow_infinity=False)


@st.composite
def tables_and_archs(draw):
    n_choices = draw(st.lists(st.integers(1, 5), min_size=1, max_size=10))
    layers = [(f"l{i}", tuple(f"op{j}" for j in range(k))) for i, k in enumerate(n_choices)]
    key = LatencyKey(draw(st.sampled_from(["cpu: x", "cuda: y"])), "2.5.1", (draw(st.integers(1, 900)), 64), 1,
                     "tiny", (16, 32, 64, 128, 256), 2, 3, layers)
    rows = [draw(st.lists(ms, min_size=k, max_size=k)) for k in n_choices]
    table = LatencyTable(key, draw(ms), rows, scale=draw(st.floats(0.5, 2)), repeats=3)
    arch = tuple(draw(st.integers(0, k - 1)) for k in n_choices)
    return table, arch


@given(tables_and_archs())
def test_prediction_is_the_fixed_cost_plus_the_scaled_sum_of_the_chosen_entries(ta):
    table, arch = ta
    expected = table.fixed_ms + table.scale * sum(float(table.layer_ms[l][c]) for l, c in enumerate(arch))
    assert table.predict(arch) == pytest.approx(expected)
    lo, hi = table.bounds()
    assert lo - 1e-9 <= table.predict(arch) <= hi + 1e-9
    assert table.constraint(table.predict(arch))(arch) and not table.constraint(lo - 1)(arch)


@given(tables_and_archs())
def test_json_round_trip(ta):
    table, _ = ta
    again = LatencyTable.from_json(json.loads(json.dumps(table.to_json())))
    assert again == table and hash(again) == hash(table)


def test_save_and_load_atomically(tmp_path):
    table = LatencyTable(LatencyKey("cpu: x", "2.5", 64, 1, "tiny", (2,) * 5, 1, 1, [("l", ("a", "b"))]), 3.0, [[1, 2]])
    path = table.save(tmp_path / "t.json")
    assert LatencyTable.load(path) == table
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary file left


def test_architectures_that_do_not_fit_are_refused():
    table = LatencyTable(LatencyKey("cpu: x", "2.5", 64, 1, "tiny", (2,) * 5, 1, 1, [("l", ("a", "b"))]), 3.0, [[1, 2]])
    for bad in [(2,), (0, 0), (-1,)]:
        with pytest.raises(ArchitectureError, match="does not fit"):
            table.predict(bad)


def test_a_table_of_another_device_torch_or_size_is_refused_naming_the_difference():
    table = LatencyTable(LatencyKey("cpu: A", "2.5", (64, 96), 1, "tiny", (2,) * 5, 1, 1, [("l", ("a",))]), 1.0, [[1]])
    assert table.require(device="cpu: A", torch_version="2.5", image_size=(64, 96)) is table
    with pytest.raises(ConfigError, match=r"device 'cpu: A', not 'cuda: B'.*latency build"):
        table.require(device="cuda: B")
    with pytest.raises(ConfigError, match=r"torch version '2.5', not '2.6'"):
        table.require(torch_version="2.6")
    with pytest.raises(ConfigError, match=r"image size \(64, 96\), not \(64, 64\)"):
        table.require(image_size=64)
    with pytest.raises(ConfigError, match="layers and ops differ"):
        table.require(layers=[("l", ("a", "b"))])


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"format": "autopanoptic-latency-table/1"}', "\x80\x81",
                                  '{"format": "autopanoptic-latency-table/1", "key": {"device": 1}}'])
def test_anything_but_a_table_is_refused_clearly(tmp_path, text):
    path = tmp_path / "t.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match="not a latency table"):
        LatencyTable.load(path)
    with pytest.raises(ConfigError, match="not found"):
        LatencyTable.load(tmp_path / "missing.json")


def test_a_negative_or_non_finite_time_is_refused():
    key = LatencyKey("cpu: x", "2.5", 64, 1, "tiny", (2,) * 5, 1, 1, [("l", ("a", "b"))])
    for rows in ([[1, -1]], [[1, float("nan")]], [[1]]):
        with pytest.raises(ValueError):
            LatencyTable(key, 1.0, rows)


@given(st.lists(st.floats(0, 100), min_size=8, max_size=20, unique=True), st.floats(0.2, 5), st.floats(-50, 50))
def test_the_correction_recovers_an_exact_line(x, scale, fixed):
    y = [fixed + scale * v for v in x]
    if np.ptp(x) < 1e-3:
        return
    f, s = fit_correction(x, y)
    assert s == pytest.approx(scale, rel=1e-6, abs=1e-6) and f == pytest.approx(fixed, rel=1e-6, abs=1e-4)


def test_few_networks_give_a_median_offset_and_no_scale():
    f, s = fit_correction([1.0, 2.0, 3.0], [11.0, 12.0, 50.0])
    assert (f, s) == (10.0, 1.0)  # the outlier moves the median less than a mean


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    sup = build_supernet("tiny", 2, 3, stage_blocks=(1, 1, 1, 1), widths=(8, 16, 24, 32, 48))
    return sup, build_latency_table(sup, (64, 96), warmup=0, repeats=1, calibrate=0, threads=1)


def test_a_measured_table_is_keyed_by_this_machine_and_network(measured):
    sup, table = measured
    k = table.key
    assert (k.device, k.torch_version, k.image_size, k.threads) == (device_name("cpu"), torch.__version__, (64, 96), 1)
    assert (k.preset, k.widths, k.num_thing_classes, k.num_stuff_classes) == ("tiny", (8, 16, 24, 32, 48), 2, 3)
    assert table.n_choices == sup.search_space.n_choices
    assert len(table.calibration) == max(sup.search_space.n_choices)  # the covering networks
    assert table.require_network(sup.config, sup.search_space) is table


def test_measured_entries_order_ops_by_their_cost(measured):
    sup, table = measured
    names = [layer.name for layer in sup.search_space.layers]
    mask = table.layer_ms[names.index("mask.0")]
    ops = sup.search_space.layers[names.index("mask.0")].ops
    # a 5x5 deformable conv on 14x14 RoIs costs far more than a depthwise-separable 3x3 (>10x on CPU)
    assert mask[ops.index("dfconv5x5")] > 3 * mask[ops.index("dwconv3x3")]
    assert all((row > 0).all() for row in table.layer_ms)


def test_the_check_compares_predictions_with_end_to_end_timings(measured):
    sup, table = measured
    archs = [sup.search_space.sample(s) for s in range(2)]
    res = check_latency(table, sup.config, archs, warmup=0, repeats=1)
    assert res.archs == tuple(archs) and all(m > 0 for m in res.measured_ms)
    assert res.predicted_ms == tuple(table.predict(a) for a in archs)
    assert res.worst_error >= res.median_error >= 0 and "2 networks" in res.summary()
    other = LatencyTable(attrs_evolve_key(table, device="cuda: elsewhere"), table.fixed_ms, table.layer_ms)
    with pytest.raises(ConfigError, match="cuda: elsewhere"):
        check_latency(other, sup.config, archs)


def attrs_evolve_key(table, **changes):
    import attrs

    return attrs.evolve(table.key, **changes)


def test_docstring_examples_run():
    import doctest

    import autopanoptic.nn.latency as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
