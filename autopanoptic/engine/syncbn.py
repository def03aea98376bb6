"""BatchNorm over the whole batch when every rank holds a slice of it (``parallel: sync``).

Data-parallel training slices each batch over the ranks. Plain BatchNorm then normalises each slice
by its own statistics: with the ``tiny`` recipe's batch of 2 images on 2 workers, over one image
each, which changed the demo's result (docs/benchmarks/parallel.md). PyTorch's
:class:`torch.nn.SyncBatchNorm` fixes this on GPUs only; on CPU (gloo) its forward refuses the
input. :func:`synced_batchnorm` makes every training-mode BatchNorm layer of a model compute the
statistics of the *global* batch, on any device:

* forward: each rank's count, mean and centred sum of squares per channel are gathered (one small
  ``all_gather``) and combined in rank order (the parallel-variance formula, the same numbers on
  every rank); the slice is normalised with the global mean and variance, and the running
  statistics are updated with them (unbiased variance), as one process would on the whole batch;
* backward: the per-channel sums of ``dy`` and ``dy * x_hat`` are summed over ranks (one
  ``all_reduce``), which gives each rank its slice of the whole batch's input gradient; the weight
  and bias gradients stay per rank (the training step sums gradients over ranks afterwards).

On CUDA with NCCL :func:`synced_batchnorm` uses the same code (two small collectives per layer and
step); evaluation-mode layers and a process group of one are left alone. Layers are changed by
replacing their ``forward`` for the duration of the ``with`` block (parameters, buffers and module
types are untouched, so checkpoints and optimisers see the same model).

>>> bn = torch.nn.BatchNorm2d(3)
>>> with synced_batchnorm(bn):  # no process group: plain BatchNorm
...     y = bn(torch.randn(2, 3, 4, 4))
>>> tuple(y.shape), int(bn.num_batches_tracked)
((2, 3, 4, 4), 1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from autopanoptic.engine import distributed
from autopanoptic.engine.parallel import running_update

__all__ = ["synced_batchnorm"]


def _global_stats(x: torch.Tensor, group: Any) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean and biased variance per channel over every rank's ``x`` (N, C, ...), and the count."""
    import torch.distributed as dist

    dims = [0, *range(2, x.dim())]
    xf = x.detach().double()
    n = xf.numel() / x.shape[1]
    mean = xf.mean(dims)
    m2 = ((xf - mean.view(1, -1, *[1] * (x.dim() - 2))) ** 2).sum(dims)
    mine = torch.cat([torch.tensor([n], dtype=torch.float64, device=x.device), mean, m2])
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, mine, group=group)
    c = x.shape[1]
    count, g_mean, g_m2 = 0.0, torch.zeros_like(mean), torch.zeros_like(m2)
    for p in parts:  # Chan et al.'s pairwise combination, in rank order
        nb, mb, m2b = float(p[0]), p[1 : 1 + c], p[1 + c :]
        if nb == 0:
            continue
        delta = mb - g_mean
        total = count + nb
        g_mean = g_mean + delta * (nb / total)
        g_m2 = g_m2 + m2b + delta * delta * (count * nb / total)
        count = total
    return g_mean, g_m2 / count, count


class _SyncBN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps, group):  # noqa: D401  (autograd protocol)
        ctx.group = group
        shape = (1, -1, *[1] * (x.dim() - 2))
        invstd = torch.rsqrt(var + eps).to(x.dtype)  # statistics in float64, the elementwise work in x's dtype
        x_hat = (x - mean.to(x.dtype).view(shape)) * invstd.view(shape)
        y = x_hat if weight is None else x_hat * weight.to(x.dtype).view(shape) + bias.to(x.dtype).view(shape)
        ctx.save_for_backward(x_hat, invstd, weight)
        return y

    @staticmethod
    def backward(ctx, dy):
        import torch.distributed as dist

        x_hat, invstd, weight = ctx.saved_tensors
        shape = (1, -1, *[1] * (x_hat.dim() - 2))
        dims = [0, *range(2, x_hat.dim())]
        g = dy.to(x_hat.dtype)
        local_dy, local_dy_xhat = g.sum(dims), (g * x_hat).sum(dims)
        n_local = torch.tensor([x_hat.numel() / x_hat.shape[1]], dtype=torch.float64, device=dy.device)
        both = torch.cat([local_dy.double(), local_dy_xhat.double(), n_local])
        dist.all_reduce(both, group=ctx.group)
        c = x_hat.shape[1]
        sum_dy, sum_dy_xhat, n = both[:c], both[c : 2 * c], float(both[-1])
        scale = invstd if weight is None else invstd * weight.to(invstd.dtype)
        mean_dy, mean_dy_xhat = (sum_dy / n).to(g.dtype), (sum_dy_xhat / n).to(g.dtype)
        dx = scale.view(shape) * (g - mean_dy.view(shape) - x_hat * mean_dy_xhat.view(shape))
        dw = db = None
        if weight is not None:
            dw, db = local_dy_xhat.to(weight.dtype), local_dy.to(weight.dtype)
        return dx.to(dy.dtype), dw, db, None, None, None, None


def _synced_forward(m: _BatchNorm, group: Any):
    plain = type(m).forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not (m.training and distributed.world().active):
            return plain(m, x)
        m._check_input_dim(x)
        mean, var, n = _global_stats(x, group)
        if m.track_running_stats:
            with torch.no_grad():
                running_update(m, mean, var * (n / max(n - 1.0, 1.0)))  # unbiased variance
        return _SyncBN.apply(x, m.weight if m.affine else None, m.bias if m.affine else None, mean, var, m.eps,
                             group)

    return forward


@contextlib.contextmanager
def synced_batchnorm(model: torch.nn.Module, group: Any = None) -> Iterator[Any]:
    """Within the block, every BatchNorm layer of ``model`` in training mode normalises with the
    statistics of the whole batch across the process group (see the module docstring).

    ``group``: the ranks that hold the batch's slices (a ``torch.distributed`` group; None = all).
    Every rank of it must run every forward and backward: ranks outside it must not run the model.
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for m in layers:
        m.forward = _synced_forward(m, group)
    try:
        yield model
    finally:
        for m in layers:
            m.__dict__.pop("forward", None)
