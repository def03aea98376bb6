/* Optional accelerator for autopanoptic.data.pq: two loops that numpy cannot vectorise well.
 *
 *   unfilter(data, out, height, rowbytes, bpp, first_row=0)
 *       Undo PNG row filtering (filter method 0: None, Sub, Up, Average, Paeth) of ``height`` rows
 *       of the inflated IDAT stream ``data`` (height * (1 + rowbytes) bytes) into rows
 *       ``first_row`` ... of ``out`` (rowbytes bytes a row); row ``first_row - 1`` of ``out`` is
 *       the row above the first (zeros when first_row is 0), so an image can be unfiltered piece
 *       by piece. Raises ValueError on a bad size or an unknown filter type.
 *
 *   pair_counts(gt, pred, gt_ids, pred_ids, counts) -> None | (which, id)
 *       ``gt`` and ``pred`` are two panoptic maps of n pixels, 3 bytes per pixel (R, G, B; id =
 *       R + 256 G + 256**2 B); ``gt_ids`` / ``pred_ids`` the uint32 segment ids of their
 *       segments_info. Adds to ``counts`` (int64, (len(gt_ids) + 1) x (len(pred_ids) + 1), row /
 *       column 0 = void) the pixels of every (ground truth, prediction) pair, walking the runs of
 *       equal pairs along the flat image (16 unchanged pixels are skipped at a time). Returns
 *       (1, id) / (2, id) when a ground-truth / predicted pixel has an id not listed.
 *
 * Pure C99 with the stable Python C API only (no numpy headers): buffers in, buffers out. The
 * Python side falls back to libspng / numpy when this module is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* One row of each filter type. ``up`` is the reconstructed row above (zeros for the first row);
 * ``row`` never overlaps ``src`` or ``up``. Filters with a left neighbour keep it in registers for
 * the common 3-byte pixels (RGB) instead of reading back what was just stored. */
static void unfilter_up(uint8_t *restrict row, const uint8_t *restrict src, const uint8_t *restrict up,
                        Py_ssize_t n) {
    for (Py_ssize_t x = 0; x < n; x++) row[x] = (uint8_t)(src[x] + up[x]);
}

static void unfilter_sub(uint8_t *restrict row, const uint8_t *restrict src, Py_ssize_t n, Py_ssize_t bpp) {
    Py_ssize_t x = 0;
    if (bpp == 3) {
        uint8_t a0 = 0, a1 = 0, a2 = 0;
        for (; x + 3 <= n; x += 3) {
            row[x] = a0 = (uint8_t)(src[x] + a0);
            row[x + 1] = a1 = (uint8_t)(src[x + 1] + a1);
            row[x + 2] = a2 = (uint8_t)(src[x + 2] + a2);
        }
    }
    for (; x < n; x++) row[x] = (uint8_t)(src[x] + (x >= bpp ? row[x - bpp] : 0));
}

static void unfilter_avg(uint8_t *restrict row, const uint8_t *restrict src, const uint8_t *restrict up,
                         Py_ssize_t n, Py_ssize_t bpp) {
    for (Py_ssize_t x = 0; x < n; x++) row[x] = (uint8_t)(src[x] + (((x >= bpp ? row[x - bpp] : 0) + up[x]) >> 1));
}

static inline int paeth(int a, int b, int c) {
    const int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
}

static void unfilter_paeth(uint8_t *restrict row, const uint8_t *restrict src, const uint8_t *restrict up,
                           Py_ssize_t n, Py_ssize_t bpp) {
    Py_ssize_t x = 0;
    if (bpp == 3) {
        int a0 = 0, a1 = 0, a2 = 0, c0 = 0, c1 = 0, c2 = 0; /* left and upper-left: 0 at the row start */
        for (; x + 3 <= n; x += 3) {
            /* Panoptic maps are piecewise constant: where the row above is flat (b == c) Paeth
             * predicts the left pixel, and a zero residual repeats it. Skip 8 such pixels at once. */
            if (x >= 3 && x + 24 <= n && (load64(src + x) | load64(src + x + 8) | load64(src + x + 16)) == 0 &&
                load64(up + x) == load64(up + x - 3) && load64(up + x + 8) == load64(up + x + 5) &&
                load64(up + x + 16) == load64(up + x + 13)) {
                for (int k = 0; k < 24; k += 3) {
                    row[x + k] = (uint8_t)a0;
                    row[x + k + 1] = (uint8_t)a1;
                    row[x + k + 2] = (uint8_t)a2;
                }
                x += 21; /* c (the row above) is unchanged: the block is flat */
                continue;
            }
            const int b0 = up[x], b1 = up[x + 1], b2 = up[x + 2];
            row[x] = (uint8_t)(a0 = (uint8_t)(src[x] + paeth(a0, b0, c0)));
            row[x + 1] = (uint8_t)(a1 = (uint8_t)(src[x + 1] + paeth(a1, b1, c1)));
            row[x + 2] = (uint8_t)(a2 = (uint8_t)(src[x + 2] + paeth(a2, b2, c2)));
            c0 = b0;
            c1 = b1;
            c2 = b2;
        }
    }
    for (; x < n; x++) {
        const int a = x >= bpp ? row[x - bpp] : 0, c = x >= bpp ? up[x - bpp] : 0;
        row[x] = (uint8_t)(src[x] + paeth(a, up[x], c));
    }
}

