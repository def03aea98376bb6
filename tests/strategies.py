"""Hypothesis strategies shared by all property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from autopanoptic.search.space import Layer, SearchSpace

GROUPS = ("backbone", "head", "inter")


@st.composite
def search_spaces(draw, min_layers: int = 1, max_layers: int = 60, max_choices: int = 8) -> SearchSpace:
    """Random search spaces: 1..60 layers with 1..8 choices each, groups in blocks."""
    n = draw(st.integers(min_layers, max_layers))
    counts = draw(st.lists(st.integers(1, max_choices), min_size=n, max_size=n))
    group_of = sorted(draw(st.lists(st.sampled_from(GROUPS), min_size=n, max_size=n)), key=GROUPS.index)
    layers = [
        Layer(f"layer{i}", tuple(f"op{j}" for j in range(c)), group_of[i]) for i, c in enumerate(counts)
    ]
    return SearchSpace(layers, name=draw(st.sampled_from(["custom", "test-space"])))


@st.composite
def spaces_and_archs(draw, **kwargs):
    """A random space and a valid architecture of it."""
    space = draw(search_spaces(**kwargs))
    arch = tuple(draw(st.integers(0, n - 1)) for n in space.n_choices)
    return space, arch
