"""PQ against the COCO panoptic API and hotcoco; PQStats algebra; bad input."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from autopanoptic.data import (
    CategoryMap,
    PQStats,
    format_pq_table,
    make_prediction,
    pq_compute,
    pq_compute_stats,
    pq_stats,
    read_panoptic_png,
    write_predictions,
    write_synthetic,
)
from autopanoptic.errors import DataError
from data_helpers import assert_same_as_oracles, panopticapi_stats, write_pairs
from strategies import PANOPTIC_CATEGORIES, panoptic_pairs

CATS = CategoryMap.from_json(PANOPTIC_CATEGORIES)


@given(st.lists(panoptic_pairs(), min_size=1, max_size=4))
def test_in_memory_stats_equal_the_coco_panoptic_api(pairs):
    with tempfile.TemporaryDirectory() as d:
        gt_json, pred_json = write_pairs(Path(d), pairs, PANOPTIC_CATEGORIES)
        ref, ref_groups = panopticapi_stats(gt_json, pred_json)
    total = PQStats.zeros(CATS)
    for k, (gt, gs, pr, ps) in enumerate(pairs):
        total = total + pq_stats(gt, gs, pr, ps, CATS, source=f"image {k}")
    per = total.per_class()
    for cid, (tp, fp, fn, iou) in ref.items():
        assert (per[cid]["tp"], per[cid]["fp"], per[cid]["fn"]) == (tp, fp, fn)
        assert per[cid]["iou"] == pytest.approx(iou, abs=1e-9)
    summary = total.summary()
    for g in ("All", "Things", "Stuff"):
        assert summary[g]["n"] == ref_groups[g]["n"]
        for key in ("pq", "sq", "rq"):
            assert summary[g][key] == pytest.approx(float(ref_groups[g][key]), abs=1e-9)


@settings(max_examples=10)
@given(st.lists(panoptic_pairs(), min_size=1, max_size=5))
def test_files_equal_both_oracles(pairs):
    with tempfile.TemporaryDirectory() as d:
        gt_json, pred_json = write_pairs(Path(d), pairs, PANOPTIC_CATEGORIES)
        ours = pq_compute(gt_json, pred_json, workers=1)
        assert_same_as_oracles(ours, gt_json, pred_json)


@pytest.mark.parametrize("kind", ["coco", "ade20k"])
def test_synthetic_dataset_equals_both_oracles_with_two_workers(tmp_path, kind):
    gt_json = write_synthetic(tmp_path / "gt", 12, size=48, seed=3, kind=kind, crowd_prob=0.5)
    pred_json = write_predictions(gt_json, tmp_path / "pred.json", seed=4, difficulty=0.9)
    ours = pq_compute(gt_json, pred_json, workers=2)
    assert ours == pq_compute(gt_json, pred_json, workers=1) or _close(ours, pq_compute(gt_json, pred_json, workers=1))
    # hotcoco reads integer image ids only; the ADE20K flavour has string ids.
    assert_same_as_oracles(ours, gt_json, pred_json, hotcoco=kind == "coco")
    assert 0 < ours["All"]["pq"] < 1


def _close(a, b):
    return all(abs(a[g][k] - b[g][k]) < 1e-12 for g in ("All", "Things", "Stuff") for k in ("pq", "sq", "rq"))


def test_real_coco_sample(tmp_path, shared_data):
    src = shared_data / "coco-panoptic-sample"
    shutil.copytree(src / "panoptic", tmp_path / "panoptic")
    shutil.copy(src / "panoptic.json", tmp_path / "panoptic.json")
    gt_json = tmp_path / "panoptic.json"
    # Ground truth against itself: PQ 100 over the 8 categories present.
    self_res = pq_compute(gt_json, gt_json, workers=1)
    assert self_res["All"]["pq"] == pytest.approx(1.0) and self_res["All"]["n"] == 8
    pred_json = write_predictions(gt_json, tmp_path / "pred.json", seed=0, difficulty=1.0)
    ours = pq_compute(gt_json, pred_json, workers=1)
    assert ours["All"]["pq"] < 1
    assert_same_as_oracles(ours, gt_json, pred_json)


def test_pq_stats_add_split_and_array_roundtrip(tmp_path):
    gt_json = write_synthetic(tmp_path / "gt", 6, size=32, seed=1)
    data = json.loads(gt_json.read_text())
    cats = CategoryMap.from_json(data["categories"])
    per_image = []
    for k, ann in enumerate(data["annotations"]):
        pan = read_panoptic_png(tmp_path / "gt" / "panoptic" / ann["file_name"])
        pred, segs = make_prediction(pan, ann["segments_info"], cats, np.random.default_rng(k))
        per_image.append(pq_stats(pan, ann["segments_info"], pred, segs, cats))
    a = per_image[0]
    for s in per_image[1:]:
        a = a + s
    b = per_image[-1]
    for s in reversed(per_image[:-1]):
        b = s + b
    assert np.array_equal(a.tp, b.tp) and np.array_equal(a.fp, b.fp) and np.array_equal(a.fn, b.fn)
    assert np.allclose(a.iou, b.iou, atol=1e-12)
    # flat array form (what all_reduce sums): summing arrays == adding stats
    arr = sum(s.to_array() for s in per_image)
    c = PQStats.from_array(arr, cats)
    assert c.tp.tolist() == a.tp.tolist() and np.allclose(c.iou, a.iou)
    assert PQStats.from_array(a.to_array(), cats) == a
    with pytest.raises(DataError):
        PQStats.from_array(arr[:-1], cats)
    with pytest.raises(DataError):
        a + PQStats.zeros(PANOPTIC_CATEGORIES)


def test_group_without_categories_reports_n_zero():
    gt = np.array([[5, 5], [6, 6]])
    segs = [{"id": 5, "category_id": 7, "area": 2, "iscrowd": 0}, {"id": 6, "category_id": 9, "area": 2, "iscrowd": 0}]
    s = pq_stats(gt, segs, gt, [{"id": 5, "category_id": 7}, {"id": 6, "category_id": 9}], CATS).summary()
    assert s["Things"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    assert s["Stuff"]["n"] == 2 and s["Stuff"]["pq"] == 1.0
    empty = PQStats.zeros(CATS).summary()
    assert empty["All"]["n"] == 0
    assert "All" in format_pq_table(empty)


def test_rules_by_hand():
    # gt: thing 1 (6 px), crowd of category 4 (4 px), void column; pred: a segment of 4 mostly on crowd
    gt = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [2, 2, 0, 0], [2, 2, 0, 0]])
    gs = [{"id": 1, "category_id": 1, "area": 6, "iscrowd": 0}, {"id": 2, "category_id": 4, "area": 4, "iscrowd": 1}]
    pred = np.array([[3, 3, 3, 3], [3, 3, 3, 3], [4, 4, 4, 0], [4, 4, 4, 0]])
    ps = [{"id": 3, "category_id": 1}, {"id": 4, "category_id": 4}]
    st_ = pq_stats(gt, gs, pred, ps, CATS).per_class()
    # pred 3: 6 px on gt 1, 2 px on void -> union = 8 + 6 - 6 - 2 = 6, IoU 1.0
    assert st_[1]["tp"] == 1 and st_[1]["iou"] == 1.0
    # pred 4: 4 px on crowd of its category + 2 px on void -> ignored, not a false positive
    assert st_[4] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0, "fn": 0, "iou": 0.0}


# --- bad input --------------------------------------------------------------------------------


@given(panoptic_pairs(), st.sampled_from(["extra_png_id", "missing_png_id", "unknown_category", "size", "dup_id"]))
def test_damaged_input_raises_one_data_error(pair, damage):
    gt, gs, pr, ps = pair
    pr = pr.copy()
    ps = [dict(s) for s in ps]
    if damage == "extra_png_id":
        pr[0, 0] = 256**3 - 7 if 256**3 - 7 not in {s["id"] for s in ps} else 256**3 - 8
    elif damage == "missing_png_id":
        ps.append({"id": 256**3 - 3 if 256**3 - 3 not in set(np.unique(pr).tolist()) else 256**3 - 4, "category_id": 7})
    elif damage == "unknown_category":
        if not ps:
            ps.append({"id": 5, "category_id": 7})
            pr[:] = 5
        ps[0]["category_id"] = 2
    elif damage == "size":
        pr = np.zeros((pr.shape[0] + 1, pr.shape[1]), np.int32)
        ps = []
    elif damage == "dup_id":
        if not ps:
            ps.append({"id": 5, "category_id": 7})
            pr[:] = 5
        ps.append(dict(ps[0]))
    with pytest.raises(DataError) as e:
        pq_stats(gt, gs, pr, ps, CATS, source="img7")
    assert "img7" in str(e.value) and "\n" not in str(e.value)
    # the same damage on the ground-truth side is caught too
    if damage in ("extra_png_id", "missing_png_id", "unknown_category", "dup_id"):
        with pytest.raises(DataError):
            pq_stats(pr, ps, gt, [], CATS, source="img7")


def test_file_level_errors_name_the_file(tmp_path):
    gt_json = write_synthetic(tmp_path / "gt", 3, size=24, seed=0)
    pred_json = write_predictions(gt_json, tmp_path / "pred.json", seed=0)
    # missing PNG
    png = next((tmp_path / "pred").iterdir())
    png.unlink()
    with pytest.raises(DataError, match=str(png.name)):
        pq_compute(gt_json, pred_json, workers=1)
    # no prediction for an image
    pred = json.loads(pred_json.read_text())
    pred["annotations"] = pred["annotations"][1:]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(pred))
    with pytest.raises(DataError, match="no prediction for image"):
        pq_compute(gt_json, short, pred_folder=tmp_path / "pred", workers=1)
    # not COCO panoptic
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="bad.json"):
        pq_compute(bad, pred_json, workers=1)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        pq_compute(gt_json, bad, workers=1)
    with pytest.raises(DataError, match="folder not found"):
        pq_compute(gt_json, pred_json, pred_folder=tmp_path / "nowhere", workers=1)
    # a PNG of the wrong size
    png = next((tmp_path / "gt" / "panoptic").iterdir())
    pred_png = tmp_path / "pred" / png.name
    if pred_png.exists():
        from PIL import Image

        Image.new("RGB", (5, 5)).save(pred_png)
        with pytest.raises(DataError, match="size"):
            pq_compute(gt_json, pred_json, gt_folder=tmp_path / "gt" / "panoptic", workers=1)


def test_stats_summary_matches_compute(tmp_path):
    gt_json = write_synthetic(tmp_path / "gt", 4, size=24, seed=5)
    pred_json = write_predictions(gt_json, tmp_path / "pred.json", seed=1)
    stats = pq_compute_stats(gt_json, pred_json, workers=1)
    assert stats.summary() == pq_compute(gt_json, pred_json, workers=1)


def test_pillow_fallback_gives_the_same_result(tmp_path, monkeypatch):
    from autopanoptic.data import pq as pq_module

    gt_json = write_synthetic(tmp_path / "gt", 5, size=32, seed=8)
    pred_json = write_predictions(gt_json, tmp_path / "pred.json", seed=2, difficulty=1.0)
    fast = pq_compute(gt_json, pred_json, workers=1)
    monkeypatch.setattr(pq_module, "_fastpq", None)  # no C extension: libspng and numpy
    assert pq_compute(gt_json, pred_json, workers=1) == fast
    monkeypatch.setattr(pq_module, "_spng", None)  # and no libspng: Pillow
    slow = pq_compute(gt_json, pred_json, workers=1)
    assert fast == slow
    # a PNG that is not RGB is refused with a clear message on both paths
    from PIL import Image

    png = next((tmp_path / "pred").iterdir())
    Image.new("L", (32, 32)).save(png)
    with pytest.raises(DataError, match="mode L"):
        pq_compute(gt_json, pred_json, workers=1)
    monkeypatch.undo()
    with pytest.raises(DataError, match="mode L"):
        pq_compute(gt_json, pred_json, workers=1)
