"""Bad input everywhere (Hypothesis): malformed configs, ``--set`` overrides, architectures,
journals, checkpoints and datasets, through the CLI and the library.

Every case must end in either success (the mutation happened to be valid) or one clear
``error: ...`` line with exit status 2 (CLI) / an :class:`AutopanopticError` (library) -- never a
traceback -- and the input file must be left byte-for-byte as it was. The number of examples of
each property is fixed below (``EXAMPLES``) and listed in docs/reliability.md.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopanoptic.errors import AutopanopticError
from autopanoptic_cli.main import main

EXAMPLES = 40
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["tiny", "cpu", "coco", "random", "[1, 2]", "-1", "1e309", ""]),
)
values = st.recursive(leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                      max_leaves=6)


def invoke(args):
    """Run the CLI in process; an unexpected exception propagates (and fails the test)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_clear(res) -> None:
    """Success, or exit 2 with one ``error:`` line and no traceback."""
    assert "Traceback" not in res.output
    if res.exit_code != 0:
        assert res.exit_code == 2, res.output
        lines = [x for x in res.output.strip().splitlines() if x.strip()]
        assert lines[-1].startswith("error: ") and len(lines[-1]) < 2000, res.output


def tiny_dict():
    from autopanoptic.config import config_to_dict, load_config

    return config_to_dict(load_config("tiny"))


# --- configs --------------------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_malformed_config_files(tmp_path_factory, data):
    cfg = tiny_dict()
    section = data.draw(st.sampled_from([*cfg, "bogus"]), label="section")
    keys = list(cfg.get(section, {})) + ["bogus_key"]
    mode = data.draw(st.sampled_from(["value", "section", "text"]), label="mode")
    if mode == "value":
        cfg.setdefault(section, {})[data.draw(st.sampled_from(keys), label="key")] = data.draw(values, label="value")
        text = yaml.safe_dump(cfg)
    elif mode == "section":
        cfg[section] = data.draw(values, label="section value")
        text = yaml.safe_dump(cfg)
    else:
        text = data.draw(st.text(max_size=80), label="yaml text")
    folder = tmp_path_factory.mktemp("cfg")
    path = folder / "bad.yaml"
    path.write_bytes(text.encode())
    res = invoke(["train-supernet", "--config", path, "--out", folder / "run", "--dry-run"])
    assert_clear(res)
    assert path.read_bytes() == text.encode() and not (folder / "run").exists()


@SETTINGS
@given(key=st.one_of(st.sampled_from(["train.lr", "train.steps", "data.synthetic_size", "search.policy",
                                       "model.exclude_ops", "retrain.preset", "data.kind", "nope.x", "train",
                                       "train.", ".lr", "search.max_params"]), st.text(max_size=12)),
       value=st.one_of(st.text(max_size=12), st.sampled_from(["-1", "0", "nan", "inf", "[", "{a: 1}", "1e309"])))
def test_malformed_set_overrides(tmp_path_factory, key, value):
    folder = tmp_path_factory.mktemp("set")
    res = invoke(["search", "--set", f"{key}={value}", "--out", folder / "run", "--dry-run"])
    assert_clear(res)
    assert not (folder / "run").exists()


# --- architectures --------------------------------------------------------------------------------

@SETTINGS
@given(arch=st.one_of(values, st.lists(st.integers(-3, 9), max_size=30),
                      st.fixed_dictionaries({"arch": st.lists(st.integers(-3, 9), max_size=30)})))
def test_malformed_architecture_files(tmp_path_factory, arch):
    path = tmp_path_factory.mktemp("arch") / "arch.json"
    text = json.dumps(arch, allow_nan=True)
    path.write_bytes(text.encode())
    assert_clear(invoke(["arch", "show", path]))
    assert path.read_bytes() == text.encode()


# --- journals -------------------------------------------------------------------------------------

def _mutate(blob: bytes, data) -> bytes:
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate-line"]), label="mutation")
    if not blob:
        return b"x"
    at = data.draw(st.integers(0, len(blob) - 1), label="at")
    if kind == "truncate":
        return blob[:at]
    if kind == "flip":
        return blob[:at] + bytes([blob[at] ^ data.draw(st.integers(1, 255), label="xor")]) + blob[at + 1 :]
    if kind == "insert":
        return blob[:at] + data.draw(st.binary(min_size=1, max_size=8), label="bytes") + blob[at:]
    if kind == "delete":
        return blob[:at] + blob[at + data.draw(st.integers(1, 16), label="n") :]
    lines = blob.splitlines(keepends=True)
    i = at % len(lines)
    return b"".join(lines[: i + 1] + lines[i:])


