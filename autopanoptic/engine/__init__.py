"""The engine: strict-fair supernet training, architecture search, retraining, evaluation, reports.

Modules (import them directly; this package imports nothing so ``import autopanoptic.engine`` stays
cheap): ``schedule`` (learning-rate schedules), ``checkpoint`` (complete, atomic checkpoints),
``runs`` (per-run output folders with a lock), ``datasets`` (splits and batches), ``train``
(strict-fair supernet training), ``search`` (binds a search policy to the supernet), ``retrain``,
``evaluate`` (PQ and COCO-panoptic export), ``report`` (report.md and plots), ``pipeline`` (the demo).
"""
