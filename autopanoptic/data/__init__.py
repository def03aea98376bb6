"""COCO-panoptic datasets, a synthetic dataset, and exact, fast panoptic quality (PQ).

numpy / PIL only; :mod:`autopanoptic.data.torch` (imported on demand) turns items into tensors.

- :class:`PanopticDataset`, :func:`check_dataset`: read and validate COCO 2017 / ADE20K panoptic.
- :class:`CategoryMap`: category ids <-> contiguous thing / stuff labels.
- :func:`write_synthetic`, :func:`split_dataset`, :func:`write_split`: synthetic data and splits.
- :func:`pq_stats`, :class:`PQStats`, :func:`pq_compute`: PQ as the COCO panoptic API computes it.
- :func:`render_panoptic`, :func:`save_panoptic_overlay`: draw an annotation or prediction.
"""

from autopanoptic.data.dataset import PanopticDataset, check_dataset, read_image
from autopanoptic.data.format import (
    CategoryMap,
    id2rgb,
    load_panoptic_json,
    read_panoptic_png,
    rgb2id,
    validate_panoptic_json,
    write_panoptic_png,
)
from autopanoptic.data.pq import (
    PQStats,
    format_pq_table,
    pq_backend,
    pq_compute,
    pq_compute_stats,
    pq_stats,
    segments_from_labels,
)
from autopanoptic.data.synthetic import (
    make_prediction,
    render_image,
    split_dataset,
    synthetic_categories,
    write_predictions,
    write_split,
    write_synthetic,
)
from autopanoptic.data.visualize import render_panoptic, save_panoptic_overlay, show_annotation

__all__ = [
    "CategoryMap",
    "PQStats",
    "PanopticDataset",
    "check_dataset",
    "format_pq_table",
    "id2rgb",
    "load_panoptic_json",
    "make_prediction",
    "pq_backend",
    "pq_compute",
    "pq_compute_stats",
    "pq_stats",
    "read_image",
    "read_panoptic_png",
    "render_image",
    "render_panoptic",
    "rgb2id",
    "save_panoptic_overlay",
    "segments_from_labels",
    "show_annotation",
    "split_dataset",
    "synthetic_categories",
    "validate_panoptic_json",
    "write_panoptic_png",
    "write_predictions",
    "write_split",
    "write_synthetic",
]
