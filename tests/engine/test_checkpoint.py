"""Checkpoint files: the checksummed format, the previous format, random-generator states."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from autopanoptic.engine.checkpoint import (
    FORMAT,
    LEGACY_FORMAT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    upgrade_checkpoint,
)
from autopanoptic.errors import CheckpointError
from tests.engine.test_train import ChoiceNet, TrainConfig, _cycle, make_dataset, train
from tests.strategies import single_byte_changes

CFG = TrainConfig(steps=4, batch_size=2, lr=0.05, warmup_steps=1, checkpoint_every=1, seed=3)


def _train(folder, stop_after=None, init_seed=0):
    torch.manual_seed(init_seed)
    model = ChoiceNet()
    data = make_dataset()
    res = train(model, data, range(len(data)), CFG, archs_for_step=_cycle(model, seed=3),
                checkpoint_path=folder / "ckpt.pt", stop_after=stop_after, progress=False)
    return model, res


def write_legacy(state: dict, path) -> None:
    """``state`` as the previous release wrote it: a bare ``torch.save`` zip, numpy's state as an array."""
    old = dict(state, format=LEGACY_FORMAT)
    if "rng" in old:  # one process's generators (not one per rank), numpy's key as an array
        rng = old["rng"][0]
        n = rng["numpy"]
        old["rng"] = {**rng, "numpy": (n["bit_generator"], np.array(n["key"], dtype=np.uint32), n["pos"],
                                       n["has_gauss"], n["gauss"])}
    torch.save(old, path)


def test_every_single_byte_change_of_a_training_checkpoint_is_detected(tmp_path):
    """A real checkpoint (weights, momentum, every random generator, the loss log): each of its bytes
    changed to another value (seeded) is refused, and the file is left as it was."""
    _train(tmp_path, stop_after=1)
    path = tmp_path / "ckpt.pt"
    blob = path.read_bytes()
    accepted, messages = [], set()
    for i, xor in single_byte_changes(path, seed=16):
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            messages.add(str(e).split("(")[1].split(")")[0].split(":")[0])
            continue
        accepted.append((i, xor))
    assert accepted == [] and len(blob) > 20_000
    assert path.read_bytes() == blob and load_checkpoint(path)["step"] == 1
    assert "checksum mismatch" in messages  # damage inside the payload (tensor data included)


def test_the_file_is_a_header_line_with_the_payload_checksum_then_a_weights_only_payload(tmp_path):
    import hashlib
    import io

    path = save_checkpoint(tmp_path / "c.pt", {"step": 2, "w": torch.arange(3.0)})
    header, payload = path.read_bytes().split(b"\n", 1)
    assert header == b"autopanoptic-checkpoint 2 sha256=%s bytes=%d" % (
        hashlib.sha256(payload).hexdigest().encode(), len(payload))
    state = torch.load(io.BytesIO(payload), weights_only=True)  # nothing but plain values and tensors
    assert state["format"] == FORMAT and state["step"] == 2 and torch.equal(state["w"], torch.arange(3.0))
    path.write_bytes(header + b"\n" + payload + b"x")
    with pytest.raises(CheckpointError, match="1 bytes more than the header says"):
        load_checkpoint(path)
    path.write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="not an autopanoptic checkpoint"):
        load_checkpoint(path)


def test_a_checkpoint_of_the_previous_format_resumes_and_is_upgraded(tmp_path):
    full, res_full = _train(tmp_path / "a")
    _train(tmp_path / "b", stop_after=2)
    path = tmp_path / "b" / "ckpt.pt"
    write_legacy(load_checkpoint(path), path)  # as the previous release left it
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    legacy = path.read_bytes()
    resumed, res = _train(tmp_path / "b", init_seed=99)
    assert res.resumed_from == 2 and res.losses == res_full.losses
    for (n, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n
    assert load_checkpoint(path)["format"] == FORMAT  # the next checkpoint is written in the current format
    path.write_bytes(legacy)
    out = CliRunner().invoke(__import__("autopanoptic_cli.main").main.main, ["checkpoint", "upgrade", str(path)])
    assert out.exit_code == 0 and "upgraded" in out.output, out.output
    upgraded = load_checkpoint(path)
    assert upgraded["format"] == FORMAT and upgraded["step"] == 2
    assert isinstance(upgraded["rng"]["numpy"]["key"], list)
    assert upgrade_checkpoint(path) is False  # already current: unchanged


def test_rng_state_is_plain_and_restores_every_generator():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # numpy caches the second gaussian: part of the state
    state = rng_state()

    def leaves(x):
        if isinstance(x, dict):
            return [v for y in x.values() for v in leaves(y)]
        if isinstance(x, (list, tuple)):
            return [v for y in x for v in leaves(y)]
        return [x]

    assert {type(v) for v in leaves(state)} <= {int, float, str, type(None), torch.Tensor}
    draws = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(state)
    again = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(2))
    assert draws[:3] == again[:3] and torch.equal(draws[3], again[3])
