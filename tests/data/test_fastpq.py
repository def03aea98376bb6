"""The optional C extension ``autopanoptic.data._fastpq`` and the PNG fast path built on it.

Each loop is checked against an independent reference: PNG unfiltering against a plain-Python
implementation of the PNG specification (and whole files against Pillow), pair counting against
the numpy path of :mod:`autopanoptic.data.pq`.
"""

from __future__ import annotations

import io
import shutil
import struct
import sysconfig
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from autopanoptic.data import pq as P
from autopanoptic.data.format import id2rgb

fast = pytest.mark.skipif(P._fastpq is None, reason="the C extension autopanoptic.data._fastpq is not built")


def test_the_extension_is_built_where_a_compiler_exists():
    # setup.py builds it with optional=True, so a broken build would otherwise go unnoticed
    # (results stay right, PQ gets about twice as slow).
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) on this machine")
    assert P._fastpq is not None, "autopanoptic.data._fastpq did not build: reinstall with pip -e . and read the log"
    assert P.pq_backend().startswith("C extension")


def test_backend_names_the_path_in_use(monkeypatch):
    monkeypatch.setattr(P, "_fastpq", None)
    monkeypatch.setattr(P, "_spng", None)
    assert P.pq_backend() == "Pillow + numpy"
    monkeypatch.setattr(P, "_fastpq", object())
    monkeypatch.setattr(P, "_inflate", zlib)
    assert P.pq_backend() == "C extension + zlib"


