"""The two forms of an objective (batch and one architecture) and a one-line FitnessError for every
wrong shape of what ``evaluate`` returns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopanoptic.search import FitnessError, PathPriority, RandomSearch, read_journal, run
from autopanoptic.search.spaces import nas_bench_macro
from autopanoptic.search.toy import Landscape

SPACE = nas_bench_macro()
LAND = Landscape.random(SPACE, 3)


def _score(arch):
    return LAND.fitness(arch)


@pytest.mark.parametrize("seed", [0, 5])
def test_one_architecture_form_gives_the_batch_result(seed):
    policy = PathPriority(cycles=3)
    assert run(policy, SPACE, _score, seed=seed, progress=False, batch=False) == run(
        policy, SPACE, LAND, seed=seed, progress=False
    )


# Every ordered container of numbers a batch objective may reasonably return.
BATCH_FORMS = [list, tuple, np.asarray, iter, lambda xs: (x for x in xs)]


@pytest.mark.parametrize("form", BATCH_FORMS)
def test_batch_objective_may_return_any_ordered_container(form):
    expected = run(RandomSearch(budget=9, batch_size=3), SPACE, LAND, seed=1, progress=False)
    got = run(RandomSearch(budget=9, batch_size=3), SPACE, lambda archs: form(LAND(archs)), seed=1, progress=False)
    assert got == expected


def test_first_try_with_a_scalar_objective_says_to_pass_batch_false():
    with pytest.raises(FitnessError, match=r"returned float .* pass batch=False") as info:
        run(RandomSearch(budget=4), SPACE, lambda arch: 0.5, seed=0, progress=False)
    assert "\n" not in str(info.value) and "must return one number per architecture" in str(info.value)


def test_batch_flag_must_be_a_bool():
    with pytest.raises(TypeError, match="batch must be True"):
        run(RandomSearch(budget=4), SPACE, LAND, seed=0, progress=False, batch="no")


def test_one_architecture_form_journals_each_result_before_the_next_call(tmp_path):
    journal = tmp_path / "j.jsonl"
    calls = []

    def score(arch):
        if len(calls) == 5:  # fails in the middle of the first batch of 8
            raise RuntimeError("node lost")
        calls.append(arch)
        return _score(arch)

    policy = RandomSearch(budget=16, batch_size=8)
    with pytest.raises(RuntimeError):
        run(policy, SPACE, score, seed=2, journal=journal, progress=False, batch=False)
    _, entries = read_journal(journal)
    assert [a for a, _ in entries] == calls  # every finished call kept, nothing else
    calls.clear()
    resumed = run(policy, SPACE, _score, seed=2, journal=journal, progress=False, batch=False)
    assert resumed == run(policy, SPACE, LAND, seed=2, progress=False)


# Wrong shapes, as functions of the batch (n = len(archs)).
WRONG_BATCH = st.sampled_from(
    [
        ("a scalar", lambda archs: 0.5),
        ("an int", lambda archs: 3),
        ("a numpy scalar", lambda archs: np.float64(0.5)),
        ("a 0-d array", lambda archs: np.array(0.5)),
        ("None", lambda archs: None),
        ("a string", lambda archs: "0.5"),
        ("a dict", lambda archs: {a: 0.5 for a in archs}),
        ("a set", lambda archs: {0.5}),
        ("one too few", lambda archs: [0.5] * (len(archs) - 1)),
        ("one too many", lambda archs: [0.5] * (len(archs) + 1)),
        ("a column", lambda archs: np.zeros((len(archs), 1))),
        ("nested lists", lambda archs: [[0.5]] * len(archs)),
        ("strings", lambda archs: ["0.5"] * len(archs)),
        ("bools", lambda archs: [True] * len(archs)),
        ("a NaN", lambda archs: [0.5] * (len(archs) - 1) + [float("nan")]),
        ("an infinity", lambda archs: [-float("inf")] * len(archs)),
        ("Nones", lambda archs: [None] * len(archs)),
    ]
)

WRONG_ONE = st.sampled_from(
    [
        ("None", lambda arch: None),
        ("a list", lambda arch: [0.5]),
        ("a string", lambda arch: "0.5"),
        ("a bool", lambda arch: False),
        ("a 1-d array", lambda arch: np.array([0.5])),
        ("a NaN", lambda arch: float("nan")),
        ("a tuple", lambda arch: (0.5, 1.0)),
    ]
)


@given(wrong=WRONG_BATCH, batch_size=st.integers(2, 6), seed=st.integers(0, 2**31 - 1))
def test_every_wrong_batch_shape_is_one_line_fitness_error(tmp_path_factory, wrong, batch_size, seed):
    journal = tmp_path_factory.mktemp("j") / "j.jsonl"
    name, objective = wrong
    with pytest.raises(FitnessError) as info:
        run(RandomSearch(budget=12, batch_size=batch_size), SPACE, objective, seed=seed, journal=journal, progress=False)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, name
    assert "evaluate returned" in message and "must return one number per architecture" in message, name
    assert read_journal(journal)[1] == [], name  # nothing of the failed batch was journaled


@given(wrong=WRONG_ONE, seed=st.integers(0, 2**31 - 1))
def test_every_wrong_one_architecture_result_is_one_line_fitness_error(wrong, seed):
    name, objective = wrong
    with pytest.raises(FitnessError) as info:
        run(RandomSearch(budget=4), SPACE, objective, seed=seed, progress=False, batch=False)
    message = str(info.value)
    assert "\n" not in message and "evaluate returned" in message, name
    assert "evaluate(arch) must return one finite number" in message, name
