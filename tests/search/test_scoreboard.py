"""Rank scoring and the Scoreboard: ties, exact order-independence, best / top-k, JSON."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, strategies as st

from autopanoptic.search import FitnessError, Scoreboard, rank_scores, ranks

from strategies import search_spaces

# few distinct values so that ties are common
fitness_values = st.sampled_from([-1.0, 0.0, 0.25, 0.5, 3.0, 1e9])


def test_ranks_and_scores_examples():
    assert ranks([0.1, 0.9, 0.5]) == (2.0, 0.0, 1.0)
    assert rank_scores([0.1, 0.9, 0.5]) == (0.0, 2.0, 1.0)
    assert ranks([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    assert ranks([2.0, 1.0, 2.0, 0.0]) == (0.5, 2.0, 0.5, 3.0)
    assert rank_scores([]) == ()
    assert rank_scores([7.0]) == (0.0,)


@given(st.lists(fitness_values, max_size=40), st.randoms(use_true_random=False))
def test_rank_properties(fits, rnd):
    r = ranks(fits)
    e = len(fits)
    assert sum(r) == e * (e - 1) / 2  # average ranks preserve the total
    assert all((2 * x).is_integer() for x in r)  # integers or half-integers
    for i, j in itertools.combinations(range(e), 2):
        if fits[i] > fits[j]:
            assert r[i] < r[j]
        elif fits[i] == fits[j]:
            assert r[i] == r[j]
    # permuting the batch permutes the ranks
    perm = list(range(e))
    rnd.shuffle(perm)
    r2 = ranks([fits[p] for p in perm])
    assert r2 == tuple(r[p] for p in perm)
    s = rank_scores(fits)
    assert all(a == (e - 1) - b for a, b in zip(s, r))


@pytest.mark.parametrize("bad", [[float("nan")], [float("inf"), 0.0], ["x"], [None]])
def test_non_finite_fitness_is_refused(bad):
    with pytest.raises(FitnessError):
        rank_scores(bad)


@st.composite
def boards_and_batches(draw):
    space = draw(search_spaces(max_layers=12, max_choices=5))
    arch = st.tuples(*[st.integers(0, n - 1) for n in space.n_choices])
    batches = draw(
        st.lists(st.lists(st.tuples(arch, fitness_values), max_size=15), min_size=1, max_size=6)
    )
    return space, batches


def _board(space, batches):
    board = Scoreboard.empty(space)
    for batch in batches:
        board = board.add([a for a, _ in batch], [f for _, f in batch])
    return board


@given(boards_and_batches(), st.randoms(use_true_random=False))
def test_adding_batches_in_any_order_gives_the_same_board(pair, rnd):
    space, batches = pair
    board = _board(space, batches)
    shuffled = list(batches)
    rnd.shuffle(shuffled)
    assert _board(space, shuffled) == board  # exact equality of float scores
    # merging boards built from parts is the same as adding everything to one board
    cut = rnd.randint(0, len(batches))
    assert _board(space, batches[:cut]) + _board(space, batches[cut:]) == board
    assert board.batches == len(batches)
    assert board.evaluations == sum(len(b) for b in batches)
    # within one batch the order of the architectures does not matter either
    inner = [rnd.sample(b, len(b)) for b in batches]
    assert _board(space, inner) == board
    # every batch distributes K(K+1)/2 per layer
    for row in board.scores:
        assert sum(row) == sum(len(b) * (len(b) - 1) / 2 for b in batches)


@given(boards_and_batches())
def test_json_round_trip(pair):
    space, batches = pair
    board = _board(space, batches)
    again = Scoreboard.from_json(json.loads(json.dumps(board.to_json())))
    assert again == board


def test_from_json_rejects_other_objects():
    for bad in ({}, {"format": "x"}, {"format": "autopanoptic-scoreboard", "version": 99}, [1, 2]):
        with pytest.raises(ValueError):
            Scoreboard.from_json(bad)
    obj = Scoreboard.empty((2, 2)).to_json()
    obj["scores"] = [[0.0], [0.0, 0.0]]
    with pytest.raises(ValueError):
        Scoreboard.from_json(obj)


def test_best_breaks_ties_towards_lower_index():
    board = Scoreboard((3, 2), ((1.0, 2.0, 2.0), (0.5, 0.5)))
    assert board.best() == (1, 0)
    assert Scoreboard.empty((4, 4)).best() == (0, 0)


def test_add_validates():
    board = Scoreboard.empty((2, 3))
    with pytest.raises(ValueError):
        board.add([(0, 3)], [1.0])
    with pytest.raises(ValueError):
        board.add([(0,)], [1.0])
    with pytest.raises(FitnessError):
        board.add([(0, 0)], [1.0, 2.0])
    with pytest.raises(ValueError):
        board + Scoreboard.empty((2, 2))


@st.composite
def small_boards(draw):
    space = draw(search_spaces(max_layers=4, max_choices=4))
    scores = tuple(tuple(draw(st.sampled_from([0.0, 0.5, 1.0, 2.5, 3.0])) for _ in range(n)) for n in space.n_choices)
    return space, Scoreboard(space.n_choices, scores)


@given(small_boards(), st.integers(0, 300))
def test_top_k_is_exact(pair, k):
    space, board = pair
    everything = [space.decode(c) for c in range(space.size)]
    expected = sorted(everything, key=lambda a: (-board.total(a), a))[:k]
    assert list(board.top_k(k)) == expected
    assert board.top_k(1) == (board.best(),)


def test_top_k_on_a_large_space_is_fast_and_ordered():
    space_n = (4,) * 40 + (6,) * 7 + (3,) * 9
    board = Scoreboard(space_n, tuple(tuple(float(i % 3 + c) / 2 for c in range(n)) for i, n in enumerate(space_n)))
    top = board.top_k(50)
    totals = [board.total(a) for a in top]
    assert len(set(top)) == 50 and totals == sorted(totals, reverse=True)
    assert top[0] == board.best()
