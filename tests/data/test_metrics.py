"""Box / mask AP (against pycocotools, on hand-made detections with known answers) and mIoU."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from autopanoptic.data import CategoryMap
from autopanoptic.data.metrics import (
    APRecords,
    SemanticConfusion,
    ap_records,
    ap_records_from_sample,
    crowd_instances,
    format_metrics_table,
    instance_ap,
    json_safe,
    semantic_class_names,
    semantic_confusion,
)
from autopanoptic.errors import DataError

H = W = 20


def box_mask(x0, y0, x1, y1, h=H, w=W):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def inst(boxes, labels, scores=None):
    """Instances (or predictions, with ``scores``) whose masks fill their integer boxes."""
    d = {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, np.int64),
        "masks": np.asarray([box_mask(*b) for b in boxes], np.uint8).reshape(-1, H, W),
    }
    if scores is not None:
        d["scores"] = np.asarray(scores, np.float32)
    return d


# ---- AP: known answers ---------------------------------------------------------------------------
def test_perfect_detections_give_ap_one():
    gt1 = inst([[0, 0, 10, 10], [12, 12, 18, 19]], [0, 1])
    gt2 = inst([[2, 3, 9, 15]], [1])
    rec = ap_records(1, H, W, gt1, {**gt1, "scores": [0.9, 0.8]}) + ap_records(2, H, W, gt2, {**gt2, "scores": [0.7]})
    res = instance_ap(rec, 2, names=["cat", "dog"])
    for t in ("bbox", "segm"):
        assert res[t]["AP"] == pytest.approx(1.0)
        assert res[t]["AP50"] == pytest.approx(1.0)
        assert res[t]["AP75"] == pytest.approx(1.0)
        assert sorted(res[t]["per_class"]) == ["cat", "dog"]
        for per in res[t]["per_class"].values():
            assert per == {"AP": pytest.approx(1.0), "AP50": pytest.approx(1.0)}
        assert res[t]["n"] == 2


def test_detection_with_iou_064_counts_at_050_but_not_075():
    # gt 10x10, detection its 8x8 corner: IoU 64/100 for boxes and masks alike. It matches at the
    # thresholds 0.50, 0.55 and 0.60 (3 of the 10), so AP = 0.3.
    gt = inst([[0, 0, 10, 10]], [0])
    pred = inst([[0, 0, 8, 8]], [0], scores=[0.9])
    res = instance_ap(ap_records(1, H, W, gt, pred), 1)
    for t in ("bbox", "segm"):
        assert res[t]["AP50"] == pytest.approx(1.0)
        assert res[t]["AP75"] == pytest.approx(0.0)
        assert res[t]["AP"] == pytest.approx(0.3)


def test_false_positive_ranked_between_true_positives():
    # Two objects; detections by score: TP (0.9), FP (0.8), TP (0.7).
    # precision [1, 1/2, 2/3] at recall [1/2, 1/2, 1]; made monotone: [1, 2/3, 2/3].
    # COCO's 101 recall points: 0.00..0.50 (51 points) read 1.0, 0.51..1.00 (50 points) read 2/3.
    gt = inst([[0, 0, 8, 8], [10, 10, 18, 18]], [0, 0])
    pred = inst([[0, 0, 8, 8], [0, 12, 6, 19], [10, 10, 18, 18]], [0, 0, 0], scores=[0.9, 0.8, 0.7])
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    res = instance_ap(ap_records("x", H, W, gt, pred), 1)
    for t in ("bbox", "segm"):
        for k in ("AP", "AP50", "AP75"):
            assert res[t][k] == pytest.approx(expected, abs=1e-9)


def test_false_positive_ranked_first_halves_precision():
    gt = inst([[0, 0, 8, 8]], [0])
    pred = inst([[12, 12, 18, 18], [0, 0, 8, 8]], [0, 0], scores=[0.9, 0.8])
    res = instance_ap(ap_records(1, H, W, gt, pred), 1)
    assert res["segm"]["AP"] == pytest.approx(0.5)
    assert res["bbox"]["AP50"] == pytest.approx(0.5)


def test_wrong_class_is_a_miss_and_class_without_gt_is_left_out():
    gt = inst([[0, 0, 8, 8], [10, 10, 18, 18]], [0, 1])
    pred = inst([[0, 0, 8, 8], [10, 10, 18, 18]], [0, 2], scores=[0.9, 0.9])  # second: wrong class 2
    res = instance_ap(ap_records(1, H, W, gt, pred), 3)
    pc = res["segm"]["per_class"]
    assert pc["0"]["AP"] == pytest.approx(1.0)
    assert pc["1"]["AP"] == pytest.approx(0.0)
    assert math.isnan(pc["2"]["AP"])  # no ground truth of class 2: not averaged
    assert res["segm"]["n"] == 2
    assert res["segm"]["AP"] == pytest.approx(0.5)


def test_no_detections_and_no_ground_truth():
    gt = inst([[0, 0, 8, 8]], [0])
    empty = inst([], [], scores=[])
    assert instance_ap(ap_records(1, H, W, gt, empty), 1)["segm"]["AP"] == pytest.approx(0.0)
    res = instance_ap(ap_records(1, H, W, empty, inst([[0, 0, 8, 8]], [0], scores=[0.5])), 1)
    assert math.isnan(res["bbox"]["AP"]) and res["bbox"]["n"] == 0


def test_detection_on_crowd_region_is_ignored():
    gt = inst([[0, 0, 8, 8]], [0])
    crowd = {"labels": np.array([0]), "masks": box_mask(10, 10, 20, 20)[None]}
    # a higher-scored detection inside the crowd region: ignored with the crowd, an FP without it
    pred = inst([[11, 11, 19, 19], [0, 0, 8, 8]], [0, 0], scores=[0.95, 0.9])
    with_crowd = instance_ap(ap_records(1, H, W, gt, pred, crowd=crowd), 1)
    without = instance_ap(ap_records(1, H, W, gt, pred), 1)
    for t in ("bbox", "segm"):
        assert with_crowd[t]["AP"] == pytest.approx(1.0)
        assert without[t]["AP"] == pytest.approx(0.5)


def test_records_from_a_dataset_item_take_crowd_segments_from_the_panoptic_map():
    cats = CategoryMap.from_json([
        {"id": 1, "name": "person", "isthing": 1},
        {"id": 5, "name": "car", "isthing": 1},
        {"id": 7, "name": "sky", "isthing": 0},
    ])
    pan = np.zeros((H, W), np.int32)
    pan[:, :] = 30  # sky
    pan[0:8, 0:8] = 10  # a car
    pan[10:20, 10:20] = 20  # a crowd of cars
    segments = [
        {"id": 10, "category_id": 5, "iscrowd": 0, "area": 64},
        {"id": 20, "category_id": 5, "iscrowd": 1, "area": 100},
        {"id": 30, "category_id": 7, "iscrowd": 0, "area": 236},
    ]
    sample = {"image_id": "ade_0001", "file_name": "a.jpg", "height": H, "width": W, "panoptic": pan,
              "segments": segments, "instances": inst([[0, 0, 8, 8]], [1])}
    crowd = crowd_instances(sample, cats)
    assert crowd["labels"].tolist() == [1] and crowd["masks"].sum() == 100
    pred = inst([[11, 11, 19, 19], [0, 0, 8, 8]], [1, 1], scores=[0.95, 0.9])
    res = instance_ap(ap_records_from_sample(sample, pred, cats), cats.num_things,
                      names=[cats.name(c) for c in cats.thing_ids])
    assert res["segm"]["per_class"]["car"]["AP"] == pytest.approx(1.0)
    assert math.isnan(res["segm"]["per_class"]["person"]["AP"])


def _pycocotools_reference(records: APRecords, num_things: int, iou_type: str) -> np.ndarray:
    """COCOeval through the usual file-style path: a ground-truth dataset and ``COCO.loadRes``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for k, (_key, h, w, g, d) in enumerate(records.images):
        images.append({"id": k + 1, "height": h, "width": w})
        for a in g:
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": a["label"] + 1, "bbox": a["bbox"],
                         "segmentation": a["segmentation"], "area": a["area"], "iscrowd": a["iscrowd"]})
        for a in d:
            r = {"image_id": k + 1, "category_id": a["label"] + 1, "score": a["score"]}
            r.update({"bbox": a["bbox"]} if iou_type == "bbox" else {"segmentation": a["segmentation"]})
            dets.append(r)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": i + 1, "name": str(i)} for i in range(num_things)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:6]


