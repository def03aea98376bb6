"""Images and PNGs that decode to an enormous size (decompression bombs) are refused with a clear
error naming the file, before their pixels are decoded, on every path that reads one."""

from __future__ import annotations

import json
import shutil
import tracemalloc
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from autopanoptic.data.format import MAX_PIXELS
from autopanoptic.errors import DataError

SIDE = 9500  # 90.25 M pixels: just over MAX_PIXELS (Pillow itself would only warn and decode 270 MB)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def png(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit RGB PNG with this header and IDAT stream."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """``real``: a valid 9500 x 9500 black PNG (1.2 MB on disk); ``claim``: 50000 x 50000 in the header
    with a tiny stream (Pillow refuses that size itself)."""
    folder = tmp_path_factory.mktemp("bombs")
    assert SIDE * SIDE > MAX_PIXELS
    z = zlib.compressobj(1)
    row = bytes(3 * SIDE + 1)  # filter byte 0, black pixels
    stream = b"".join([z.compress(row * 100) for _ in range(SIDE // 100)] + [z.flush()])
    (folder / "real.png").write_bytes(png(SIDE, SIDE, stream))
    (folder / "claim.png").write_bytes(png(50_000, 50_000, zlib.compress(bytes(1000))))
    return {"real": folder / "real.png", "claim": folder / "claim.png"}


def _readers():
    from autopanoptic.data import pq
    from autopanoptic.data.dataset import read_image
    from autopanoptic.data.format import read_panoptic_png

    return {"image": read_image, "panoptic PNG": read_panoptic_png, "PQ fast path": lambda p: pq._read_rgb(str(p))}


@pytest.mark.parametrize("kind", ["real", "claim"])
@pytest.mark.parametrize("reader", ["image", "panoptic PNG", "PQ fast path"])
def test_every_reader_refuses_a_bomb_before_decoding_it(bombs, kind, reader):
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="decompression bomb") as e:
            _readers()[reader](bombs[kind])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(bombs[kind]) in str(e.value) and "\n" not in str(e.value)
    assert peak < 20e6  # numpy never allocated the image (270 MB decoded)


def test_pretraining_images_refuse_a_bomb(bombs, tmp_path):
    from autopanoptic.data.imagefolder import ImageFolderDataset

    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    shutil.copy(bombs["real"], tmp_path / "cat" / "a.png")
    shutil.copy(bombs["claim"], tmp_path / "dog" / "b.png")
    ds = ImageFolderDataset(tmp_path, image_size=16)
    for i in range(2):
        with pytest.raises(DataError, match="decompression bomb") as e:
            ds[i]
        assert str(tmp_path) in str(e.value)


def test_data_check_and_pq_name_the_bomb(bombs, tmp_path):
    from autopanoptic.data import write_synthetic
    from autopanoptic_cli.main import main

    root = tmp_path / "d"
    write_synthetic(root, 2, size=32, seed=0)
    doc = json.loads((root / "panoptic.json").read_text())
    image = root / "images" / doc["images"][0]["file_name"]
    shutil.copy(bombs["real"], image)
    res = CliRunner().invoke(main, ["data", "check", str(root / "panoptic.json"), "--no-progress"], catch_exceptions=False)
    assert res.exit_code == 1 and f"{image}: the image is {SIDE} x {SIDE} pixels" in res.output, res.output
    pred = tmp_path / "pred"
    shutil.copytree(root / "panoptic", pred)
    bomb = pred / doc["annotations"][1]["file_name"]
    shutil.copy(bombs["claim"], bomb)
    res = CliRunner().invoke(main, ["pq", str(root / "panoptic.json"), str(root / "panoptic.json"), "--gt-folder",
                                    str(root / "panoptic"), "--pred-folder", str(pred), "--workers", "1"],
                             catch_exceptions=False)
    assert res.exit_code == 2 and res.output.startswith(f"error: {bomb}: the image is 50000 x 50000"), res.output