@SETTINGS
@given(data=st.data())
def test_damaged_journals(tmp_path_factory, data):
    from autopanoptic.search import RandomSearch, run
    from autopanoptic.search.space import Layer, SearchSpace

    space = SearchSpace([Layer(f"l{i}", ("a", "b", "c")) for i in range(4)])
    fitness = lambda archs: [float(sum(a)) for a in archs]  # noqa: E731
    path = tmp_path_factory.mktemp("journal") / "journal.jsonl"
    full = run(RandomSearch(budget=12), space, fitness, seed=1, journal=path, progress=False)
    bad = _mutate(path.read_bytes(), data)
    path.write_bytes(bad)
    try:
        again = run(RandomSearch(budget=12), space, fitness, seed=1, journal=path, progress=False)
    except AutopanopticError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        assert path.read_bytes() == bad  # refused, untouched
        return
    # Accepted only when the damage is no damage: the journal cut after a complete line, or emptied (a
    # resume evaluates the rest again). Every line carries a checksum, so nothing else may pass.
    original = path.parent / "ref.jsonl"
    run(RandomSearch(budget=12), space, fitness, seed=1, journal=original, progress=False)
    assert original.read_bytes().startswith(bad) and (bad == b"" or bad.endswith(b"\n"))
    assert again.history == full.history


# --- checkpoints ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint_blob(tmp_path_factory):
    import torch

    from autopanoptic.engine.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "c.pt"
    save_checkpoint(path, {"model": torch.nn.Linear(3, 2).state_dict(), "step": 3, "losses": [{"loss": 1.0}]})
    return path.read_bytes()


@SETTINGS
@given(cut=st.floats(0, 1, exclude_max=True))
def test_every_truncated_checkpoint_is_refused(tmp_path_factory, checkpoint_blob, cut):
    from autopanoptic.engine.checkpoint import load_checkpoint
    from autopanoptic.errors import CheckpointError

    path = tmp_path_factory.mktemp("trunc") / "c.pt"
    bad = checkpoint_blob[: math.floor(cut * len(checkpoint_blob))]
    path.write_bytes(bad)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert path.read_bytes() == bad


@SETTINGS
@given(data=st.data())
def test_damaged_checkpoints_are_always_refused(tmp_path_factory, checkpoint_blob, data):
    from autopanoptic.engine.checkpoint import load_checkpoint
    from autopanoptic.errors import CheckpointError

    path = tmp_path_factory.mktemp("flip") / "c.pt"
    bad = _mutate(checkpoint_blob, data)
    path.write_bytes(bad)
    with pytest.raises(CheckpointError) as e:  # the payload's checksum: no damage passes
        load_checkpoint(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert path.read_bytes() == bad


# --- datasets -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset_json(tmp_path_factory):
    from autopanoptic.data import write_synthetic

    root = tmp_path_factory.mktemp("data")
    write_synthetic(root, 3, size=32, seed=0)
    return root


@SETTINGS
@given(data=st.data())
def test_malformed_dataset_json(dataset_json, data):
    original = json.loads((dataset_json / "panoptic.json").read_text())
    doc = json.loads(json.dumps(original))
    top = data.draw(st.sampled_from(["images", "annotations", "categories"]), label="list")
    mode = data.draw(st.sampled_from(["replace-list", "entry-key", "drop-key"]), label="mode")
    if mode == "replace-list":
        doc[top] = data.draw(values, label="list value")
    else:
        entry = doc[top][data.draw(st.integers(0, len(doc[top]) - 1), label="entry")]
        key = data.draw(st.sampled_from(sorted(entry)), label="key")
        if mode == "drop-key":
            del entry[key]
        else:
            entry[key] = data.draw(values, label="value")
    bad = dataset_json / "bad.json"
    text = json.dumps(doc, allow_nan=True)
    bad.write_bytes(text.encode())
    try:
        from autopanoptic.engine.datasets import open_dataset

        try:  # the library: a dataset that opens must read every item, else one clear error
            ds = open_dataset(dataset_json, "images", "bad.json", "panoptic", "coco")
            for i in range(len(ds)):
                ds[i]
        except AutopanopticError as e:
            assert "\n" not in str(e).strip()
        res = invoke(["data", "check", bad, "--images", dataset_json / "images", "--png-dir",
                      dataset_json / "panoptic", "--no-progress"])
        assert "Traceback" not in res.output
        assert res.exit_code in (0, 1, 2), res.output  # 1: `data check` found and listed problems
        if res.exit_code == 2:
            assert_clear(res)
        assert bad.read_bytes() == text.encode()
        assert json.loads((dataset_json / "panoptic.json").read_text()) == original
    finally:
        bad.unlink()
