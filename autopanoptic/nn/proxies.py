"""Training-free scores of an architecture: baselines any supernet ranking must beat.

- parameters and multiply-accumulates: :func:`autopanoptic.nn.count`;
- :func:`naswot_score`: the "NAS without training" score of Mellor et al. (ICML 2021). An untrained
  network sees a batch of images; every ReLU's on/off pattern gives each image a binary code; the
  score is ``log |det K|`` with ``K[i, j]`` the number of units on which images ``i`` and ``j``
  agree. Networks whose activations tell the images apart score higher.
- :func:`zico_score`: ZiCo of Li et al. (ICLR 2023). An untrained network's training loss is
  back-propagated on a few batches, one at a time; for every conv and linear weight the mean absolute
  gradient over the batches is divided by its standard deviation over them; the score sums, over the
  layers, the log of that ratio summed over the layer's weights (weights whose gradient never varies
  are left out). Networks whose gradients are large and consistent score higher. (The authors'
  code accumulates gradients over the batches instead of taking each alone; this follows the paper.)

Here the codes come from the dense part of the panoptic network (backbone, FPN, semantic subnet,
both attention directions, semantic classifier: every ``nn.ReLU`` module in them) on the padded
batch. The RoI heads' inputs depend on proposals, so by default the mask head's searchable layers
do not contribute; with ``mask_head=True`` they do, on one RoI per image that needs no proposals:
the whole image, pooled by the network's own mask RoI pooling from the FPN features, so each image's
code gets the mask head's units as well (one ``K`` over images, as in the paper).

>>> import torch
>>> from autopanoptic.nn import build_network
>>> from autopanoptic.search.spaces import auto_panoptic
>>> net = build_network("tiny", auto_panoptic((1, 1, 2, 1)).sample(0), 2, 3)
>>> s = naswot_score(net, [torch.rand(3, 32, 32) for _ in range(4)])
>>> isinstance(s, float)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["NASWOT_IMAGES", "naswot_score", "naswot_scores", "zico_score", "zico_scores"]

NASWOT_IMAGES = 8  # images per score in naswot_scores: the setting of the estimator study (docs/benchmarks/ranking.md)


def naswot_score(net: nn.Module, images: Sequence[torch.Tensor], *, mask_head: bool = False) -> float:
    """NASWOT score of a standalone panoptic network (freshly initialised: pass an untrained network)
    on ``images`` (a list of ``3 x H x W`` tensors in ``[0, 1]``, at least 2); ``mask_head``: the
    mask head's units count too, on one whole-image RoI per image (see the module docstring)."""
    if len(images) < 2:
        raise ValueError("naswot_score needs at least 2 images")
    dense = [net.backbone, net.fpn, net.semantic_subnet, net.f2b, net.b2f, net.semantic_classifier]
    n = len(images)
    device = next(net.parameters()).device
    K = torch.zeros(n, n, dtype=torch.float64, device=device)

    def hook(_module, _inputs, out):
        c = (out.detach() > 0).reshape(n, -1).to(torch.float64)
        K.add_(c @ c.T).add_((1 - c) @ (1 - c).T)

    parts = dense + ([net.mask_head] if mask_head else [])
    handles = [m.register_forward_hook(hook) for part in parts for m in part.modules() if isinstance(m, nn.ReLU)]
    was_training = net.training
    try:
        net.train()
        with torch.no_grad():
            batch = net.preprocess(list(images))
            bb, mask, sem, f2b, b2f = net._split(net._path(None))
            features, _logits = net._dense(batch.tensors, bb, sem, f2b, b2f)
            if mask_head:  # one RoI per image: the whole image, as the mask branch pools its RoIs
                boxes = [torch.tensor([[0.0, 0.0, float(w), float(h)]], device=device) for h, w in batch.image_sizes]
                rois = net.roi_heads.mask_roi_pool(features, boxes, batch.image_sizes)
                net.mask_head(rois, mask)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    sign, logdet = torch.linalg.slogdet(K)
    return float(logdet) if sign > 0 else float("-inf")


def naswot_scores(config, archs: Sequence[Sequence[int]], batches: Sequence[Sequence[torch.Tensor]], *,
                  seed: int = 0, images: int = NASWOT_IMAGES, mask_head: bool = False) -> list[float]:
    """:func:`naswot_score` of the freshly initialised standalone network of each of ``archs``
    (``config``: the supernet's :class:`~autopanoptic.nn.SupernetConfig`) on the first ``images``
    distinct images of ``batches`` (lists of image tensors, e.g. the search's calibration batches,
    which repeat their images when the calibration split is small: two equal images would make
    every score ``-inf``). Every network is initialised from ``seed``; the global RNG is left as it was.
    ``mask_head``: as in :func:`naswot_score`."""
    from autopanoptic.nn.standalone import build_network

    pics: list[torch.Tensor] = []
    for x in (x for batch in batches for x in batch):
        if len(pics) < images and not any(x.shape == y.shape and torch.equal(x, y) for y in pics):
            pics.append(x)
    if len(pics) < 2:
        raise ValueError(f"NASWOT needs at least 2 distinct images; the batches hold {len(pics)}")
    out = []
    for arch in archs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_network(config, arch).to(pics[0].device)
        out.append(naswot_score(net, pics, mask_head=mask_head))
    return out


def zico_score(net: nn.Module, batches: Sequence[tuple[Sequence[torch.Tensor], Sequence[dict]]], *,
               seed: int = 0) -> float:
    """ZiCo score of a standalone panoptic network (freshly initialised: pass an untrained network)
    on ``batches``, at least 2 ``(images, targets)`` pairs as the training loop feeds them (see the
    module docstring). The network's random choices in training mode (anchor and proposal sampling)
    are seeded by ``seed`` and the batch's position; the global RNG is left as it was. The network's
    gradients are cleared afterwards (its BatchNorm running statistics see the batches)."""
    if len(batches) < 2:
        raise ValueError("zico_score needs at least 2 batches (a gradient's spread over batches)")
    grads: dict[str, list[torch.Tensor]] = {}
    was_training = net.training
    net.train()
    try:
        for k, (images, targets) in enumerate(batches):
            net.zero_grad(set_to_none=True)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1009 + k)
                losses = net(list(images), list(targets))
            sum(losses.values()).backward()
            for name, m in net.named_modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
                    grads.setdefault(name, []).append(m.weight.grad.detach().reshape(-1).to(torch.float64).clone())
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was_training)
    score = 0.0
    for gs in grads.values():
        if len(gs) < len(batches):  # a layer some batch never reached has no spread over the batches
            continue
        g = torch.stack(gs)
        std = g.std(dim=0, unbiased=False)
        keep = std > 0
        ratio = float((g.abs().mean(dim=0)[keep] / std[keep]).sum())
        if ratio > 0:
            score += math.log(ratio)
    return score


def zico_scores(config, archs: Sequence[Sequence[int]], batches: Sequence[tuple[Sequence[torch.Tensor], Sequence[dict]]],
                *, seed: int = 0) -> list[float]:
    """:func:`zico_score` of the freshly initialised standalone network of each of ``archs``
    (``config``: a :class:`~autopanoptic.nn.SupernetConfig`) on ``batches`` of ``(images, targets)``.
    Every network is initialised from ``seed``; the global RNG is left as it was."""
    from autopanoptic.nn.standalone import build_network

    out = []
    for arch in archs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_network(config, arch).to(batches[0][0][0].device)
        out.append(zico_score(net, batches, seed=seed))
    return out

