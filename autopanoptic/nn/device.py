"""Choosing the device: CUDA when present (unless told otherwise), CPU otherwise. Nothing in the
library calls ``.cuda()`` unconditionally; modules and tensors are moved with ``.to(device)``."""

from __future__ import annotations

from typing import Any

import torch

from autopanoptic.errors import ConfigError

__all__ = ["choose_device", "to_device"]


def choose_device(requested: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``None`` or ``"auto"`` -> ``cuda`` if available, else ``cpu``;
    anything else is checked (``cuda`` / ``cuda:N`` must exist).

    >>> choose_device("cpu")
    device(type='cpu')
    >>> choose_device().type in ("cpu", "cuda")
    True
    """
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {requested!r} requested but CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {requested!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return dev


def to_device(obj: Any, device: str | torch.device) -> Any:
    """``obj`` with every tensor inside (nested dicts, lists, tuples) moved to ``device``.

    >>> to_device({"a": [torch.zeros(1)], "b": 3}, "cpu")["a"][0].device
    device(type='cpu')
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        moved = [to_device(v, device) for v in obj]
        return type(obj)(moved) if isinstance(obj, list) or not hasattr(obj, "_fields") else type(obj)(*moved)
    return obj
