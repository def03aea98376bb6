"""The run loop: journal format, resume, corrupt / foreign journals, caching, errors, determinism."""

from __future__ import annotations

import json
import zlib
import subprocess
import sys

import pytest

from autopanoptic.errors import JournalError
from autopanoptic.search import Evolution, FitnessError, PathPriority, RandomSearch, read_journal, run
from autopanoptic.search.spaces import auto_panoptic, nas_bench_macro
from autopanoptic.search.toy import Landscape

SPACE = auto_panoptic(backbone_blocks=(1, 1, 2, 1))
LAND = Landscape.random(SPACE, 0)


def test_journal_records_every_evaluation_in_order(tmp_path):
    path = tmp_path / "j.jsonl"
    result = run(PathPriority(cycles=2), SPACE, LAND, seed=4, journal=path, progress=False)
    header, entries = read_journal(path)
    assert header["format"] == "autopanoptic-search-journal" and header["version"] == 2
    assert header["space_fingerprint"] == SPACE.fingerprint() and header["seed"] == 4
    assert header["policy"] == {"type": "PathPriority", "cycles": 2, "models_per_cycle": None, "constraint": None, "max_tries": 1000}
    assert entries == list(result.history)
    lines = path.read_text().splitlines()
    assert [json.loads(x)["n"] for x in lines[1:]] == list(range(len(entries)))
    assert all(line == sealed(_unsealed(line)) for line in lines)  # every line ends in its own checksum


def sealed(record: dict) -> str:
    """A journal line as docs/reference/search.md specifies it: the JSON text without its closing
    brace, then ``, "crc32": "<CRC-32 of that text, 8 lower-case hex digits>"}``."""
    body = json.dumps(record)[:-1]
    return body + ', "crc32": "%08x"}' % zlib.crc32(body.encode())


def _unsealed(line: str) -> dict:
    obj = json.loads(line)
    del obj["crc32"]
    return obj


def test_repeated_architectures_are_evaluated_once():
    space = nas_bench_macro()  # 3 choices: fair cycles repeat architectures across rounds
    seen = []

    def evaluate(archs):
        seen.extend(archs)
        return LAND_MACRO(archs)

    result = run(PathPriority(cycles=40), space, evaluate, seed=0, progress=False)
    assert len(seen) == len(set(seen)) == result.n_evaluations
    assert result.n_evaluations < 40 * 3  # some were repeats, answered from the cache
    board = result.state.board
    assert board.evaluations == 40 * 3  # the scoreboard still ranks every proposal


LAND_MACRO = Landscape.random(nas_bench_macro(), 1)


def test_evaluate_must_return_one_finite_fitness_per_architecture():
    with pytest.raises(FitnessError, match="2 fitnesses for"):
        run(RandomSearch(budget=5, batch_size=5), SPACE, lambda a: [0.0, 1.0], seed=0, progress=False)
    with pytest.raises(FitnessError, match="finite"):
        run(RandomSearch(budget=5), SPACE, lambda a: [float("nan")] * len(a), seed=0, progress=False)


def _make_journal(tmp_path, policy=None, seed=0):
    path = tmp_path / "j.jsonl"
    run(policy or RandomSearch(budget=6, batch_size=2), SPACE, LAND, seed=seed, journal=path, progress=False)
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: "not a journal\n", "not a search journal"),
        (lambda t: t + '{"n": 6, "arch": [0], "fit', "incomplete"),
        (lambda t: t + sealed({"n": 9, "arch": [0, 0], "fitness": 1.0}) + "\n", "line 8"),
        (lambda t: t + sealed({"n": 6, "arch": "x", "fitness": 1.0}) + "\n", "line 8"),
        (lambda t: t + sealed({"n": 6, "arch": [0], "fitness": 1.0, "extra": 1}) + "\n", "line 8"),
        (lambda t: t + '{"n": 6, "arch": [0], "fitness": 1.0}\n', "line 8 has no checksum"),
        (lambda t: t + "garbage\n", "corrupt"),
        (lambda t: t.replace('"fitness": ', '"fitness": 1', 1), "line 2 is damaged"),
        (lambda t: t.replace('"version": 2', '"version": 7', 1), "line 1 is damaged"),
        (lambda t: "\n".join([sealed({**_unsealed(t.splitlines()[0]), "version": 7}), *t.splitlines()[1:]]) + "\n",
         "version 7"),
    ],
)
def test_corrupt_journal_is_refused_and_left_untouched(tmp_path, damage, message):
    path = _make_journal(tmp_path)
    bad = damage(path.read_text())
    path.write_text(bad)
    with pytest.raises(JournalError, match=message):
        run(RandomSearch(budget=6, batch_size=2), SPACE, LAND, seed=0, journal=path, progress=False)
    assert path.read_text() == bad


