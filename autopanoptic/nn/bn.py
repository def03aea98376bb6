"""BatchNorm recalibration of one path of a supernet before it is evaluated (SPEC.md section 3).

In a weight-sharing supernet the running statistics of a BatchNorm layer mix the statistics of all
the paths trained through it. Before a candidate is evaluated, :func:`recalibrate_bn` recomputes
them for that path: every BatchNorm layer that runs on the path (and only those) is reset and
re-estimated as a **cumulative average** (``momentum=None``) over a fixed list of calibration
batches, with BatchNorm in training mode (batch statistics, as during training) and everything
else in eval mode; then the original momenta are restored and the model is left in eval mode.

With ``momentum=None`` PyTorch averages the per-batch statistics with equal weights: the running
mean is the mean of the batch means (the exact mean over the calibration data when the batches have
equal sizes) and the running variance the mean of the per-batch unbiased variances.

"On the path" is decided by what actually runs: a BatchNorm is reset the first time it is called
during the calibration forwards. BatchNorm layers of unchosen candidates (or of parts the forward
does not use) are never touched. If a forward raises, every reset layer gets its old statistics
back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from autopanoptic.errors import ConfigError

__all__ = ["default_calibration_forward", "recalibrate_bn"]


def default_calibration_forward(model: nn.Module, batch: Any, arch: Any) -> Any:
    """The forward used by :func:`recalibrate_bn` unless one is given:
    ``model.backbone_forward(batch, arch)`` when the model has it (the panoptic networks, whose
    only BatchNorm layers are in the backbone), else ``model(batch, arch)`` (``model(batch)`` when
    ``arch`` is ``None``)."""
    fn = getattr(model, "backbone_forward", None)
    if callable(fn):
        return fn(batch, arch)
    return model(batch) if arch is None else model(batch, arch)


def recalibrate_bn(
    model: nn.Module,
    arch: Any,
    batches: Iterable[Any],
    forward: Callable[[nn.Module, Any, Any], Any] | None = None,
    *,
    progress: bool = False,
) -> nn.Module:
    """Recompute the BatchNorm statistics of the path ``arch`` over ``batches``; returns ``model``
    (in eval mode). See the module docstring.

    Args:
        model: a supernet (or any network with BatchNorm layers).
        arch: the path, passed through to ``forward`` (``None`` for a standalone network).
        batches: the fixed calibration batches (at least one); each is passed to ``forward``.
        forward: ``forward(model, batch, arch)`` running one batch on the path
            (default :func:`default_calibration_forward`).
        progress: show a progress bar.

    >>> from autopanoptic.nn.backbone import ShuffleNetSupernet
    >>> net = ShuffleNetSupernet((1, 1, 2, 1), (8, 16, 24, 32, 48))
    >>> batches = [torch.rand(4, 3, 64, 64) for _ in range(2)]
    >>> recalibrate_bn(net, (0, 1, 2, 3, 0), batches).training
    False
    >>> int(net.layer_choices[0][0].branch[1].num_batches_tracked), int(net.layer_choices[0][1].branch[1].num_batches_tracked)
    (2, 0)
    """
    batches = list(batches)
    if not batches:
        raise ConfigError("BatchNorm recalibration needs at least one calibration batch; raise the number of batches")
    run = forward or default_calibration_forward
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    saved: dict[int, tuple[Any, dict[str, torch.Tensor]]] = {}

    def reset_on_first_call(module: _BatchNorm, inputs: Any) -> None:
        if id(module) in saved:
            return
        state = {k: v.clone() for k, v in module.named_buffers(recurse=False) if v is not None}
        saved[id(module)] = (module.momentum, state)
        module.reset_running_stats()
        module.momentum = None

    model.eval()
    handles = []
    try:
        for bn in bns:
            if bn.track_running_stats:
                bn.train()
                handles.append(bn.register_forward_pre_hook(reset_on_first_call))
        it: Sequence[Any] | Any = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc="BN recalibration", unit="batch")
        with torch.no_grad():
            for batch in it:
                run(model, batch, arch)
    except BaseException:
        by_id = {id(bn): bn for bn in bns}
        for key, (momentum, state) in saved.items():
            bn = by_id[key]
            for name, value in state.items():
                getattr(bn, name).copy_(value)
        raise
    finally:
        for h in handles:
            h.remove()
        by_id = {id(bn): bn for bn in bns}
        for key, (momentum, _) in saved.items():
            by_id[key].momentum = momentum
        model.eval()
    return model