def test_matches_pycocotools_on_random_detections():
    rng = np.random.default_rng(3)
    records = APRecords()
    for k in range(6):
        def rand_boxes(n):
            x0 = rng.integers(0, 14, n)
            y0 = rng.integers(0, 14, n)
            return [[int(a), int(b), int(a + rng.integers(2, 7)), int(b + rng.integers(2, 7))] for a, b in zip(x0, y0)]

        gb = rand_boxes(int(rng.integers(1, 4)))
        gt = inst(gb, rng.integers(0, 3, len(gb)))
        # jittered copies of the ground truth, plus random ones
        pb = [[max(0, b[0] + int(rng.integers(-1, 2))), b[1], b[2], min(W, b[3] + int(rng.integers(-1, 2)))] for b in gb]
        pb += rand_boxes(int(rng.integers(0, 3)))
        pred = inst(pb, rng.integers(0, 3, len(pb)), scores=rng.random(len(pb)))
        records = records + ap_records(k, H, W, gt, pred)
    res = instance_ap(records, 3)
    assert instance_ap(APRecords.concat([APRecords(records.images[:2]), APRecords(records.images[2:])]), 3) == res
    for t in ("bbox", "segm"):
        ref = _pycocotools_reference(records, 3, t)
        ours = np.array([res[t][k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")])
        ref = np.where(ref < 0, np.nan, ref)
        np.testing.assert_allclose(ours, ref, atol=1e-12, equal_nan=True)
        assert 0.0 < res[t]["AP"] < 1.0


def test_ap_input_errors_are_clear():
    gt = inst([[0, 0, 8, 8]], [0])
    with pytest.raises(DataError, match="2 boxes, 1 scores"):
        ap_records(1, H, W, gt, {**inst([[0, 0, 8, 8], [1, 1, 4, 4]], [0, 0]), "scores": [0.5]})
    with pytest.raises(DataError, match="masks have shape"):
        ap_records(1, H + 1, W, gt, inst([], [], scores=[]))
    with pytest.raises(DataError, match="predicted label 4"):
        instance_ap(ap_records(1, H, W, gt, inst([[0, 0, 8, 8]], [4], scores=[0.5])), 2)


# ---- mIoU ----------------------------------------------------------------------------------------
def test_miou_on_hand_made_maps():
    gt = np.array([[0, 0, 1, 1], [0, 0, 2, 255], [2, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 2, 0], [1, 2, 2, 0]])
    conf = semantic_confusion(gt, pred, 4)
    # class 0: tp 3, fn 1 (-> 1), fp 0   -> 3/4
    # class 1: tp 2, fp 2 (0->1, 2->1), fn 0 -> 2/4
    # class 2: tp 3, fn 1 (-> 1), fp 0   -> 3/4
    # class 3: absent from both maps -> nan, not averaged
    iou = conf.iou()
    np.testing.assert_allclose(iou[:3], [0.75, 0.5, 0.75])
    assert math.isnan(iou[3])
    s = conf.summary(["road", "sky", "things", "wall"])
    assert s["miou"] == pytest.approx(2 / 3)
    assert s["n"] == 3
    assert s["pixel_accuracy"] == pytest.approx(8 / 10)
    assert s["mean_accuracy"] == pytest.approx((3 / 4 + 2 / 2 + 3 / 4) / 3)
    assert s["per_class"]["sky"] == pytest.approx(0.5)


def test_class_predicted_but_absent_from_gt_counts_with_iou_zero():
    conf = semantic_confusion(np.array([[0, 0]]), np.array([[0, 1]]), 2)
    assert conf.iou().tolist() == [0.5, 0.0]
    assert conf.summary()["miou"] == pytest.approx(0.25)


def test_confusion_accumulates_and_merges_by_addition():
    rng = np.random.default_rng(0)
    maps = [(rng.integers(0, 5, (7, 9)), rng.integers(0, 5, (7, 9))) for _ in range(4)]
    for g, _ in maps:
        g[rng.random(g.shape) < 0.2] = 255
    parts = [semantic_confusion(g, p, 5) for g, p in maps]
    rank0 = parts[0] + parts[1]
    rank1 = parts[2] + parts[3]
    merged = SemanticConfusion.from_array(rank0.to_array().astype(np.float32) + rank1.to_array())
    whole = semantic_confusion(np.concatenate([g for g, _ in maps]), np.concatenate([p for _, p in maps]), 5)
    assert merged == whole
    assert merged.matrix.sum() == sum(int((g != 255).sum()) for g, _ in maps)
    assert SemanticConfusion.zeros(5) + whole == whole


def test_semantic_input_errors():
    with pytest.raises(DataError, match="differ in shape"):
        semantic_confusion(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(DataError, match="predicted semantic labels"):
        semantic_confusion(np.zeros((2, 2)), np.full((2, 2), 255), 2)
    with pytest.raises(DataError, match="ground-truth semantic labels"):
        semantic_confusion(np.full((2, 2), 3), np.zeros((2, 2)), 2)
    with pytest.raises(DataError, match="cannot add"):
        SemanticConfusion.zeros(2) + SemanticConfusion.zeros(3)


def test_names_and_table():
    cats = CategoryMap.from_json([
        {"id": 1, "name": "person", "isthing": 1},
        {"id": 7, "name": "sky", "isthing": 0},
        {"id": 9, "name": "grass", "isthing": 0},
    ])
    assert semantic_class_names(cats) == ["sky", "grass", "things"]
    gt = inst([[0, 0, 10, 10]], [0])
    ap = instance_ap(ap_records(1, H, W, gt, {**gt, "scores": [1.0]}), 1)
    table = format_metrics_table(ap, semantic_confusion(np.zeros((2, 2)), np.zeros((2, 2)), 3).summary())
    assert json.loads(json.dumps(json_safe(ap)))["bbox"]["APm"] is None  # nan -> null, strict JSON
    assert "box AP    AP 100.0" in table and "mask AP" in table and "mIoU 100.0" in table


def test_docstring_examples_and_no_torch():
    import doctest
    import subprocess
    import sys

    import autopanoptic.data.metrics as mod

    result = doctest.testmod(mod)
    assert result.failed == 0 and result.attempted > 0
    code = "import sys, autopanoptic.data.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