static PyObject *fastpq_unfilter(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    Py_ssize_t height, rowbytes, bpp, first = 0;
    if (!PyArg_ParseTuple(args, "y*w*nnn|n", &data, &out, &height, &rowbytes, &bpp, &first)) return NULL;
    PyObject *result = NULL;
    if (height < 0 || rowbytes < 0 || bpp < 1 || bpp > 8 || first < 0 ||
        data.len != height * (rowbytes + 1) || out.len < (first + height) * rowbytes) {
        PyErr_SetString(PyExc_ValueError, "unfilter: the data does not match the image size");
        goto done;
    }
    const uint8_t *src = (const uint8_t *)data.buf;
    uint8_t *dst = (uint8_t *)out.buf + first * rowbytes;
    uint8_t *zeros = (uint8_t *)PyMem_RawCalloc((size_t)rowbytes + 1, 1); /* the row above row 0 */
    if (zeros == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *prev = first > 0 ? dst - rowbytes : zeros;
    for (Py_ssize_t y = 0; y < height && !bad; y++) {
        const uint8_t ft = *src++;
        uint8_t *row = dst + y * rowbytes;
        switch (ft) {
        case 0:
            memcpy(row, src, (size_t)rowbytes);
            break;
        case 1:
            unfilter_sub(row, src, rowbytes, bpp);
            break;
        case 2:
            unfilter_up(row, src, prev, rowbytes);
            break;
        case 3:
            unfilter_avg(row, src, prev, rowbytes, bpp);
            break;
        case 4:
            unfilter_paeth(row, src, prev, rowbytes, bpp);
            break;
        default:
            bad = 1;
        }
        src += rowbytes;
        prev = row;
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(zeros);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "unfilter: unknown PNG filter type");
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

static inline uint32_t id_at(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
}

/* Index (0-7) of the first non-zero byte of an 8-byte word read with load64 (w != 0). */
static inline int first_byte(uint64_t w) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_ctzll(w) >> 3;
#else
    uint8_t b[8];
    memcpy(b, &w, 8);
    int k = 0;
    while (b[k] == 0) k++;
    return k;
#endif
}

/* Pixels i .. i + BLOCK - 1 (i >= 1, i + BLOCK <= n): how many of them, from the first, equal
 * the pixel before them in both maps (BLOCK when all do). Works on 8-byte words of the
 * differences between each byte and the byte 3 before it. */
#define BLOCK 16
static inline Py_ssize_t unchanged(const uint8_t *g, const uint8_t *q, Py_ssize_t i) {
    const uint8_t *a = g + 3 * i, *b = q + 3 * i;
    uint8_t any = 0;
    for (int k = 0; k < 3 * BLOCK; k++) any |= (uint8_t)((a[k] ^ a[k - 3]) | (b[k] ^ b[k - 3]));
    if (!any) return BLOCK;
    for (int k = 0;; k += 8) {
        const uint64_t w = (load64(a + k) ^ load64(a + k - 3)) | (load64(b + k) ^ load64(b + k - 3));
        if (w) return (k + first_byte(w)) / 3;
    }
}


/* Segment id -> 1-based position in segments_info (0 = void), an open-addressing hash table. */
typedef struct {
    uint32_t *ids; /* EMPTY where free; ids are below 2**24 */
    int32_t *index;
    uint32_t mask;
    int shift;
} IdTable;

#define EMPTY 0xFFFFFFFFu

static inline uint32_t slot_of(const IdTable *t, uint32_t id) { return (id * 0x9E3779B1u) >> t->shift; }

/* 0 on success, -1 out of memory. Duplicate ids are refused before this (Python side). */
static int id_table(IdTable *t, const uint32_t *ids, Py_ssize_t k) {
    int bits = 4;
    while (((Py_ssize_t)1 << bits) < 2 * k) bits++;
    const size_t size = (size_t)1 << bits;
    t->mask = (uint32_t)(size - 1);
    t->shift = 32 - bits;
    t->ids = (uint32_t *)PyMem_RawMalloc(size * sizeof(uint32_t));
    t->index = (int32_t *)PyMem_RawMalloc(size * sizeof(int32_t));
    if (t->ids == NULL || t->index == NULL) return -1;
    memset(t->ids, 0xFF, size * sizeof(uint32_t));
    for (Py_ssize_t i = 0; i < k; i++) {
        uint32_t s = slot_of(t, ids[i]);
        while (t->ids[s] != EMPTY) s = (s + 1) & t->mask;
        t->ids[s] = ids[i];
        t->index[s] = (int32_t)(i + 1);
    }
    return 0;
}

static void id_table_free(IdTable *t) {
    PyMem_RawFree(t->ids);
    PyMem_RawFree(t->index);
}

/* Index of ``id`` (0 for void), -1 when it is not listed. */
static inline int32_t find_index(const IdTable *t, uint32_t id) {
    if (id == 0) return 0;
    uint32_t s = slot_of(t, id);
    for (;;) {
        const uint32_t here = t->ids[s];
        if (here == id) return t->index[s];
        if (here == EMPTY) return -1;
        s = (s + 1) & t->mask;
    }
}

static PyObject *fastpq_pair_counts(PyObject *self, PyObject *args) {
    Py_buffer gt, pred, gid, pid, cnt;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &gt, &pred, &gid, &pid, &cnt)) return NULL;
    PyObject *result = NULL;
    IdTable gtab = {NULL, NULL, 0, 0}, ptab = {NULL, NULL, 0, 0};
    const Py_ssize_t n = gt.len / 3, kg = gid.len / 4, kp = pid.len / 4, cols = kp + 1;
    if (gt.len % 3 != 0 || pred.len != gt.len || gid.len % 4 != 0 || pid.len % 4 != 0 ||
        cnt.len != (Py_ssize_t)sizeof(int64_t) * (kg + 1) * cols) {
        PyErr_SetString(PyExc_ValueError, "pair_counts: maps of different sizes or a counts buffer of the wrong size");
        goto done;
    }
    if (id_table(&gtab, (const uint32_t *)gid.buf, kg) < 0 || id_table(&ptab, (const uint32_t *)pid.buf, kp) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    int which = 0; /* 1: a ground-truth id is not listed, 2: a predicted id */
    uint32_t bad = 0;
    if (n > 0) {
        const uint8_t *g = (const uint8_t *)gt.buf, *q = (const uint8_t *)pred.buf;
        int64_t *counts = (int64_t *)cnt.buf;
        Py_BEGIN_ALLOW_THREADS
        uint32_t cg = id_at(g), cp = id_at(q);
        Py_ssize_t start = 0, i = 1;
        /* The ids of the last run and their indices: consecutive runs usually share one of them. */
        uint32_t last_g = cg, last_p = cp;
        int32_t gi = find_index(&gtab, cg), pi = find_index(&ptab, cp);
        for (;;) {
            while (i + BLOCK <= n) { /* find the end of the run */
                const Py_ssize_t k = unchanged(g, q, i);
                i += k;
                if (k < BLOCK) break;
            }
            if (i + BLOCK > n) { /* near the end of the image: one pixel at a time */
                while (i < n && id_at(g + 3 * i) == cg && id_at(q + 3 * i) == cp) i++;
            }
            if (cg != last_g) {
                gi = find_index(&gtab, cg);
                last_g = cg;
            }
            if (cp != last_p) {
                pi = find_index(&ptab, cp);
                last_p = cp;
            }
            if (gi < 0 || pi < 0) {
                which = gi < 0 ? 1 : 2;
                bad = gi < 0 ? cg : cp;
                break;
            }
            counts[gi * cols + pi] += i - start;
            if (i >= n) break;
            start = i;
            cg = id_at(g + 3 * i);
            cp = id_at(q + 3 * i);
            i++;
        }
        Py_END_ALLOW_THREADS
    }
    if (which) {
        result = Py_BuildValue("(iI)", which, (unsigned int)bad);
    } else {
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    id_table_free(&gtab);
    id_table_free(&ptab);
    PyBuffer_Release(&gt);
    PyBuffer_Release(&pred);
    PyBuffer_Release(&gid);
    PyBuffer_Release(&pid);
    PyBuffer_Release(&cnt);
    return result;
}

static PyMethodDef fastpq_methods[] = {
    {"unfilter", fastpq_unfilter, METH_VARARGS, "Undo PNG row filtering into a writable buffer."},
    {"pair_counts", fastpq_pair_counts, METH_VARARGS,
     "Pixel counts of every (ground truth, prediction) segment pair in two RGB maps."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastpq_module = {
    PyModuleDef_HEAD_INIT, "_fastpq", "Optional C loops for autopanoptic.data.pq.", -1, fastpq_methods,
};

PyMODINIT_FUNC PyInit__fastpq(void) { return PyModule_Create(&fastpq_module); }