# -- PNG filtering, straight from the specification ------------------------------------------


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _predict(ft: int, row: list[int], up: list[int], x: int, bpp: int) -> int:
    a = row[x - bpp] if x >= bpp else 0
    b = up[x]
    c = up[x - bpp] if x >= bpp else 0
    return (0, a, b, (a + b) // 2, _paeth(a, b, c))[ft]


def _filter(image: np.ndarray, types: list[int], bpp: int) -> bytes:
    """The filtered scanlines of ``image`` (H x rowbytes uint8) with filter ``types[y]`` on row y."""
    out = bytearray()
    up = [0] * image.shape[1]
    for y, ft in enumerate(types):
        row = image[y].tolist()
        out.append(ft)
        out.extend((row[x] - _predict(ft, row, up, x, bpp)) & 255 for x in range(len(row)))
        up = row
    return bytes(out)


def _png(rgb: np.ndarray, types: list[int], idat_parts: int = 1) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` with the given row filters, its IDAT split in ``idat_parts``."""
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    stream = zlib.compress(_filter(rgb.reshape(h, 3 * w), types, 3))
    cut = [round(i * len(stream) / idat_parts) for i in range(idat_parts + 1)]
    idat = b"".join(chunk(b"IDAT", stream[a:b]) for a, b in zip(cut[:-1], cut[1:]))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", b"Comment\x00made by the tests") + idat + chunk(b"IEND", b""))


@st.composite
def _filtered(draw):
    bpp = draw(st.sampled_from([3, 3, 1, 2, 4, 6, 8]))  # 3 (RGB) has its own fast loops
    h = draw(st.integers(1, 12))
    width = draw(st.integers(1, 48))
    rowbytes = bpp * width
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):  # noise: every branch of the predictors
        image = rng.integers(0, 256, (h, rowbytes), dtype=np.uint8)
    else:  # piecewise-constant rows, some repeated (the zero-residual skips)
        pixels = rng.integers(0, 256, (h, width, bpp), dtype=np.uint8)
        new = rng.random((h, width)) < draw(st.sampled_from([0.02, 0.1, 0.3]))
        new[:, 0] = True
        start = np.maximum.accumulate(np.where(new, np.arange(width), 0), axis=1)  # of each pixel's run
        image = np.take_along_axis(pixels, start[:, :, None], axis=1).reshape(h, rowbytes)
        image[rng.random(h) < 0.5] = image[0]
    types = draw(st.lists(st.integers(0, 4), min_size=h, max_size=h))
    return image, types, bpp


@fast
@settings(max_examples=300, deadline=None)
@given(_filtered())
def test_unfilter_undoes_every_png_filter(case):
    image, types, bpp = case
    h, rowbytes = image.shape
    out = np.empty_like(image)
    P._fastpq.unfilter(_filter(image, types, bpp), out, h, rowbytes, bpp)
    assert np.array_equal(out, image)


@fast
@settings(max_examples=60, deadline=None)
@given(_filtered(), st.data())
def test_unfilter_piece_by_piece_equals_whole(case, data):
    image, types, bpp = case
    h, rowbytes = image.shape
    filtered = _filter(image, types, bpp)
    out = np.empty_like(image)
    y = 0
    while y < h:
        k = data.draw(st.integers(1, h - y))
        P._fastpq.unfilter(filtered[y * (rowbytes + 1) : (y + k) * (rowbytes + 1)], out, k, rowbytes, bpp, y)
        y += k
    assert np.array_equal(out, image)


@fast
def test_unfilter_refuses_bad_input():
    with pytest.raises(ValueError, match="filter type"):
        P._fastpq.unfilter(bytes([5, 1, 2, 3]), bytearray(3), 1, 3, 3)
    with pytest.raises(ValueError, match="size"):
        P._fastpq.unfilter(bytes(7), bytearray(6), 2, 3, 3)


@st.composite
def _rgb_png(draw):
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Segment-like maps: few colours in horizontal runs, some rows repeated.
    palette = rng.integers(0, 256, (draw(st.integers(1, 6)), 3), dtype=np.uint8)
    labels = np.repeat(rng.integers(0, len(palette), (h, w // 4 + 1)), 4, axis=1)[:, :w]
    labels[1::3] = labels[::3][: len(labels[1::3])]
    rgb = palette[labels]
    types = draw(st.lists(st.integers(0, 4), min_size=h, max_size=h))
    return rgb, _png(rgb, types, idat_parts=draw(st.integers(1, 3)))


@fast
@settings(max_examples=100, deadline=None)
@given(_rgb_png())
def test_png_fast_path_reads_what_pillow_reads(case):
    rgb, raw = case
    with Image.open(io.BytesIO(raw)) as im:  # the test's own encoder, checked by Pillow
        assert np.array_equal(np.asarray(im.convert("RGB")), rgb)
    out = P._decode_rgb8(raw)
    assert out is not None and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out, rgb)
    piece = P._PIECE
    try:  # inflated and unfiltered a few rows at a time, as large images are
        P._PIECE = 3 * rgb.shape[1] + 1 + (len(raw) % 3) * 40
        assert np.array_equal(P._decode_rgb8(raw), rgb)
    finally:
        P._PIECE = piece


@fast
@settings(max_examples=150, deadline=None)
@given(_rgb_png(), st.data())
def test_png_fast_path_refuses_any_damaged_byte(case, data):
    # Every byte after the signature is covered by a chunk CRC (or is a length or CRC itself):
    # one changed byte makes the fast path step aside, so the explanatory decoders take over.
    _, raw = case
    pos = data.draw(st.integers(8, len(raw) - 1))
    delta = data.draw(st.integers(1, 255))
    damaged = bytearray(raw)
    damaged[pos] = (damaged[pos] + delta) % 256
    assert P._decode_rgb8(bytes(damaged)) is None


@fast
def test_png_fast_path_leaves_other_pngs_to_the_other_decoders():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1:3, 2:] = (7, 0, 1)
    for mode in ("L", "RGBA", "P"):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, format="PNG")
        assert P._decode_rgb8(buf.getvalue()) is None
    raw = _png(rgb, [0] * 4)
    ihdr = raw[12:29]
    for patched in (ihdr[:16] + b"\x01", ihdr[:13] + b"\x06" + ihdr[14:]):  # Adam7 interlacing; RGBA
        other = raw[:12] + patched + struct.pack(">I", zlib.crc32(patched)) + raw[33:]
        assert P._decode_rgb8(other) is None
    assert P._decode_rgb8(raw[:-12]) is None  # no IEND
    for h in (3, 5):  # the IDAT stream holds more / fewer rows than IHDR says
        patched = ihdr[:8] + struct.pack(">I", h) + ihdr[12:]
        assert P._decode_rgb8(raw[:12] + patched + struct.pack(">I", zlib.crc32(patched)) + raw[33:]) is None
    assert np.array_equal(P._decode_rgb8(raw), rgb)


# -- pair counting -------------------------------------------------------------------------------


@st.composite
def _map_pair(draw):
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 70))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Ids that differ from each other in one byte only, void, and long runs.
    choices = np.array([0, 1, 256, 65536, 65537, 3 * 65536 + 2, 255, 70000, 2**24 - 1])
    run = draw(st.integers(1, 40))
    gt = np.repeat(choices[rng.integers(0, len(choices), h * w // run + 1)], run)[: h * w].reshape(h, w)
    pred = gt.copy()
    flip = rng.random((h, w)) < draw(st.sampled_from([0.0, 0.01, 0.2]))
    pred[flip] = choices[rng.integers(0, len(choices), int(flip.sum()))]
    return gt, pred


def _numpy_counts(gt, pred, gt_ids, pr_ids):
    gs, ps, lengths = P._runs_rgb(id2rgb(gt), id2rgb(pred))
    gi = P._lookup(gs, gt_ids, what="ground-truth", source="x", checked=True)
    pi = P._lookup(ps, pr_ids, what="predicted", source="x", checked=True)
    return P._pair_counts(gi, pi, lengths, len(gt_ids) + 1, len(pr_ids) + 1)


@fast
@settings(max_examples=200, deadline=None)
@given(_map_pair(), st.randoms(use_true_random=False))
def test_pair_counts_match_the_numpy_path(maps, random):
    gt, pred = maps
    gt_ids = [int(i) for i in np.unique(gt) if i]
    pr_ids = [int(i) for i in np.unique(pred) if i]
    random.shuffle(gt_ids)
    random.shuffle(pr_ids)
    pr_ids.append(12345)  # listed but absent: an empty column
    counts = np.zeros((len(gt_ids) + 1, len(pr_ids) + 1), np.int64)
    res = P._fastpq.pair_counts(id2rgb(gt), id2rgb(pred), np.array(gt_ids, np.uint32), np.array(pr_ids, np.uint32),
                                counts)
    assert res is None
    assert np.array_equal(counts, _numpy_counts(gt, pred, gt_ids, pr_ids))
    assert counts.sum() == gt.size


@fast
@settings(max_examples=100, deadline=None)
@given(_map_pair(), st.booleans())
def test_pair_counts_name_an_unlisted_id(maps, drop_from_gt):
    gt, pred = maps
    gt_ids = [int(i) for i in np.unique(gt) if i]
    pr_ids = [int(i) for i in np.unique(pred) if i]
    ids = gt_ids if drop_from_gt else pr_ids
    if not ids:
        return
    missing = ids.pop(len(ids) // 2)
    counts = np.zeros((len(gt_ids) + 1, len(pr_ids) + 1), np.int64)
    res = P._fastpq.pair_counts(id2rgb(gt), id2rgb(pred), np.array(gt_ids, np.uint32), np.array(pr_ids, np.uint32),
                                counts)
    assert res == (1 if drop_from_gt else 2, missing)


@fast
def test_pair_counts_refuses_mismatched_buffers():
    a = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(ValueError):
        P._fastpq.pair_counts(a, a[:1], np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros((1, 1), np.int64))
    with pytest.raises(ValueError):
        P._fastpq.pair_counts(a, a, np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros((2, 1), np.int64))


@fast
def test_png_fast_path_without_zlib_ng(monkeypatch):
    rgb = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    raw = _png(rgb, [0, 1, 2, 3, 4, 4])
    monkeypatch.setattr(P, "_inflate", zlib)  # the standard library's inflate: same bytes
    assert np.array_equal(P._decode_rgb8(raw), rgb)
