"""Resizing as configuration (engine/resize.py): sizes, training targets resized alike, multi-scale
draws, and evaluation mapped back to the ground truth's size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autopanoptic.config import load_config
from autopanoptic.engine.datasets import to_tensors
from autopanoptic.engine.resize import Resize, nearest, resize_pair, to_original


@given(st.integers(8, 2000), st.integers(8, 2000))
def test_shorter_side_is_min_size_unless_the_longer_side_would_pass_max_size(h, w):
    oh, ow = Resize((800,), 1333).output_size(h, w)
    assert max(oh, ow) <= 1333 + 1
    assert min(oh, ow) == pytest.approx(800, abs=1) or max(oh, ow) == pytest.approx(1333, abs=1)
    assert oh / ow == pytest.approx(h / w, rel=0.02 + 2 / min(oh, ow))
    assert Resize().output_size(h, w) == (h, w)


def test_multi_scale_draws_are_a_pure_function_of_seed_and_batch():
    r = Resize((32, 48, 64), None)
    draws = [r.for_batch(k, seed=3) for k in range(40)]
    assert draws == [r.for_batch(k, seed=3) for k in range(40)]
    assert set(draws) == {32, 48, 64}
    assert Resize((800,), 1333).for_batch(5, 0) == 800 and Resize().for_batch(5, 0) is None


def test_image_boxes_masks_and_semantic_are_resized_alike(tmp_path):
    from autopanoptic.data import PanopticDataset, write_synthetic

    write_synthetic(tmp_path, 2, size=32, seed=1)
    ds = PanopticDataset(tmp_path / "images", tmp_path / "panoptic.json", tmp_path / "panoptic")
    img0, t0 = to_tensors(ds[0])
    img, t = to_tensors(ds[0], resize=Resize((64,), None))
    assert img.shape[-2:] == t["semantic"].shape == t["masks"].shape[-2:] == (64, 64)
    assert torch.equal(t["boxes"], 2 * t0["boxes"])
    assert torch.equal(t["masks"], t0["masks"].repeat_interleave(2, -1).repeat_interleave(2, -2))
    assert torch.equal(t["semantic"], t0["semantic"].repeat_interleave(2, -1).repeat_interleave(2, -2))
    assert img.mean().item() == pytest.approx(img0.mean().item(), rel=0.02)
    assert to_original({"panoptic": t["semantic"], "semantic": t["semantic"],
                        "instances": {"boxes": t["boxes"], "masks": t["masks"]}},
                       (32, 32))["instances"]["boxes"].equal(t0["boxes"])


def test_nearest_keeps_ids_of_any_range_exactly():
    ids = torch.tensor([[2**24 + 1, 7], [3, 2**40]], dtype=torch.int64)
    assert torch.equal(nearest(ids, (4, 4)), ids.repeat_interleave(2, 0).repeat_interleave(2, 1))
    empty = torch.zeros((0, 2, 2), dtype=torch.bool)
    assert nearest(empty, (5, 3)).shape == (0, 5, 3)
    img, tgt = resize_pair(torch.rand(3, 4, 6), None, (8, 12))
    assert img.shape == (3, 8, 12) and tgt is None


def test_evaluation_of_resized_images_is_scored_at_the_ground_truth_size(tmp_path):
    from autopanoptic.data import PanopticDataset, write_synthetic
    from autopanoptic.engine.evaluate import evaluate
    from autopanoptic.nn import build_supernet

    write_synthetic(tmp_path, 2, size=32, seed=0)
    ds = PanopticDataset(tmp_path / "images", tmp_path / "panoptic.json", tmp_path / "panoptic")
    torch.manual_seed(0)
    net = build_supernet("tiny", ds.categories.num_things, ds.categories.num_stuff)
    seen, shapes = [], []
    net.backbone.stem.register_forward_hook(lambda m, a, out: seen.append(a[0].shape[-2:]))
    maps = []
    res = evaluate(net, ds, [0, 1], arch=(0,) * len(net.search_space), resize=Resize((48,), None), batch_size=1,
                   on_image=lambda r: (shapes.append(r.panoptic.shape), maps.append(r.panoptic)), branch_metrics=True)
    assert all(min(s) >= 48 for s in seen)  # the network saw the resized images
    assert shapes == [np.asarray(ds[i]["panoptic"]).shape[:2] for i in (0, 1)]  # scored at 32 x 32
    assert res.n_images == 2
    ahead = evaluate(net, ds, [0, 1], arch=(0,) * len(net.search_space), resize=Resize((48,), None), batch_size=1,
                     loader_workers=2, on_image=lambda r: maps.append(r.panoptic), branch_metrics=True)
    assert ahead.summary() == res.summary()  # batches read ahead by DataLoader workers: the same evaluation
    assert all(np.array_equal(a, b) for a, b in zip(maps[:2], maps[2:]))


def test_presets_use_the_papers_sizes_and_tiny_its_own():
    assert load_config("paper-coco").data.min_size == (800,) and load_config("paper-coco").data.max_size == 1333
    assert load_config("tiny").data.min_size == ()
    assert load_config("tiny", ["data.min_size=[640, 800]"]).data.min_size == (640, 800)


def test_batches_prepared_ahead_by_dataloader_workers_train_the_same_weights(tmp_path):
    """loader_workers=2 (multi-scale resizing, flips) against decoding in the loop; also resumed."""
    import importlib.util
    from pathlib import Path

    from autopanoptic.config import TrainConfig
    from autopanoptic.engine.train import train

    spec = importlib.util.spec_from_file_location("train_helpers", Path(__file__).parent / "test_train.py")
    T = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(T)
    cfg = TrainConfig(steps=4, batch_size=2, lr=0.05, checkpoint_every=1, seed=2)
    resize = Resize((8, 12, 16), 20)

    def run(workers, folder=None, stop_after=None):
        torch.manual_seed(0)
        model = T.ChoiceNet()
        res = train(model, T.make_dataset(), range(6), cfg, archs_for_step=T._cycle(model, seed=2), progress=False,
                    resize=resize, loader_workers=workers, stop_after=stop_after,
                    checkpoint_path=None if folder is None else folder / "c.pt")
        return model, res

    inline, res0 = run(0)
    ahead, res2 = run(2)
    run(2, tmp_path, stop_after=2)
    resumed, res3 = run(2, tmp_path)
    assert res3.resumed_from == 2
    assert [r["loss"] for r in res0.losses] == [r["loss"] for r in res2.losses]
    for name, v in inline.state_dict().items():
        assert torch.equal(ahead.state_dict()[name], v) and torch.equal(resumed.state_dict()[name], v), name
