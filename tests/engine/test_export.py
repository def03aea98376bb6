"""Export: ONNX of the retrained tiny network run by ONNX Runtime (outputs, fused predictions and
PQ equal PyTorch's), the refusal of deformable ops, the missing extra, and the plain PyTorch form
rebuilt with the three documented lines."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
import torch
from click.testing import CliRunner

from autopanoptic_cli.main import main
from conftest import REPO

pytestmark = pytest.mark.slow

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="the [onnx] extra is not installed: pip install 'autopanoptic[onnx]'",
)

TINY = [
    "--set", "data.synthetic_images=10", "--set", "data.synthetic_size=48",
    "--set", "data.eval_fraction=0.3", "--set", "data.val_fraction=0.3",
    "--set", "model.exclude_ops=[dfconv3x3, dfconv5x5]",
    "--set", "retrain.steps=2", "--set", "retrain.batch_size=1", "--set", "retrain.init_from_supernet=false",
]


def cli(*args: str):
    return CliRunner().invoke(main, [*args], catch_exceptions=False)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """A run folder with a retrained network of a fixed architecture (no supernet, no search)."""
    from autopanoptic.config import load_config
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.runs import RunDir
    from autopanoptic.search import save_arch

    out = tmp_path_factory.mktemp("export") / "run"
    cfg = load_config("tiny", [a for a in TINY if a != "--set"])
    with RunDir(out) as run:
        data = pipeline.prepare_data(cfg, run, progress=False)
        space = pipeline.build_supernet_space(cfg, data)
        arch = tuple(1 if space.layers[i].ops[c].startswith("dfconv") else c for i, c in enumerate(space.sample(2)))
        save_arch(space, arch, out / "arch.json")
        pipeline.retrain(cfg, run, data, progress=False)
    return out, cfg


@needs_onnx
def test_onnx_export_is_checked_against_pytorch_on_evaluation_images(retrained):
    out, _ = retrained
    res = cli("export", "--out", str(out), "--no-progress", "--images", "2", *TINY)
    assert res.exit_code == 0, res.output
    assert "checked on 2 evaluation images with ONNX Runtime" in res.output
    result = json.loads((out / "export" / "onnx_check.json").read_text())
    check = result["check"]
    assert check["ok"] and check["same_detections"] and check["within_tolerance"]
    assert check["same_panoptic"] == check["n_images"] == 2
    assert check["pq_onnx"] == check["pq_torch"]
    assert result["size"] == [48, 48] and result["opset"] == 17


@needs_onnx
def test_onnx_outputs_fused_by_the_plain_function_equal_the_pytorch_prediction(retrained):
    import onnxruntime as ort

    from autopanoptic.engine import pipeline
    from autopanoptic.engine.datasets import to_tensors
    from autopanoptic.engine.export import OUTPUT_NAMES, prediction_from_outputs
    from autopanoptic.engine.runs import RunDir

    out, cfg = retrained
    if not (out / "export" / "model.onnx").exists():
        assert cli("export", "--out", str(out), "--no-progress", "--images", "1", *TINY).exit_code == 0
    with RunDir(out) as run:
        data = pipeline.prepare_data(cfg, run, progress=False)
        net, _, _ = pipeline.load_retrained(cfg, run, data)
    session = ort.InferenceSession(str(out / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    for i in data.splits.eval[:2]:
        image = to_tensors(data.eval[i])[0]
        with torch.no_grad():
            expected = net.eval()([image])[0]
        got = prediction_from_outputs(session.run(None, {"image": image[None].numpy()}), net.config)
        assert torch.equal(got["panoptic"], expected["panoptic"])
        assert [s["label"] for s in got["segments"]] == [s["label"] for s in expected["segments"]]
        assert len(expected["segments"]) >= 1  # not a vacuous comparison of two empty maps


def test_a_deformable_op_is_refused_naming_the_layer_and_what_to_do(tmp_path):
    from autopanoptic.engine.export import ExportError, export_onnx
    from autopanoptic.nn import build_network
    from autopanoptic.nn.supernet import make_config

    config = make_config("tiny", 2, 3)
    space = config.search_space()
    arch = list(space.sample(0))
    layer = next(i for i, l in enumerate(space.layers) if "dfconv5x5" in l.ops)
    arch[layer] = space.layers[layer].ops.index("dfconv5x5")
    net = build_network(config, arch)
    with pytest.raises(ExportError) as info:
        export_onnx(net, tmp_path / "m.onnx", size=(64, 64))
    message = str(info.value)
    assert "\n" not in message and space.layers[layer].name in message and "dfconv5x5" in message
    assert "--format torch" in message and "exclude_ops" in message
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnx_extra_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    res = CliRunner().invoke(main, ["export", "--out", str(tmp_path / "x"), "--no-progress"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [res.output.strip()]
    assert "pip install 'autopanoptic[onnx]'" in res.output


def test_plain_pytorch_form_rebuilds_with_the_three_documented_lines(retrained, monkeypatch):
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.runs import RunDir

    out, cfg = retrained
    res = cli("export", "--out", str(out), "--format", "torch", "--no-progress", *TINY)
    assert res.exit_code == 0, res.output
    doc = (REPO / "docs" / "export.md").read_text()
    block = re.search(r"```python\n(# rebuild\n.*?)```", doc, flags=re.S).group(1)
    assert len([line for line in block.splitlines() if line and not line.startswith(("#", "import", "from"))]) == 3
    monkeypatch.chdir(out)
    namespace: dict = {}
    exec(compile(block, "docs/export.md", "exec"), namespace)
    rebuilt = namespace["net"].eval()
    with RunDir(out) as run:
        data = pipeline.prepare_data(cfg, run, progress=False)
        net, arch, _ = pipeline.load_retrained(cfg, run, data)
    assert rebuilt.arch == arch
    image = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(rebuilt([image])[0]["panoptic"], net.eval()([image])[0]["panoptic"])
