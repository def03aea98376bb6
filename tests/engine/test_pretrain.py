"""Backbone pretraining on a generated ImageFolder dataset, and the checked weight hand-over."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from autopanoptic.data.imagefolder import ImageFolderDataset, render_class_image, split_indices, write_synthetic_classes
from autopanoptic.engine.checkpoint import load_checkpoint, save_checkpoint
from autopanoptic.engine.pretrain import (
    BackboneShape,
    PretrainConfig,
    backbone_shape,
    load_backbone_weights,
    load_pretrain_config,
    pretrain_standalone,
    pretrain_supernet,
    save_backbone,
    supernet_classifier,
)
from autopanoptic.errors import CheckpointError, ConfigError, DataError
from autopanoptic.nn.backbone import ShuffleNetBackbone, ShuffleNetSupernet

BLOCKS = (1, 1, 1, 1)
WIDTHS = (8, 16, 24, 32, 48)
SHAPE = BackboneShape(BLOCKS, WIDTHS)
CHOICES = (3, 0, 2, 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_synthetic_classes(tmp_path_factory.mktemp("imgs") / "train", 3, 12, size=32, progress=False)


@pytest.fixture(scope="module")
def pretrained_supernet(folder, tmp_path_factory):
    torch.set_num_threads(1)
    cfg = PretrainConfig(steps=100, batch_size=8, image_size=32, lr=0.02, schedule="constant", val_fraction=0.25,
                         checkpoint_every=100)
    out = tmp_path_factory.mktemp("pre_super")
    return pretrain_supernet(folder, out, SHAPE, cfg, progress=False), out


@pytest.fixture(scope="module")
def pretrained_standalone(folder, tmp_path_factory):
    cfg = PretrainConfig(steps=25, batch_size=8, image_size=32, lr=0.05, schedule="constant", val_fraction=0.25)
    out = tmp_path_factory.mktemp("pre_std")
    return pretrain_standalone(folder, out, CHOICES, SHAPE, cfg, progress=False), out


def _mean(losses, sl):
    vals = [r["loss"] for r in losses[sl]]
    return sum(vals) / len(vals)


# ---- the ImageFolder dataset ---------------------------------------------------------------------
def test_generated_imagefolder_is_read_in_class_order(folder, tmp_path):
    ds = ImageFolderDataset(folder, image_size=16)
    assert ds.classes == ("class_0", "class_1", "class_2") and len(ds) == 36
    item = ds[13]
    assert item["label"] == 1 and item["image"].shape == (16, 16, 3) and item["image"].dtype == np.uint8
    assert item["file_name"].startswith("class_1/")
    assert ImageFolderDataset(folder)[0]["image"].shape == (32, 32, 3)
    # deterministic content, and classes differ
    assert np.array_equal(render_class_image(2, 5, num_classes=3, seed=1), render_class_image(2, 5, num_classes=3, seed=1))
    assert not np.array_equal(render_class_image(1, 5, num_classes=3), render_class_image(2, 5, num_classes=3))
    train, val = split_indices(36, 0.25, seed=0)
    assert len(val) == 9 and not set(train) & set(val) and sorted(train + val) == list(range(36))


def test_imagefolder_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="class folder without images"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read"):
        ImageFolderDataset(tmp_path)[0]


# ---- pretraining ---------------------------------------------------------------------------------
def test_supernet_pretraining_loss_goes_down_and_trains_every_choice(pretrained_supernet):
    res, out = pretrained_supernet
    assert res.steps == 100 and len(res.losses) == 100
    assert _mean(res.losses, slice(80, 100)) < _mean(res.losses, slice(0, 20)) - 0.1
    # strict fairness: every choice of every layer was trained (its weights moved from the init)
    torch.manual_seed(0)
    fresh = supernet_classifier(BLOCKS, WIDTHS, 3)
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), supernet_classifier(BLOCKS, WIDTHS, 3).parameters()))
    trained = res.task.net
    for layer_f, layer_t in zip(fresh.backbone.layer_choices, trained.backbone.layer_choices):
        for op_f, op_t in zip(layer_f, layer_t):
            w_f = next(op_f.parameters())
            w_t = next(op_t.parameters())
            assert not torch.equal(w_f, w_t.cpu())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["form"] == "supernet" and 0.0 <= summary["val_top1"] <= 1.0
    assert (out / "pretrain.yaml").exists() and (out / "losses.json").exists()
    assert load_pretrain_config(out / "pretrain.yaml").steps == 100


def test_finished_pretraining_is_not_redone(pretrained_supernet, folder):
    res, out = pretrained_supernet
    cfg = load_pretrain_config(out / "pretrain.yaml")
    again = pretrain_supernet(folder, out, SHAPE, cfg, progress=False)
    assert again.resumed_from == 100 and again.losses == res.losses
    with pytest.raises(CheckpointError, match="another configuration"):
        pretrain_supernet(folder, out, SHAPE, PretrainConfig(steps=100, lr=0.5, image_size=32), progress=False)


def test_standalone_pretraining_loss_goes_down(pretrained_standalone):
    res, out = pretrained_standalone
    assert _mean(res.losses, slice(-5, None)) < _mean(res.losses, slice(0, 5)) - 0.2
    meta = load_checkpoint(out / "backbone.pt")["backbone_meta"]
    assert meta["form"] == "standalone" and meta["choices"] == list(CHOICES) and meta["widths"] == list(WIDTHS)


# ---- hand-over -----------------------------------------------------------------------------------
def _tiny_panoptic_supernet():
    from autopanoptic.nn import build_supernet

    return build_supernet("tiny", 2, 2, stage_blocks=BLOCKS, widths=WIDTHS)


def test_supernet_weights_load_into_the_panoptic_supernet(pretrained_supernet):
    res, _ = pretrained_supernet
    model = _tiny_panoptic_supernet()
    report = load_backbone_weights(model, res.backbone_path)
    saved = load_checkpoint(res.backbone_path)["backbone"]
    state = model.state_dict()
    assert set(report.loaded) == {f"backbone.{k}" for k in saved}
    for k, v in saved.items():
        assert torch.equal(state[f"backbone.{k}"], v)
    assert report.unused == () and report.new_in_backbone == ()
    assert report.new and all(not k.startswith("backbone.") for k in report.new)  # FPN, heads stay fresh
    assert set(report.loaded) | set(report.new) == set(state)
    assert "supernet -> supernet" in report.summary()


def test_supernet_weights_load_into_a_standalone_backbone_as_extract_does(pretrained_supernet):
    res, _ = pretrained_supernet
    net = ShuffleNetBackbone(CHOICES, BLOCKS, WIDTHS)
    report = load_backbone_weights(net, res.backbone_path)
    expected = res.task.net.backbone.extract(CHOICES).state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(v, expected[k].cpu())
    assert report.new == () and len(report.unused) > 0  # the other choices' weights


def test_standalone_weights_load_into_the_retrained_network(pretrained_standalone):
    from autopanoptic.nn import build_network

    res, _ = pretrained_standalone
    model = _tiny_panoptic_supernet()
    arch = model.search_space.validate(CHOICES + (0,) * (len(model.search_space) - len(CHOICES)))
    net = build_network("tiny", arch, 2, 2, stage_blocks=BLOCKS, widths=WIDTHS)
    report = load_backbone_weights(net, res.backbone_path)
    trained = res.task.net.backbone.state_dict()
    for k, v in trained.items():
        assert torch.equal(net.state_dict()[f"backbone.{k}"], v.cpu())
    assert report.unused == () and report.new_in_backbone == ()
    # and into the supernet: only the pretrained op of each layer, the rest listed as new
    sup = ShuffleNetSupernet(BLOCKS, WIDTHS)
    r2 = load_backbone_weights(sup, res.backbone_path)
    assert all(k.startswith(("stem.", *(f"layer_choices.{i}.{c}." for i, c in enumerate(CHOICES)))) for k in r2.loaded)
    assert r2.new_in_backbone and all(k.startswith("layer_choices.") for k in r2.new_in_backbone)


def test_the_training_checkpoint_also_hands_over(pretrained_standalone):
    res, out = pretrained_standalone
    a = ShuffleNetBackbone(CHOICES, BLOCKS, WIDTHS)
    load_backbone_weights(a, out / "checkpoint.pt")
    b = ShuffleNetBackbone(CHOICES, BLOCKS, WIDTHS)
    load_backbone_weights(b, out / "backbone.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_mismatched_width_or_architecture_is_a_clear_error(pretrained_supernet, pretrained_standalone, tmp_path):
    sup_path = pretrained_supernet[0].backbone_path
    std_path = pretrained_standalone[0].backbone_path
    wider = ShuffleNetBackbone(CHOICES, BLOCKS, (8, 16, 24, 32, 64))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"width mismatch: .*\[8, 16, 24, 32, 48\].*\[8, 16, 24, 32, 64\]"):
        load_backbone_weights(wider, std_path)
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())  # untouched
    with pytest.raises(CheckpointError, match="architecture mismatch: .*stage_blocks"):
        load_backbone_weights(ShuffleNetSupernet((1, 1, 2, 1), WIDTHS), sup_path)
    with pytest.raises(CheckpointError, match="architecture mismatch: backbone layer 0 is xception3x3 .* shuffle3x3"):
        load_backbone_weights(ShuffleNetBackbone((0, 0, 2, 1), BLOCKS, WIDTHS), std_path)
    save_checkpoint(tmp_path / "other.pt", {"model": {}, "step": 1})
    with pytest.raises(CheckpointError, match="holds no backbone weights"):
        load_backbone_weights(ShuffleNetBackbone(CHOICES, BLOCKS, WIDTHS), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_backbone_weights(ShuffleNetBackbone(CHOICES, BLOCKS, WIDTHS), tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no ShuffleNet backbone"):
        load_backbone_weights(torch.nn.Linear(2, 2), sup_path)


def test_save_backbone_round_trip(tmp_path):
    torch.manual_seed(1)
    a = ShuffleNetSupernet(BLOCKS, WIDTHS)
    b = ShuffleNetSupernet(BLOCKS, WIDTHS)
    report = load_backbone_weights(b, save_backbone(a, tmp_path / "a.pt"))
    assert report.new == () and report.unused == ()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_backbone_shape_and_config(tmp_path):
    from autopanoptic.config import load_config

    cfg = load_config("tiny")
    assert backbone_shape(cfg).widths == (16, 32, 64, 128, 256)
    cfg = load_config("tiny", ["retrain.preset=paper-retrain"])
    assert backbone_shape(cfg, "retrain").widths == (72, 172, 432, 864, 1728)
    with pytest.raises(ConfigError, match="pretrain.lr"):
        PretrainConfig(lr=0)
    (tmp_path / "p.yaml").write_text("steps: 3\nlrr: 1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lrr'\]"):
        load_pretrain_config(tmp_path / "p.yaml")


# ---- CLI -----------------------------------------------------------------------------------------
def test_cli_synth_pretrain_and_errors(tmp_path):
    from autopanoptic.nn.supernet import make_config
    from autopanoptic.search import save_arch
    from autopanoptic_cli.main import main

    runner = CliRunner()
    res = runner.invoke(main, ["data", "synth-classes", str(tmp_path / "imgs"), "--classes", "2", "--per-class", "3",
                               "--size", "16", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(ImageFolderDataset(tmp_path / "imgs")) == 6
    common = ["--steps", "1", "--batch-size", "2", "--image-size", "16", "--device", "cpu", "--no-progress",
              "--set", "model.overrides={stage_blocks: [1, 1, 1, 1], widths: [8, 16, 24, 32, 48]}"]
    res = runner.invoke(main, ["pretrain-supernet", str(tmp_path / "imgs"), "--out", str(tmp_path / "sup"), *common])
    assert res.exit_code == 0, res.output
    assert "pretrain-supernet: 1 steps" in res.output and (tmp_path / "sup" / "backbone.pt").exists()
    space = make_config("tiny", 1, 1, stage_blocks=BLOCKS, widths=WIDTHS).search_space()
    arch = space.validate(CHOICES + (1,) * (len(space) - len(CHOICES)))
    save_arch(space, arch, tmp_path / "arch.json")
    res = runner.invoke(main, ["pretrain", str(tmp_path / "imgs"), "--out", str(tmp_path / "std"),
                               "--arch", str(tmp_path / "arch.json"), "--width", "model", *common])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "std" / "backbone.pt")["backbone_meta"]["choices"] == list(CHOICES)
    res = runner.invoke(main, ["pretrain-supernet", str(tmp_path / "nope"), "--out", str(tmp_path / "x"), *common])
    assert res.exit_code == 2 and res.output.startswith("error: ") and "not found" in res.output


def _pretrain_cli(folder, out, *extra, workers: int = 1, torchrun_logs=None):
    """``autopanoptic pretrain-supernet / pretrain`` in a process of its own: ``--workers N``, or two
    ``torchrun`` ranks watched by tests/engine/dist_cli.py (``torchrun_logs``: which files each wrote)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    common = ["--out", str(out), "--steps", "1", "--batch-size", "4", "--image-size", "16", "--lr", "0.01",
              "--device", "cpu", "--no-progress",
              "--set", "model.overrides={stage_blocks: [1, 1, 1, 1], widths: [8, 16, 24, 32, 48]}"]
    if torchrun_logs is None:
        cmd = [str(Path(sys.executable).parent / "autopanoptic"), *extra[:1], str(folder), *common, *extra[1:],
               "--workers", str(workers)]
    else:
        from tests.engine.test_distributed import TORCHRUN

        cmd = [*TORCHRUN, str(Path(__file__).parent / "dist_cli.py"), str(torchrun_logs), *extra[:1], str(folder),
               *common, *extra[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AUTOPANOPTIC_WORKERS", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_pretraining_on_two_workers_is_the_single_process_pretraining(folder, tmp_path):
    """The supernet's strict-fair cycle dealt to 2 workers: the single process's step (weights and
    BatchNorm statistics within float tolerance), the same held-out accuracy, one line printed."""
    outs = {}
    for n in (1, 2):
        text = _pretrain_cli(folder, tmp_path / f"w{n}", "pretrain-supernet", workers=n)
        assert text.count("pretrain-supernet: 1 steps") == 1
        outs[n] = load_checkpoint(tmp_path / f"w{n}" / "checkpoint.pt")
    assert outs[1]["losses"][0]["loss"] == pytest.approx(outs[2]["losses"][0]["loss"], rel=1e-5)
    for name, v in outs[1]["model"].items():
        torch.testing.assert_close(outs[2]["model"][name], v, rtol=1e-4, atol=1e-5, msg=name)
    summaries = [json.loads((tmp_path / f"w{n}" / "summary.json").read_text()) for n in (1, 2)]
    assert summaries[0]["val_top1"] == summaries[1]["val_top1"] and summaries[0]["val_images"] > 0


def test_standalone_pretraining_under_torchrun_writes_from_rank_0_alone(folder, tmp_path):
    """Each batch sliced over 2 ranks; rank 0 alone writes the folder (rank 1 nothing); one line printed."""
    from autopanoptic.nn.supernet import make_config
    from autopanoptic.search import save_arch

    save_arch_path = tmp_path / "arch.json"
    space = make_config("tiny", 1, 1, stage_blocks=BLOCKS, widths=WIDTHS).search_space()
    save_arch(space, space.validate(CHOICES + (1,) * (len(space) - len(CHOICES))), save_arch_path)
    out = tmp_path / "std"
    text = _pretrain_cli(folder, out, "pretrain", "--arch", str(save_arch_path), "--width", "model",
                         torchrun_logs=tmp_path / "logs")
    assert text.count("pretrain: 1 steps") == 1
    rank0, rank1 = (json.loads((tmp_path / "logs" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank1["written"] == []
    assert {p.split("/")[-1] for p in rank0["written"]} >= {"pretrain.yaml", "checkpoint.pt", "backbone.pt",
                                                            "summary.json"}
    assert load_checkpoint(out / "backbone.pt")["backbone_meta"]["choices"] == list(CHOICES)
