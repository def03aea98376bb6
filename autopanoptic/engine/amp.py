"""Mixed precision: ``train.amp``, ``retrain.amp``, ``eval.amp`` in ``off`` / ``bf16`` / ``fp16``.

As in torchvision's detection references (and detectron2, MMDetection), the forward pass runs under
``torch.autocast`` in the chosen dtype; parameters, gradients and the optimizer stay fp32. With
``fp16`` a :class:`torch.amp.GradScaler` scales the loss so small gradients survive fp16; it skips
a step whose gradients overflowed and halves its scale; its state is saved in the checkpoint, so a
resumed run is the uninterrupted one. ``bf16`` has fp32's range and needs no scaler (it runs on CPU
too).

What stays fp32 (see docs/engine.md): the losses (autocast's fp32 list: cross entropy, binary cross
entropy, smooth L1; the semantic loss casts its logits to fp32), the summed training loss, and the
panoptic post-processing (mask pasting and fusion run with autocast off on fp32 inputs).

>>> import torch
>>> with autocast("bf16", "cpu"):
...     torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype
torch.bfloat16
>>> grad_scaler("bf16", "cpu") is None
True
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["MODES", "autocast", "grad_scaler"]

MODES = ("off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(mode: str, device: torch.device | str) -> Any:
    """The autocast context of ``mode`` on ``device`` (a no-op for ``off``)."""
    if mode not in MODES:
        raise ValueError(f"amp must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "off":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[mode])


def grad_scaler(mode: str, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A gradient scaler for ``fp16``; ``None`` otherwise (``bf16`` and fp32 need none)."""
    if mode != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)

