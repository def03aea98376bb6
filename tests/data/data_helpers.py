"""Helpers shared by the data tests: write generated images to disk, run the two PQ oracles."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from autopanoptic.data import write_panoptic_png


def write_pairs(root: Path, pairs, categories, *, string_ids: bool = False):
    """Write ``(gt_map, gt_segs, pred_map, pred_segs)`` tuples as gt.json + gt/, pred.json + pred/."""
    root.mkdir(parents=True, exist_ok=True)
    images, gt_anns, pred_anns = [], [], []
    for k, (gt, gs, pr, ps) in enumerate(pairs):
        iid = f"img_{k}" if string_ids else k + 1
        name = f"{k:06d}.png"
        write_panoptic_png(root / "gt" / name, gt)
        write_panoptic_png(root / "pred" / name, pr)
        images.append({"id": iid, "file_name": f"{k:06d}.jpg", "height": int(gt.shape[0]), "width": int(gt.shape[1])})
        gt_anns.append({"image_id": iid, "file_name": name, "segments_info": gs})
        pred_anns.append({"image_id": iid, "file_name": name, "segments_info": ps})
    (root / "gt").mkdir(exist_ok=True)
    (root / "pred").mkdir(exist_ok=True)
    gt_json, pred_json = root / "gt.json", root / "pred.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": gt_anns, "categories": list(categories)}))
    pred_json.write_text(json.dumps({"annotations": pred_anns}))
    return gt_json, pred_json


def panopticapi_stats(gt_json: Path, pred_json: Path, gt_folder=None, pred_folder=None):
    """The COCO panoptic API's per-category stats, single process: {cid: (tp, fp, fn, iou)}."""
    from panopticapi.evaluation import pq_compute_single_core

    gt = json.loads(Path(gt_json).read_text())
    pred = json.loads(Path(pred_json).read_text())
    preds = {a["image_id"]: a for a in pred["annotations"]}
    pairs = [(a, preds[a["image_id"]]) for a in gt["annotations"]]
    cats = {c["id"]: c for c in gt["categories"]}
    gt_folder = str(gt_folder or str(gt_json)[: -len(".json")])
    pred_folder = str(pred_folder or str(pred_json)[: -len(".json")])
    with contextlib.redirect_stdout(io.StringIO()):
        stat = pq_compute_single_core(0, pairs, gt_folder, pred_folder, cats)
    out = {}
    for cid in cats:
        c = stat.pq_per_cat[cid]
        out[cid] = (c.tp, c.fp, c.fn, c.iou)
    groups = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        n = sum(1 for cid in cats if (isthing is None or bool(cats[cid]["isthing"]) == isthing)
                and sum(out[cid][:3]) > 0)
        groups[name] = stat.pq_average(cats, isthing)[0] if n else {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    return out, groups


def hotcoco_results(gt_json: Path, pred_json: Path, gt_folder=None, pred_folder=None):
    """hotcoco's results dict (per_class carries tp, fp, fn)."""
    import warnings

    from hotcoco.panoptic import PanopticEval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {}
        if gt_folder is not None:
            kw["gt_folder"] = str(gt_folder)
        if pred_folder is not None:
            kw["pred_folder"] = str(pred_folder)
        ev = PanopticEval(str(gt_json), str(pred_json), **kw)
        ev.evaluate()
        return ev.results()


def assert_same_as_oracles(ours: dict, gt_json, pred_json, gt_folder=None, pred_folder=None, *, hotcoco=True):
    """tp/fp/fn identical and PQ/SQ/RQ within 1e-9 of both oracles."""
    ref, ref_groups = panopticapi_stats(gt_json, pred_json, gt_folder, pred_folder)
    for cid, (tp, fp, fn, iou) in ref.items():
        mine = ours["per_class"][cid]
        assert (mine["tp"], mine["fp"], mine["fn"]) == (tp, fp, fn), cid
        assert abs(mine["iou"] - iou) < 1e-9
    for g in ("All", "Things", "Stuff"):
        assert ours[g]["n"] == ref_groups[g]["n"]
        for k in ("pq", "sq", "rq"):
            assert abs(ours[g][k] - float(ref_groups[g][k])) < 1e-9, (g, k)
    if hotcoco:
        h = hotcoco_results(gt_json, pred_json, gt_folder, pred_folder)
        for cid in ref:
            hc = h["per_class"].get(cid, h["per_class"].get(str(cid)))
            mine = ours["per_class"][cid]
            if hc is None:
                assert mine["tp"] + mine["fp"] + mine["fn"] == 0
                continue
            assert (int(hc["tp"]), int(hc["fp"]), int(hc["fn"])) == (mine["tp"], mine["fp"], mine["fn"]), cid
        for g in ("All", "Things", "Stuff"):
            if ours[g]["n"] == 0:
                continue
            assert h[g]["n"] == ours[g]["n"]
            for k in ("pq", "sq", "rq"):
                assert abs(ours[g][k] - h[g][k]) < 1e-9, (g, k)


def maps_equal(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))
