"""Parameter / MAC counting: the CostTable value, the additive builder against direct counts, the
MAC formulas and the count_macs convention, and SPEC.md's ImageNet-form figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from autopanoptic.errors import ArchitectureError, ConfigError
from autopanoptic.nn.backbone import RETRAIN_WIDTHS, ShuffleNetClassifier, ShuffleNetSupernet
from autopanoptic.nn.counting import (
    CostTable,
    build_cost_table,
    count,
    count_direct,
    cost_table_for,
    covering_archs,
    image_forward,
    module_macs,
)
from autopanoptic.search.spaces import auto_panoptic
from tests.strategies import archs_of

BLOCKS = (1, 1, 2, 1)
WIDTHS = (8, 16, 24, 32, 48)
SPACE = auto_panoptic(backbone_blocks=BLOCKS).subspace("backbone")


@st.composite
def tables_and_archs(draw):
    n_choices = draw(st.lists(st.integers(1, 6), min_size=1, max_size=12))
    ints = st.integers(0, 10**9)
    rows = lambda: [draw(st.lists(ints, min_size=k, max_size=k)) for k in n_choices]  # noqa: E731
    size = draw(st.none() | st.integers(1, 2048))
    table = CostTable(draw(ints), draw(ints), rows(), rows(), image_size=size)
    arch = tuple(draw(st.integers(0, k - 1)) for k in n_choices)
    return table, arch


@given(tables_and_archs())
def test_table_costs_are_base_plus_chosen_entries(ta):
    table, arch = ta
    assert table.params(arch) == table.base_params + sum(int(r[c]) for r, c in zip(table.layer_params, arch))
    assert table.macs(arch) == table.base_macs + sum(int(r[c]) for r, c in zip(table.layer_macs, arch))
    lo, hi = table.bounds()["params"]
    assert lo <= table.params(arch) <= hi
    assert table.cost(arch) == (table.params(arch), table.macs(arch))


@given(tables_and_archs(), st.integers(0, 2 * 10**10), st.integers(0, 2 * 10**10), st.booleans(), st.booleans())
def test_constraint_is_the_budget_predicate(ta, max_p, max_m, use_p, use_m):
    table, arch = ta
    mp, mm = (max_p if use_p else None), (max_m if use_m else None)
    pred = table.constraint(max_params=mp, max_macs=mm)
    expected = (mp is None or table.params(arch) <= mp) and (mm is None or table.macs(arch) <= mm)
    assert pred(arch) is expected
    assert "params<=" in pred.name


@settings(max_examples=20)
@given(tables_and_archs())
def test_json_round_trip(tmp_path_factory, ta):
    table, _ = ta
    again = CostTable.from_json(json.loads(json.dumps(table.to_json())))
    assert again == table and hash(again) == hash(table)
    path = tmp_path_factory.mktemp("t") / "cost.json"
    assert CostTable.load(table.save(path)) == table


def test_table_is_immutable_and_checks_input(tmp_path):
    t = CostTable(1, 2, [[1, 2]], [[3, 4]])
    with pytest.raises(ValueError):
        t.layer_params[0][0] = 5
    with pytest.raises(ArchitectureError):
        t.params((2,))
    with pytest.raises(ArchitectureError):
        t.macs((0, 0))
    with pytest.raises(ConfigError):
        CostTable(1, 2, [[1, 2]], [[3]])
    with pytest.raises(ConfigError):
        CostTable(1, 2, [[-1]], [[3]])
    with pytest.raises(ConfigError):
        CostTable.from_json({"base_params": 1})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        CostTable.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        CostTable.load(tmp_path / "missing.json")


def test_covering_archs_use_every_choice():
    n = [4, 6, 3, 1]
    archs = covering_archs(n)
    assert all({a[i] for a in archs} == set(range(k)) for i, k in enumerate(n))


def test_mac_formulas():
    x = torch.zeros(2, 6, 9, 7)
    conv = nn.Conv2d(6, 4, 3, stride=2, padding=1, groups=2)
    y = conv(x)
    assert module_macs(conv, (x,), y) == y.numel() * 3 * 9
    same = nn.Conv2d(6, 4, 5, padding=2)
    assert module_macs(same, (x,), same(x)) == 2 * 9 * 7 * same.weight.numel()
    lin = nn.Linear(6, 5)
    z = torch.zeros(3, 4, 6)
    assert module_macs(lin, (z,), lin(z)) == 12 * lin.weight.numel()
    up = nn.ConvTranspose2d(6, 4, 2, stride=2)
    assert module_macs(up, (x,), up(x)) == 2 * 9 * 7 * up.weight.numel()
    with pytest.raises(TypeError, match="count_macs"):
        module_macs(nn.ReLU(), (x,), x)


class _Custom(nn.Module):
    """A functional op with its own count: its child conv must not be counted on top."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.inner.weight) + self.inner(x)

    def count_macs(self, inputs, output):
        return 1234


