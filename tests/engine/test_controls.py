"""Random controls (engine/controls.py): drawn from the sampling space by the config alone, retrained
with the chosen network's own recipe, evaluated and reported beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from autopanoptic.config import load_config
from autopanoptic.engine import controls
from autopanoptic.engine.checkpoint import load_checkpoint
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.errors import CheckpointError, ConfigError
from autopanoptic.nn.supernet import make_config
from autopanoptic.search import save_arch
from autopanoptic_cli.main import main

TINY = [
    "--set", "data.synthetic_images=10", "--set", "data.synthetic_size=48", "--set", "data.eval_fraction=0.3",
    "--set", "retrain.steps=2", "--set", "retrain.batch_size=1", "--set", "retrain.init_from_supernet=false",
    "--set", "eval.draw=0", "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]", "--device", "cpu", "--no-progress",
]


def cli(*args: str):
    return CliRunner().invoke(main, [*args], catch_exceptions=False)


def test_how_many_controls():
    assert [controls.count("auto", n, "single") for n in (1, 2, 4)] == [0, 1, 3]  # one per idle worker
    assert controls.count("auto", 4, "data") == 0  # no worker is idle
    assert controls.count(2, 1, "single") == 2
    assert [controls.owner(j, 2, True) for j in range(4)] == [0, 1, 0, 1]
    assert controls.owner(3, 2, False) is None
    assert load_config("tiny").retrain.controls == "auto"
    assert load_config("tiny", ["retrain.controls=3"]).retrain.controls == 3
    for bad in ("-1", "some", "1.5", "true"):
        with pytest.raises(ConfigError, match="retrain.controls"):
            load_config("tiny", [f"retrain.controls={bad}"])


def test_controls_are_uniform_over_the_sampling_space_and_a_function_of_the_seeds():
    space = make_config("tiny", 2, 2).search_space()
    r = OpRestriction.build(space, ["dfconv3x3", "dfconv5x5"])
    archs = controls.draw(r, 200, 0, 0)
    assert archs == controls.draw(r, 200, 0, 0)
    assert archs[:3] != controls.draw(r, 3, 1, 0) and archs[:3] != controls.draw(r, 3, 0, 1)
    assert len(set(archs)) == 200
    ops = [o for a in archs for o in space.ops_of(a)]
    assert "dfconv3x3" not in ops and "dfconv5x5" not in ops
    for i, layer in enumerate(r.sub.layers):  # every op of every layer is drawn (200 draws, at most 6 ops)
        assert {r.to_sub(a)[i] for a in archs} == set(range(len(layer.ops))), layer.name


def test_a_control_is_the_chosen_networks_retraining_applied_to_its_architecture(tmp_path):
    space = make_config("tiny", 2, 2).search_space()
    chosen = save_arch(space, tuple(0 for _ in space.layers), tmp_path / "arch.json")
    a, b = tmp_path / "a", tmp_path / "b"
    res = cli("retrain", "--out", str(a), "--arch", str(chosen), "--set", "retrain.controls=1", *TINY)
    assert res.exit_code == 0, res.output
    assert "random controls: 1" in res.output
    control = a / "retrain" / "controls" / "0"
    # the control retrained as a chosen network in another folder: the very same weights
    assert cli("retrain", "--out", str(b), "--arch", str(control / "arch.json"), *TINY).exit_code == 0
    mine, alone = load_checkpoint(control / "checkpoint.pt"), load_checkpoint(b / "retrain" / "checkpoint.pt")
    assert mine["step"] == 2 and mine["losses"] == alone["losses"]
    for name, v in alone["model"].items():
        assert torch.equal(mine["model"][name], v), name
    assert json.loads((control / "arch.json").read_text())["flat"] != json.loads(chosen.read_text())["flat"]
    assert not (b / "retrain" / "controls.json").exists() or not controls.read_plan(b)

    res = cli("retrain", "--out", str(a), "--arch", str(chosen), "--set", "retrain.controls=1", *TINY)
    assert "resumed from 2" in res.output  # finished jobs are not redone
    for folder in (a, b):
        assert cli("evaluate", "--out", str(folder), "--set", "retrain.controls=1", *TINY).exit_code == 0
    ma, mb = (json.loads((f / "eval" / "metrics.json").read_text()) for f in (a, b))
    assert [c["All"] for c in ma["controls"]] == [mb["All"]] and mb["controls"] == []
    assert ma["controls"][0]["arch"] == mb["arch"] and ma["controls"][0]["params"] == mb["params"]
    report = (a / "report.md").read_text()
    assert "### Against random controls" in report and "| random control 1 |" in report
    assert "random controls" not in (b / "report.md").read_text()

    (control / "checkpoint.pt").unlink()  # a control lost: the evaluation says which and what to do
    res = CliRunner().invoke(main, ["evaluate", "--out", str(a), *TINY])
    assert res.exit_code != 0 and "controls/0/checkpoint.pt" in res.output and "autopanoptic retrain" in res.output
    assert "Traceback" not in res.output


def test_an_unreadable_controls_file_is_one_clear_line(tmp_path):
    (tmp_path / "retrain").mkdir()
    (tmp_path / "retrain" / "controls.json").write_text('{"controls": [{"flat": "x"}]}')
    with pytest.raises(CheckpointError, match="controls.json: not a controls file"):
        controls.read_plan(tmp_path)
    assert controls.read_plan(Path(tmp_path / "nothing")) == []