def test_binary_journal_is_refused(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(JournalError, match="not a search journal"):
        run(RandomSearch(budget=3), SPACE, LAND, seed=0, journal=path, progress=False)
    assert path.read_bytes() == b"\xff\xfe\x00"


@pytest.mark.parametrize(
    ("policy", "space", "seed", "field"),
    [
        (RandomSearch(budget=6, batch_size=2), SPACE, 1, "seed"),
        (RandomSearch(budget=7, batch_size=2), SPACE, 0, "policy"),
        (Evolution(), SPACE, 0, "policy"),
        (RandomSearch(budget=6, batch_size=2), auto_panoptic(backbone_blocks=(1, 1, 1, 1)), 0, "space_fingerprint"),
    ],
)
def test_foreign_journal_is_refused_and_left_untouched(tmp_path, policy, space, seed, field):
    path = _make_journal(tmp_path)
    before = path.read_bytes()
    with pytest.raises(JournalError, match=f"another run \\({field}"):
        run(policy, space, Landscape.random(space, 0), seed=seed, journal=path, progress=False)
    assert path.read_bytes() == before


def test_journal_of_a_different_code_path_is_detected(tmp_path):
    path = _make_journal(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    entry = _unsealed(lines[1])
    entry["arch"] = [(c + 1) % n for c, n in zip(entry["arch"], SPACE.n_choices)]
    lines[1] = sealed(entry) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(JournalError, match="evaluation 0 in the journal"):
        run(RandomSearch(budget=6, batch_size=2), SPACE, LAND, seed=0, journal=path, progress=False)


def test_empty_journal_file_is_started(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text("")
    result = run(RandomSearch(budget=3), SPACE, LAND, seed=0, journal=path, progress=False)
    assert read_journal(path)[1] == list(result.history)


def test_progress_bar_shows_best_fitness(capsys):
    run(RandomSearch(budget=4, batch_size=2), SPACE, LAND, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "RandomSearch" in err and "best=" in err and "4/4" in err


SUBPROCESS = """
import json
from autopanoptic.search import Evolution, PathPriority, RandomSearch, run
from autopanoptic.search.spaces import auto_panoptic
from autopanoptic.search.toy import Landscape
space = auto_panoptic()
land = Landscape.random(space, 2, noise=0.3)
out = {}
for name, p in [("pp", PathPriority(cycles=2)), ("evo", Evolution(population=10, generations=3, mutations=4, crossovers=4, top_k=3)), ("rs", RandomSearch(budget=10))]:
    r = run(p, space, land, seed=9, progress=False)
    out[name] = [list(r.best), [[list(a), f] for a, f in r.history]]
print(json.dumps(out))
"""


def test_same_seed_same_proposals_in_another_process():
    proc = subprocess.run([sys.executable, "-c", SUBPROCESS], capture_output=True, text=True, check=True)
    theirs = json.loads(proc.stdout)
    space = auto_panoptic()
    land = Landscape.random(space, 2, noise=0.3)
    ours = {}
    for name, p in [("pp", PathPriority(cycles=2)), ("evo", Evolution(population=10, generations=3, mutations=4, crossovers=4, top_k=3)), ("rs", RandomSearch(budget=10))]:
        r = run(p, space, land, seed=9, progress=False)
        ours[name] = [list(r.best), [[list(a), f] for a, f in r.history]]
    assert theirs == ours


def _version_1(text: str) -> str:
    """The same journal as the previous release wrote it: version 1, no checksums."""
    lines = [_unsealed(x) for x in text.splitlines()]
    lines[0]["version"] = 1
    return "".join(json.dumps(x) + "\n" for x in lines)


def test_a_version_1_journal_without_checksums_still_resumes_and_new_lines_get_checksums(tmp_path):
    full = run(RandomSearch(budget=6, batch_size=2), SPACE, LAND, seed=0, journal=tmp_path / "ref.jsonl",
               progress=False)
    reference = (tmp_path / "ref.jsonl").read_text().splitlines()
    path = tmp_path / "old.jsonl"
    old = _version_1("".join(x + "\n" for x in reference[:3]))  # header + 2 evaluations
    path.write_text(old)
    calls = []
    again = run(RandomSearch(budget=6, batch_size=2), SPACE, lambda a: calls.append(a) or LAND(a), seed=0,
                journal=path, progress=False)
    assert again.history == full.history and sum(len(c) for c in calls) == 4  # 2 replayed, 4 evaluated
    lines = path.read_text().splitlines()
    assert path.read_text().startswith(old) and lines[3:] == reference[3:]  # appended lines are sealed
    assert read_journal(path)[1] == list(full.history)
    # a line without a checksum after a sealed one is damage, not an old journal
    path.write_text("\n".join(lines[:4] + [json.dumps(_unsealed(lines[4]))] + lines[5:]) + "\n")
    with pytest.raises(JournalError, match="line 5 has no checksum"):
        read_journal(path)
    # and a version-2 journal must be sealed throughout
    path.write_text("\n".join([reference[0], json.dumps(_unsealed(reference[1])), *reference[2:]]) + "\n")
    with pytest.raises(JournalError, match="line 2 has no checksum"):
        read_journal(path)


def test_every_single_byte_change_of_a_journal_is_detected(tmp_path):
    """Every position of a real journal (1080 bytes), each changed to another byte (seeded): always refused."""
    from tests.strategies import single_byte_changes

    path = tmp_path / "j.jsonl"
    run(RandomSearch(budget=6, batch_size=2), SPACE, LAND, seed=0, journal=path, progress=False)
    blob = path.read_bytes()
    accepted, tried = [], 0
    for i, xor in single_byte_changes(path, seed=16):
        tried += 1
        try:
            read_journal(path)
        except JournalError:
            continue
        accepted.append((i, xor))
    assert accepted == [] and tried == len(blob) > 500
    assert path.read_bytes() == blob and read_journal(path)[0]["version"] == 2