def test_count_macs_convention_replaces_the_children():
    net = nn.Sequential(_Custom(), nn.Conv2d(3, 2, 1, bias=False))
    params, macs = count_direct(net, image_forward(4))
    assert params == 3 * 3 + 3 + 3 * 2
    assert macs == 1234 + 2 * 3 * 16


@pytest.fixture(scope="module")
def sup():
    torch.manual_seed(0)
    return ShuffleNetSupernet(BLOCKS, WIDTHS).eval()


@pytest.fixture(scope="module")
def real_table(sup):
    return build_cost_table(sup, image_forward(48))


@settings(max_examples=10)
@given(archs_of(SPACE))
def test_table_matches_a_direct_count_of_the_extracted_network(sup, real_table, arch):
    direct = count_direct(sup.extract(arch).eval(), image_forward(48))
    assert real_table.cost(arch) == direct
    assert count(sup, arch, 48) == direct


def test_meta_table_equals_the_real_one(sup, real_table):
    assert cost_table_for(sup, 48) == real_table
    assert real_table.image_size == 48 and len(real_table) == 5


class _Chain(nn.Module):
    """Layer 0 choice 1 halves the size, so layer 1's cost depends on layer 0: not additive."""

    def __init__(self):
        super().__init__()
        self.layer_choices = nn.ModuleList(
            [
                nn.ModuleList([nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1, stride=2)]),
                nn.ModuleList([nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 1)]),
            ]
        )

    def forward(self, x, arch):
        for layer, c in zip(self.layer_choices, arch):
            x = layer[c](x)
        return x


def test_non_additive_costs_are_detected():
    archs = [(0, 0), (1, 0), (0, 1), (1, 1)]
    with pytest.raises(ConfigError, match="not additive"):
        build_cost_table(_Chain(), image_forward(8), archs=archs)
    with pytest.raises(ConfigError, match="never use"):
        build_cost_table(_Chain(), image_forward(8), archs=[(0, 0)])


@pytest.mark.parametrize("choice,params,gmacs", [(0, 24.7e6, 3.41), (3, 34.5e6, 4.50)])
def test_spec_imagenet_figures_at_the_retraining_width(choice, params, gmacs):
    """SPEC.md section 1: uniform shuffle3x3 24.7 M / 3.41 GMACs, xception3x3 34.5 M / 4.50 GMACs."""
    with torch.device("meta"):
        net = ShuffleNetClassifier((choice,) * 40, (8, 8, 16, 8), RETRAIN_WIDTHS)
    p, m = count_direct(net.eval(), image_forward(224))
    assert abs(p - params) < 0.05e6
    assert abs(m / 1e9 - gmacs) < 0.005


def test_panoptic_supernet_counts_match_extracted_networks():
    from autopanoptic.nn import build_supernet, extract

    torch.manual_seed(0)
    net = build_supernet("tiny", 2, 2, stage_blocks=(1, 1, 1, 1))
    size = 64
    arch = net.search_space.sample(np.random.default_rng(3))
    expected = count(extract(net, arch), None, size)
    assert count(net, arch, size) == expected
    with pytest.raises(ArchitectureError):
        count(net, None, size)
    with pytest.raises(ArchitectureError):  # the preset has 5 backbone blocks, not 4
        count("tiny", arch, size, num_thing_classes=2, num_stuff_classes=2)
    full = build_supernet("tiny", 2, 2)
    arch = full.search_space.sample(np.random.default_rng(4))
    assert count("tiny", arch, size, num_thing_classes=2, num_stuff_classes=2) == count(full, arch, size)


@settings(max_examples=5)
@given(archs_of(SPACE))
def test_imagenet_form_of_the_supernet_counts_like_standalone_classifiers(arch):
    with torch.device("meta"):
        sup_form = ShuffleNetClassifier(ShuffleNetSupernet(BLOCKS, WIDTHS), last_channels=64, num_classes=10)
        alone = ShuffleNetClassifier(arch, BLOCKS, WIDTHS, last_channels=64, num_classes=10)
    table = cost_table_for(sup_form, 64)
    assert table.cost(arch) == count(alone, None, 64) == count_direct(alone.eval(), image_forward(64))
