"""``autopanoptic latency build / check`` and ``arch show --latency-table`` on a very small network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from autopanoptic.nn.latency import LatencyTable, device_name
from autopanoptic_cli.main import main

SMALL = ["--set", "model.overrides.stage_blocks=[1,1,1,1]", "--set", "model.overrides.widths=[8,16,24,32,48]",
         "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]"]
FAST = ["--warmup", "0", "--repeats", "1", "--no-progress"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def table_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lat") / "cpu.json"
    res = cli("latency", "build", "--device", "cpu", "--image-size", 64, 96, "--calibrate", 2, *FAST, *SMALL, "--out", out)
    assert res.exit_code == 0, res.output
    assert "fixed" in res.output and str(out) in res.output
    return out


def test_build_writes_a_table_keyed_by_this_machine(table_file):
    table = LatencyTable.load(table_file)
    assert table.key.device == device_name("cpu") and table.key.image_size == (64, 96)
    assert table.key.widths == (8, 16, 24, 32, 48)
    assert len(table.calibration) == 6 + 2  # one network per choice index (6 in the mask head), 2 random
    ops = dict(table.key.layers)
    assert "dfconv5x5" in ops["mask.0"]  # the table covers the whole space, excluded ops too
    assert all(r > 0 for row in table.layer_ms for r in row)


def test_check_prints_every_network_and_the_errors(table_file, tmp_path):
    res = cli("latency", "check", table_file, "--networks", 3, "--json", tmp_path / "c.json", *FAST, *SMALL)
    assert res.exit_code == 0, res.output
    assert "3 networks: median relative error" in res.output and "worst" in res.output
    rows = json.loads((tmp_path / "c.json").read_text())["networks"]
    assert len(rows) == 3 and len({tuple(r["arch"]) for r in rows}) == 3
    table = LatencyTable.load(table_file)
    for r in rows:
        assert r["predicted_ms"] == pytest.approx(table.predict(r["arch"]))
        assert "dfconv" not in json.dumps(r)  # from the config's sampling space (exclude_ops)


def test_arch_show_prints_the_predicted_latency(table_file, tmp_path):
    from autopanoptic.search.spaces import auto_panoptic

    space = auto_panoptic((1, 1, 1, 1))
    arch = space.sample(3)
    from autopanoptic.search import save_arch

    save_arch(space, arch, tmp_path / "arch.json")
    res = cli("arch", "show", tmp_path / "arch.json", *SMALL, "--latency-table", table_file)
    assert res.exit_code == 0, res.output
    expected = LatencyTable.load(table_file).predict(arch)
    assert f"predicted latency: {expected:.2f} ms at 64x96 px" in res.output
    plain = cli("arch", "show", tmp_path / "arch.json", *SMALL)
    assert "predicted latency" not in plain.output and "GMACs" in plain.output


@pytest.mark.parametrize("args,message", [
    (["latency", "check", "{missing}"], "latency table not found"),
    (["latency", "check", "{table}", "--set", "model.overrides.widths=[8,16,24,32,64]"], "widths"),
    (["latency", "check", "{other}"], "measured for device 'cuda: elsewhere'"),
    (["arch", "show", "{arch}", "--latency-table", "{table}"], "widths"),  # the tiny preset's default widths
    (["latency", "check", "{garbage}"], "not a latency table"),
])
def test_errors_are_one_clear_line(table_file, tmp_path, args, message):
    obj = json.loads(table_file.read_text())
    obj["key"]["device"] = "cuda: elsewhere"
    (tmp_path / "other.json").write_text(json.dumps(obj))
    (tmp_path / "garbage.json").write_text("{not json")
    from autopanoptic.search.spaces import auto_panoptic
    from autopanoptic.search import save_arch

    save_arch(auto_panoptic((1, 1, 2, 1)), auto_panoptic((1, 1, 2, 1)).sample(0), tmp_path / "arch.json")
    names = {"missing": tmp_path / "missing.json", "table": table_file, "other": tmp_path / "other.json",
             "garbage": tmp_path / "garbage.json", "arch": tmp_path / "arch.json"}
    full = [a.format(**names) for a in args]
    extra = [] if "model.overrides.widths=[8,16,24,32,64]" in full or full[0] == "arch" else SMALL
    res = cli(*full, *extra, *(FAST if full[0] == "latency" else []))
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
