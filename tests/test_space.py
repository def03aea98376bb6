"""Properties of SearchSpace values and the ready-made spaces."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, strategies as st

from autopanoptic.errors import ArchitectureError
from autopanoptic.search import Layer, SearchSpace, load_arch, save_arch
from autopanoptic.search.spaces import auto_panoptic, nas_bench_macro

from strategies import search_spaces, spaces_and_archs


def test_paper_space_size_and_order():
    space = auto_panoptic()
    assert len(space) == 56
    assert space.size == 4**40 * 6**7 * 3**9
    assert isinstance(space.size, int)
    assert space.cycle_length == 12
    assert [len(ix) for ix in space.groups.values()] == [40, 7, 9]
    assert space.layers[40].name == "mask.0" and space.layers[44].name == "semantic.0"
    assert space.layers[47].name == "f2b.p2" and space.layers[-1].name == "b2f.p6"


def test_smaller_presets_share_the_code():
    space = auto_panoptic(backbone_blocks=(1, 2, 2, 1))
    assert len(space) == 6 + 7 + 9
    assert space.size == 4**6 * 6**7 * 3**9
    with pytest.raises(ValueError):
        auto_panoptic(backbone_blocks=(1, 2, 2))


def test_nas_bench_macro_space():
    space = nas_bench_macro()
    assert space.n_choices == (3,) * 8 and space.cycle_length == 3


@given(search_spaces())
def test_size_and_cycle_length(space):
    assert space.size == math.prod(space.n_choices)
    assert all(space.cycle_length % n == 0 for n in space.n_choices)


@given(spaces_and_archs())
def test_arch_json_round_trips(pair):
    space, arch = pair
    assert space.validate(list(arch)) == arch
    assert space.arch_from_json(space.arch_to_json(arch)) == arch
    assert space.arch_from_json(space.arch_to_named(arch)) == arch
    assert space.arch_from_json(json.loads(json.dumps(space.arch_to_named(arch)))) == arch
    assert space.arch_from_json(list(arch)) == arch
    assert space.decode(space.encode(arch)) == arch


@given(search_spaces())
def test_space_json_round_trips(space):
    again = SearchSpace.from_json(json.loads(json.dumps(space.to_json())))
    assert again == space
    assert again.fingerprint() == space.fingerprint()


@given(spaces_and_archs(), st.data())
def test_validate_names_the_bad_layer(pair, data):
    space, arch = pair
    i = data.draw(st.integers(0, len(arch) - 1))
    bad = list(arch)
    bad[i] = space.n_choices[i] + data.draw(st.integers(0, 5))
    with pytest.raises(ValueError, match=rf"layer {i} \('layer{i}'\).*got index {bad[i]}"):
        space.validate(bad)
    with pytest.raises(ValueError, match="has"):
        space.validate(list(arch) + [0])


def test_validate_rejects_non_ints():
    space = SearchSpace([Layer("a", ("x", "y"))])
    for bad in ([True], ["0"], [0.0], [None]):
        with pytest.raises(ArchitectureError, match="must be an int"):
            space.validate(bad)


def test_layer_validation():
    with pytest.raises(ValueError):
        Layer("a", ())
    with pytest.raises(ValueError):
        Layer("a", ("x", "x"))
    with pytest.raises(ValueError):
        SearchSpace([Layer("a", ("x",)), Layer("a", ("y",))])


def test_save_and_load_arch(tmp_path):
    space = auto_panoptic()
    arch = space.sample(0)
    path = save_arch(space, arch, tmp_path / "arch.json", fitness=0.5)
    obj = json.loads(path.read_text())
    assert obj["fitness"] == 0.5 and list(obj["arch"]) == ["backbone", "head", "inter"]
    assert load_arch(space, path) == arch
    # the grouped form alone, as the original release stored it, loads too
    (tmp_path / "grouped.json").write_text(json.dumps(obj["arch"]))
    assert load_arch(space, tmp_path / "grouped.json") == arch
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArchitectureError, match="bad.json"):
        load_arch(space, tmp_path / "bad.json")
    with pytest.raises(ArchitectureError, match="no such"):
        load_arch(space, tmp_path / "missing.json")
