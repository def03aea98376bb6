"""The dataset reader, CategoryMap, the dataset check, and damaged annotations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from autopanoptic.data import CategoryMap, PanopticDataset, check_dataset, write_synthetic
from autopanoptic.data.format import id2rgb, rgb2id, validate_panoptic_json
from autopanoptic.errors import DataError


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, 8, size=48, seed=11, crowd_prob=0.6)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@st.composite
def category_lists(draw):
    ids = draw(st.lists(st.integers(0, 300), min_size=1, max_size=20, unique=True))
    return [{"id": i, "name": f"c{i}", "isthing": draw(st.integers(0, 1))} for i in ids]


@given(category_lists())
def test_category_map_roundtrips(cats):
    cm = CategoryMap.from_json(cats)
    assert cm.num_things + cm.num_stuff == len(cats)
    for c in cats:
        label, isthing = cm.from_category_id(c["id"])
        assert isthing == bool(c["isthing"])
        assert cm.to_category_id(label, isthing) == c["id"]
    assert list(range(cm.num_things)) == [cm.from_category_id(i)[0] for i in cm.thing_ids]
    assert CategoryMap.from_json(cm.to_json()) == cm
    with pytest.raises(DataError):
        cm.from_category_id(1000)
    with pytest.raises(DataError):
        cm.to_category_id(cm.num_things, True)


@given(st.lists(st.integers(0, 256**3 - 1), min_size=1, max_size=50))
def test_rgb_id_roundtrip(ids):
    a = np.array(ids).reshape(1, -1)
    assert rgb2id(id2rgb(a)).tolist() == a.tolist()


def test_items_match_the_annotation(synth):
    ds = PanopticDataset(synth / "images", synth / "panoptic.json", synth / "panoptic")
    cm = ds.categories
    assert (cm.num_things, cm.num_stuff) == (4, 5) and cm.thing_ids == (1, 3, 6, 10)
    crowd_seen = False
    for item in ds:
        h, w = item["height"], item["width"]
        assert item["image"].shape == (h, w, 3) and item["image"].dtype == np.uint8
        pan, sem, inst = item["panoptic"], item["semantic"], item["instances"]
        assert pan.dtype == np.int32 and sem.dtype == np.int64 and sem.shape == (h, w)
        assert np.array_equal(sem == 255, pan == 0)
        by_id = {s["id"]: s for s in item["segments"]}
        things = [s for s in item["segments"] if cm.is_thing(s["category_id"]) and not s["iscrowd"]]
        crowd_seen |= any(s["iscrowd"] for s in item["segments"])
        assert len(inst["labels"]) == len(things)
        assert inst["boxes"].dtype == np.float32 and inst["labels"].dtype == np.int64
        assert inst["masks"].dtype == np.uint8 and inst["masks"].shape == (len(things), h, w)
        for s, box, label, mask in zip(things, inst["boxes"], inst["labels"], inst["masks"]):
            assert np.array_equal(mask.astype(bool), pan == s["id"])
            assert cm.to_category_id(int(label), True) == s["category_id"]
            x, y, bw, bh = s["bbox"]
            assert box.tolist() == [x, y, x + bw, y + bh]
        for sid, s in by_id.items():
            expect = cm.num_stuff if cm.is_thing(s["category_id"]) else cm.from_category_id(s["category_id"])[0]
            assert np.all(sem[pan == sid] == expect)
    assert crowd_seen


def test_ade20k_flavour(tmp_path):
    js = write_synthetic(tmp_path, 4, size=32, seed=2, kind="ade20k")
    data = json.loads(js.read_text())
    assert all(isinstance(im["id"], str) for im in data["images"])
    assert 0 in [c["id"] for c in data["categories"]]
    assert not any(s["iscrowd"] for a in data["annotations"] for s in a["segments_info"])
    ds = PanopticDataset(tmp_path / "images", js, kind="ade20k")
    assert ds.categories.from_category_id(0) == (0, False)  # "wall", a real stuff class
    assert isinstance(ds[0]["image_id"], str)
    assert check_dataset(tmp_path / "images", js, kind="ade20k") == []
    with pytest.raises(DataError, match="string ids need kind 'ade20k'|category id 0"):
        PanopticDataset(tmp_path / "images", js, kind="coco")


def test_check_reports_every_problem(synth, tmp_path):
    root = _copy(synth, tmp_path / "d")
    js = root / "panoptic.json"
    data = json.loads(js.read_text())
    anns = data["annotations"]
    (root / "panoptic" / anns[0]["file_name"]).unlink()                 # 1 missing PNG
    anns[1]["segments_info"].append({"id": 12345, "category_id": 1, "area": 3, "iscrowd": 0})  # 2 listed, not in PNG
    anns[2]["segments_info"].pop(0)                                      # 3 in PNG, not listed
    anns[3]["segments_info"][0]["category_id"] = 999                     # 4 unknown category
    data["images"].append(dict(data["images"][4]))                       # 5 duplicate image id
    (root / "images" / data["images"][5]["file_name"]).unlink()          # 6 missing image
    from PIL import Image

    Image.new("RGB", (10, 10)).save(root / "images" / data["images"][6]["file_name"])  # 7 size mismatch
    js.write_text(json.dumps(data))
    problems = check_dataset(root / "images", js)
    text = "\n".join(problems)
    for needle in [anns[0]["file_name"], "12345", "absent from segments_info", "unknown category 999",
                   "duplicate image id", data["images"][5]["file_name"], "10x10"]:
        assert needle in text, (needle, text)
    assert all("\n" not in p for p in problems)
    # the reader stops at the first problem, naming the file
    with pytest.raises(DataError, match="panoptic.json: duplicate image id"):
        PanopticDataset(root / "images", js)


DAMAGES = ["missing_png", "extra_segment", "missing_segment", "unknown_category", "size", "dup_image",
           "not_coco", "bad_segment_id"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_dataset_one_clear_error(synth, tmp_path, damage):
    root = _copy(synth, tmp_path / "d")
    js = root / "panoptic.json"
    data = json.loads(js.read_text())
    ann = data["annotations"][0]
    png = root / "panoptic" / ann["file_name"]
    if damage == "missing_png":
        png.unlink()
    elif damage == "extra_segment":
        ann["segments_info"].append({"id": 77, "category_id": 1, "area": 1, "iscrowd": 0})
    elif damage == "missing_segment":
        ann["segments_info"] = ann["segments_info"][1:]
    elif damage == "unknown_category":
        ann["segments_info"][0]["category_id"] = 2
    elif damage == "size":
        data["images"][0]["height"] += 1
    elif damage == "dup_image":
        data["images"][1]["id"] = data["images"][0]["id"]
    elif damage == "not_coco":
        data = {"images": data["images"], "annotations": data["annotations"]}
    elif damage == "bad_segment_id":
        ann["segments_info"][0]["id"] = 0
    js.write_text(json.dumps(data))
    with pytest.raises(DataError) as e:
        ds = PanopticDataset(root / "images", js)
        ds[0]
    msg = str(e.value)
    assert "\n" not in msg and ("panoptic.json" in msg or ann["file_name"] in msg), msg
    assert check_dataset(root / "images", js) != []


@given(st.data())
def test_random_damage_to_the_json_is_reported(data):
    cats = [{"id": 1, "name": "a", "isthing": 1}, {"id": 5, "name": "b", "isthing": 0}]
    good = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 4, "width": 4} for i in range(3)],
        "annotations": [{"image_id": i, "file_name": f"{i}.png",
                         "segments_info": [{"id": 1, "category_id": 1, "iscrowd": 0}]} for i in range(3)],
        "categories": cats,
    }
    assert validate_panoptic_json(good) == []
    path = data.draw(st.sampled_from([
        ("images", 0, "id"), ("annotations", 1, "image_id"), ("annotations", 2, "segments_info"),
        ("categories", 0, "id"), ("categories", 1, "isthing"), ("annotations", 0, "file_name"),
    ]))
    value = data.draw(st.one_of(st.none(), st.text(max_size=3), st.just(-1), st.just(2), st.lists(st.integers(), max_size=2)))
    bad = json.loads(json.dumps(good))
    bad[path[0]][path[1]][path[2]] = value
    if json.dumps(bad) == json.dumps(good):
        return
    problems = validate_panoptic_json(bad, source="x.json")
    still_valid = (path == ("images", 0, "id") and value == 2) or (path == ("categories", 0, "id") and value == 2) \
        or (path == ("annotations", 0, "file_name") and isinstance(value, str) and value.strip()) \
        or (path == ("annotations", 2, "segments_info") and value == []) \
        or (path == ("categories", 1, "isthing") and value in (0,))
    if not still_valid:
        assert problems and all(p.startswith("x.json: ") for p in problems)


@settings(max_examples=15)
@given(st.sampled_from(DAMAGES), st.integers(0, 7), st.integers(0, 10**6))
def test_any_damage_to_any_image_is_caught_by_reader_and_check(synth, damage, index, salt):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        root = _copy(synth, Path(d) / "d")
        js = root / "panoptic.json"
        data = json.loads(js.read_text())
        ann = data["annotations"][index]
        segs = ann["segments_info"]
        k = salt % len(segs)
        if damage == "missing_png":
            (root / "panoptic" / ann["file_name"]).unlink()
        elif damage == "extra_segment":
            segs.append({"id": 256**3 - 1 - salt % 1000, "category_id": 1, "area": 1, "iscrowd": 0})
        elif damage == "missing_segment":
            segs.pop(k)
        elif damage == "unknown_category":
            segs[k]["category_id"] = 200 + salt % 50
        elif damage == "size":
            data["images"][index]["width"] += 1 + salt % 3
        elif damage == "dup_image":
            data["images"][(index + 1) % 8]["id"] = data["images"][index]["id"]
        elif damage == "not_coco":
            del data[("images", "annotations", "categories")[salt % 3]]
        elif damage == "bad_segment_id":
            segs[k]["id"] = (0, -5, "x", 256**3)[salt % 4]
        js.write_text(json.dumps(data))
        problems = check_dataset(root / "images", js)
        assert problems and all("\n" not in p for p in problems)
        with pytest.raises(DataError):
            ds = PanopticDataset(root / "images", js)
            for i in range(len(ds)):
                ds[i]
