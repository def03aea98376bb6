"""The synthetic generator, splits, overlays and the `data` / `pq` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from autopanoptic.data import (
    PanopticDataset,
    check_dataset,
    render_image,
    render_panoptic,
    split_dataset,
    synthetic_categories,
    write_split,
    write_synthetic,
)
from autopanoptic.errors import DataError
from autopanoptic_cli.main import main


@settings(max_examples=10)
@given(st.integers(0, 2**31), st.integers(0, 50), st.sampled_from([24, 40]), st.sampled_from(["coco", "ade20k"]),
       st.sampled_from(["basic", "hard"]))
def test_render_is_deterministic_and_consistent(seed, index, size, kind, style):
    img, pan, segs = render_image(seed, index, size=size, kind=kind, style=style)
    img2, pan2, segs2 = render_image(seed, index, size=size, kind=kind, style=style)
    cats = {c["id"] for c in synthetic_categories(kind, style)}
    assert {s["category_id"] for s in segs} <= cats
    assert np.array_equal(img, img2) and np.array_equal(pan, pan2) and segs == segs2
    ids, counts = np.unique(pan, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist()))
    assert {s["id"] for s in segs} == set(area) - {0}
    for s in segs:
        assert s["area"] == area[s["id"]]
        x, y, w, h = s["bbox"]
        ys, xs = np.nonzero(pan == s["id"])
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
    assert sum(s["iscrowd"] for s in segs) <= 1
    if kind == "ade20k":
        assert not any(s["iscrowd"] for s in segs)


def test_generator_has_void_crowd_occlusion_and_all_classes(tmp_path):
    stats = {"void": 0, "crowd": 0, "cats": set(), "things_per_image": []}
    for i in range(40):
        _, pan, segs = render_image(7, i, size=64, crowd_prob=0.3)
        stats["void"] += int((pan == 0).any())
        stats["crowd"] += sum(s["iscrowd"] for s in segs)
        stats["cats"] |= {s["category_id"] for s in segs}
        stats["things_per_image"].append(sum(1 for s in segs if s["category_id"] < 92))
    assert stats["void"] >= 10 and stats["crowd"] >= 3
    assert stats["cats"] == {1, 3, 6, 10, 92, 97, 105, 118, 130}
    assert max(stats["things_per_image"]) >= 4 and min(stats["things_per_image"]) <= 2


def test_hard_style_twins_differ_in_shape_alone():
    """In the hard style each new shape has an old one's colour family and texture (so only the shape
    tells the twins apart), all seven shapes and thin structures occur, and object sizes spread
    widely; the basic style is unchanged by the style option."""
    import colorsys

    names = {c["id"]: c["name"] for c in synthetic_categories(style="hard")}
    hues: dict[str, list[float]] = {}
    fill: dict[str, list[float]] = {}
    areas, thin = [], 0
    for i in range(80):
        img, pan, segs = render_image(3, i, size=64, style="hard")
        for s in segs:
            name = names[s["category_id"]]
            if name in ("sky", "grass", "water", "wall", "sand") or s["iscrowd"] or s["area"] < 30:
                continue
            m = pan == s["id"]
            r, g, b = np.median(img[m].astype(float) / 255, axis=0)
            hues.setdefault(name, []).append(colorsys.rgb_to_hsv(r, g, b)[0])
            fill.setdefault(name, []).append(s["area"] / (s["bbox"][2] * s["bbox"][3]))
            areas.append(s["area"])
            thin += name == "bar" and min(s["bbox"][2:]) <= 4
    assert set(hues) == {"circle", "square", "triangle", "ring", "bar", "cross", "ellipse"}
    for new, old in (("ellipse", "circle"), ("cross", "square"), ("bar", "triangle")):
        d = abs(np.median(hues[new]) - np.median(hues[old]))
        assert min(d, 1 - d) < 0.06, (new, old)  # the same colour family...
    assert np.median(fill["cross"]) < 0.6 < np.median(fill["square"])  # ...but another shape
    assert thin >= 1 and np.quantile(areas, 0.9) > 8 * np.quantile(areas, 0.1)
    a, b = render_image(3, 5, size=40), render_image(3, 5, size=40, style="basic")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    with pytest.raises(DataError, match="unknown synthetic style"):
        render_image(3, 5, size=40, style="harder")


def test_written_dataset_is_deterministic_and_clean(tmp_path):
    a = write_synthetic(tmp_path / "a", 4, size=32, seed=5)
    b = write_synthetic(tmp_path / "b", 6, size=32, seed=5)
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert da["annotations"] == db["annotations"][:4]  # a prefix
    for ann in da["annotations"]:
        assert (tmp_path / "a/panoptic" / ann["file_name"]).read_bytes() == (tmp_path / "b/panoptic" / ann["file_name"]).read_bytes()
    for im in da["images"]:
        assert (tmp_path / "a/images" / im["file_name"]).read_bytes() == (tmp_path / "b/images" / im["file_name"]).read_bytes()
    assert check_dataset(tmp_path / "a/images", a) == []
    ids = [c["id"] for c in da["categories"]]
    assert ids != list(range(min(ids), min(ids) + len(ids)))  # gaps exercise the contiguous map


@given(st.integers(0, 30), st.integers(0, 1000), st.integers(0, 10**6))
def test_split_is_a_deterministic_partition(n, k, seed):
    data = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(n)],
            "annotations": [{"image_id": i, "file_name": f"{i}.png", "segments_info": []} for i in range(n)],
            "categories": []}
    k = k % (n + 1)
    tr, va = split_dataset(data, k, seed)
    assert (tr, va) == split_dataset(data, k, seed)
    t_ids, v_ids = [i["id"] for i in tr["images"]], [i["id"] for i in va["images"]]
    assert len(v_ids) == k and sorted(t_ids + v_ids) == list(range(n))
    assert [a["image_id"] for a in va["annotations"]] == v_ids
    with pytest.raises(DataError):
        split_dataset(data, n + 1, seed)


def test_write_split_datasets_are_readable(tmp_path):
    js = write_synthetic(tmp_path / "d", 6, size=24, seed=0)
    tr, va = write_split(js, tmp_path / "s", 2, seed=3)
    ds_tr = PanopticDataset(tmp_path / "d/images", tr)
    ds_va = PanopticDataset(tmp_path / "d/images", va)
    assert (len(ds_tr), len(ds_va)) == (4, 2)
    assert {d["image_id"] for d in ds_tr} | {d["image_id"] for d in ds_va} == set(range(1, 7))


def test_render_panoptic_colours_segments_and_draws_boundaries():
    img = np.full((10, 10, 3), 100, np.uint8)
    pan = np.zeros((10, 10), np.int32)
    pan[2:8, 2:8] = 5
    from autopanoptic.data import CategoryMap

    cats = CategoryMap.from_json([{"id": 3, "name": "x", "isthing": 0, "color": [255, 0, 0]}])
    out = render_panoptic(img, pan, [{"id": 5, "category_id": 3}], cats)
    assert np.array_equal(out[0, 0], img[0, 0])  # void far from a boundary: untouched
    assert out[4, 4, 0] > out[4, 4, 1]  # the category colour (red) blended in
    assert np.array_equal(out[2, 4], [255, 255, 255])  # boundary
    with pytest.raises(DataError):
        render_panoptic(img[:5], pan, [])


def test_cli_synth_check_show_pq(tmp_path):
    r = CliRunner()
    out = tmp_path / "ds"
    res = r.invoke(main, ["data", "synth", str(out), "--images", "4", "--size", "32", "--seed", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    js = out / "panoptic.json"
    res = r.invoke(main, ["data", "check", str(js), "--no-progress"])
    assert res.exit_code == 0 and "no problems" in res.output
    res = r.invoke(main, ["data", "show", str(js), str(tmp_path / "o.png"), "--images", str(out / "images"), "--index", "1"])
    assert res.exit_code == 0, res.output
    from PIL import Image

    assert Image.open(tmp_path / "o.png").size == (32, 32)
    res = r.invoke(main, ["pq", str(js), str(js), "--json", str(tmp_path / "r.json"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "100.0" in res.output
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["All"]["pq"] == 1.0 and saved["All"]["n"] > 0
    res = r.invoke(main, ["data", "split", str(js), str(tmp_path / "sp"), "--val", "1"])
    assert res.exit_code == 0 and (tmp_path / "sp/val.json").is_file()
    # damaged: every problem listed, exit 1; a library error: one line, exit 2
    data = json.loads(js.read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 4242
    (out / "panoptic" / data["annotations"][1]["file_name"]).unlink()
    js.write_text(json.dumps(data))
    res = r.invoke(main, ["data", "check", str(js), "--no-progress"])
    assert res.exit_code == 1 and "4242" in res.output and data["annotations"][1]["file_name"] in res.output
    res = r.invoke(main, ["pq", str(js), str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "missing.json" in res.output
