"""Training batches prepared ahead by ``torch.utils.data.DataLoader`` workers, in the loop's order.

The training loop (:func:`autopanoptic.engine.train.train`) knows, for every optimizer step, which
passes this rank runs and on which images (:class:`Pass`: a pure function of the seed and the step).
With ``loader_workers = 0`` it decodes each batch when it needs it. With ``loader_workers > 0`` a
``DataLoader`` over :class:`PassBatches` runs ahead: its sampler lists the same passes in the same
order, ``loader_workers`` processes decode, flip and resize them (``prefetch_factor`` batches each
ahead), and on CUDA the batches arrive in pinned memory so the copy to the GPU overlaps the compute.
The DataLoader keeps the sampler's order whatever the number of workers, so the run -- and its
resume, which restarts the sampler at the checkpoint's step -- is the one without prefetching.
Evaluation reads its batches the same way (:func:`eval_batches`): the samples (for the ground
truth) and the network's input images, ahead, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import torch

from autopanoptic.engine.datasets import load_batch

__all__ = ["Pass", "PassBatches", "eval_batches", "prefetched"]


@attrs.frozen
class Pass:
    """One forward/backward pass of a step: its batch (dataset indices, flips, shorter side)."""

    step: int
    j: int  # position in the step's cycle
    k: int  # global batch number
    indices: tuple[int, ...]
    flips: tuple[bool, ...]
    min_size: int | None = None


class PassBatches(torch.utils.data.Dataset):
    """A map-style dataset whose keys are :class:`Pass` values: ``batches[p]`` is ``(images, targets)``."""

    def __init__(self, dataset: Any, resize: Any = None):
        self.dataset = dataset
        self.resize = resize

    def __getitem__(self, p: Pass):
        return load_batch(self.dataset, p.indices, flips=p.flips, resize=self.resize, min_size=p.min_size)

    def __len__(self) -> int:  # the sampler decides what is read; len() is never used for sampling
        return len(self.dataset)


class _Passes(torch.utils.data.Sampler):
    def __init__(self, passes: Callable[[], Iterable[Pass]]):
        self.passes = passes

    def __iter__(self) -> Iterator[Pass]:
        return iter(self.passes())


def prefetched(dataset: Any, passes: Callable[[], Iterable[Pass]], *, workers: int, device: torch.device,
               resize: Any = None, prefetch_factor: int = 2) -> Iterator[tuple[Pass, Any]]:
    """``(pass, (images, targets))`` for every pass ``passes()`` lists, in that order, decoded ahead by
    ``workers`` DataLoader processes (pinned memory on CUDA)."""
    loader = torch.utils.data.DataLoader(
        PassBatches(dataset, resize), batch_size=None, sampler=_Passes(passes), num_workers=workers,
        prefetch_factor=prefetch_factor, pin_memory=device.type == "cuda",
    )
    return zip(passes(), loader)


class _EvalBatches(torch.utils.data.Dataset):
    def __init__(self, dataset: Any, chunks: list[list[int]], resize: Any):
        self.dataset, self.chunks, self.resize = dataset, chunks, resize

    def __getitem__(self, b: int):
        from autopanoptic.engine.datasets import to_tensors

        samples = [self.dataset[i] for i in self.chunks[b]]
        return samples, [to_tensors(s, resize=self.resize)[0] for s in samples]

    def __len__(self) -> int:
        return len(self.chunks)


def eval_batches(dataset: Any, chunks: list[list[int]], *, resize: Any = None, workers: int = 0,
                 device: torch.device | str = "cpu") -> Iterable[tuple[list[Any], list[torch.Tensor]]]:
    """``(samples, images)`` of each chunk of dataset indices, in order: read in this process
    (``workers=0``), or ahead by ``workers`` DataLoader processes (pinned memory on CUDA)."""
    batches = _EvalBatches(dataset, chunks, resize)
    if not workers:
        return (batches[b] for b in range(len(chunks)))
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                                       pin_memory=torch.device(device).type == "cuda",
                                       collate_fn=_as_is)


def _as_is(batch: Any) -> Any:
    return batch  # samples keep their numpy arrays (the default would convert them to tensors)
