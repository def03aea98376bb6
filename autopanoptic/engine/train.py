"""Training loops: strict-fair supernet training (SPEC.md section 2) and plain training of a
standalone network share one loop, :func:`train`.

One optimizer step takes the architectures ``archs_for_step(step)`` (a strict-fair cycle of ``m``
architectures for the supernet; ``[None]`` for a standalone network). Each architecture gets its
own consecutive batch; forward + backward accumulate gradients; then **every parameter's gradient is
divided by the number of those passes that used it** (weights, biases and norm parameters alike;
usage is counted with ``register_post_accumulate_grad_hook``, which fires once per backward for each
parameter on the active path), and one SGD step (momentum, weight decay) is taken. The cycle and the
accumulation window are the same thing, so every window is strictly fair. Parameters no pass used
keep ``grad = None``: SGD leaves them (and their momentum) untouched.

With ``cfg.amp`` (``bf16`` / ``fp16``) the forward passes run under autocast
(:mod:`autopanoptic.engine.amp`); with ``fp16`` a gradient scaler scales the loss, and its state is
checkpointed. Under AMP a non-finite gradient stops training with a clear error (``bf16``), or, with
``fp16``, after :data:`MAX_SKIPPED` consecutive steps the scaler had to skip.

Checkpoints hold the weights, the optimizer (momentum buffers), the step counter (the data order,
the flips and the cycle are pure functions of ``(seed, step)``), the loss log and the state of every
random generator of every rank (``rng``: a list, one entry per rank; the ranks' generators drift
apart, e.g. through the RoI samplers), so a resumed run continues exactly as if it had not stopped.

Every pass seeds torch's generator from ``(seed, step, pass)``
(:func:`autopanoptic.engine.parallel.pass_seed`), so a run does not depend on which process runs a pass.

In a process group (``torchrun``, or the local workers of :mod:`autopanoptic.engine.workers`) the
step is shared over the ranks (:mod:`autopanoptic.engine.parallel`): ``parallel="cycle"`` deals the
step's passes to the ranks, each on its whole batch; ``parallel="data"`` runs every pass on every
rank, each on its slice of the batch. Either way gradients and usage counts are summed over ranks
before the division (:func:`autopanoptic.engine.distributed.reduce_gradients`), the loss log is the
single process's, a non-finite loss on any rank stops every rank, and rank 0 alone writes the
checkpoint (every rank reads it on resume). See docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from autopanoptic.engine import amp, distributed, parallel as par
from autopanoptic.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from autopanoptic.engine.datasets import batch_indices, flips_for, load_batch
from autopanoptic.engine.loader import Pass, prefetched
from autopanoptic.engine.schedule import lr_at
from autopanoptic.errors import AutopanopticError, CheckpointError
from autopanoptic.io import atomic_write_json
from autopanoptic.search.fair import derive_rng, strict_fair_cycle
from autopanoptic.search.space import Arch

__all__ = ["MAX_SKIPPED", "TrainingError", "TrainResult", "fair_cycle_for_step", "train", "UsageCounter"]

MAX_SKIPPED = 20
"""Consecutive fp16 steps with overflowing gradients (each skipped, the loss scale halved) before
training stops with an error."""


class TrainingError(AutopanopticError, RuntimeError):
    """Training diverged (a non-finite loss)."""


@attrs.frozen
class TrainResult:
    """What :func:`train` did: steps done (in total), whether it resumed, and the loss log."""

    steps: int
    resumed_from: int
    losses: tuple[dict[str, float], ...]


class UsageCounter:
    """Counts, per parameter, how many backward passes reached it (hooks on every trainable parameter).

    >>> lin = torch.nn.Linear(2, 1)
    >>> with UsageCounter(lin) as c:
    ...     lin(torch.ones(1, 2)).sum().backward(); c.end_pass()
    ...     lin(torch.ones(1, 2)).sum().backward(); c.end_pass()
    >>> sorted(c.counts.values())
    [2, 2]
    """

    def __init__(self, model: torch.nn.Module):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.counts: dict[int, int] = {}
        self._pass: set[int] = set()
        self._handles: list[Any] = []

    def __enter__(self) -> UsageCounter:
        for p in self.params:
            self._handles.append(p.register_post_accumulate_grad_hook(self._hook))
        return self

    def _hook(self, p: torch.Tensor) -> None:
        self._pass.add(id(p))

    def end_pass(self) -> None:
        """Close one forward/backward pass: each parameter it reached counts once."""
        for pid in self._pass:
            self.counts[pid] = self.counts.get(pid, 0) + 1
        self._pass.clear()

    def reset(self) -> None:
        self.counts.clear()
        self._pass.clear()

    def normalise(self) -> None:
        """Divide each parameter's gradient by its usage count (parameters never used keep ``None``)."""
        for p in self.params:
            n = self.counts.get(id(p), 0)
            if p.grad is not None and n > 1:
                p.grad.div_(n)

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@contextlib.contextmanager
def _training_errors(desc: str, step: int, device: torch.device, batch_size: int, images: int | None = None):
    """Turn PyTorch's out-of-memory error, and BatchNorm's refusal of a single value per channel,
    into a :class:`TrainingError` saying what to change (``images``: the images of this pass)."""
    try:
        yield
    except torch.OutOfMemoryError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "out of memory"
        raise TrainingError(
            f"{desc}: out of memory at step {step} on {device} ({first}); lower batch_size ({batch_size}) or the "
            "image size, or use a larger device; the last checkpoint is kept and the run resumes from it"
        ) from None
    except ValueError as e:
        if "Expected more than 1 value per channel" not in str(e):
            raise
        raise TrainingError(
            f"{desc}: BatchNorm got one value per channel at step {step} ({str(e).strip()}): a pass of "
            f"{images if images is not None else batch_size} image(s) is reduced to 1 x 1 by the network's deepest "
            "stage; use larger images (data.synthetic_size / data.min_size), more images per pass (batch_size, or "
            "fewer workers sharing it), or parallel: sync / single for retraining"
        ) from None


def fair_cycle_for_step(sub_space, seed: int, step: int, to_full: Callable[[Arch], Arch] | None = None) -> list[Arch]:
    """The strict-fair cycle of optimizer step ``step``: a pure function of ``(seed, step)``."""
    cycle = strict_fair_cycle(sub_space, derive_rng(seed, 1, step))
    return [to_full(a) if to_full else a for a in cycle]


# settings that do not change what a training computes: a checkpoint resumes under other values
_NOT_THE_MATH = frozenset({"train.checkpoint_every", "retrain.checkpoint_every", "train.parallel", "retrain.parallel",
                           "retrain.controls", "data.loader_workers"})


def _fingerprint_diff(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    defaults = None
    for key in sorted(set(stored) | set(current)):
        if key in _NOT_THE_MATH:
            continue
        if key not in stored:  # a key added to the config since the checkpoint was written: fine at its default
            if defaults is None:
                from autopanoptic.config import config_defaults

                defaults = config_defaults()
            if key in defaults and current.get(key) == defaults[key]:
                continue
        if stored.get(key) != current.get(key):
            return f"{key}: checkpoint has {stored.get(key)!r}, config has {current.get(key)!r}"
    return None


def train(
    model: torch.nn.Module,
    dataset: Any,
    pool: Sequence[int],
    cfg: Any,
    *,
    archs_for_step: Callable[[int], Sequence[Arch | None]],
    checkpoint_path: str | Path | None = None,
    losses_path: str | Path | None = None,
    fingerprint: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    resume: bool = True,
    stop_after: int | None = None,
    flip: bool = True,
    progress: bool = True,
    desc: str = "train",
    log: Callable[[dict[str, Any]], Any] | None = None,
    parallel: str = "data",
    resize: Any = None,
    loader_workers: int = 0,
) -> TrainResult:
    """Train ``model`` for ``cfg.steps`` optimizer steps on ``dataset[pool]``.

    Args:
        model: called as ``model(images, targets, arch=a)`` (or without ``arch`` when ``a`` is None);
            returns a dict of weighted losses, summed here.
        cfg: a :class:`~autopanoptic.config.TrainConfig` or :class:`~autopanoptic.config.RetrainConfig`.
        archs_for_step: the architectures of one step (see the module docstring).
        checkpoint_path: written every ``cfg.checkpoint_every`` steps and at the end; if it exists
            and ``resume``, training continues from it (its ``fingerprint`` must match).
        stop_after: stop (with a checkpoint) after this many steps in total, e.g. to split a run.
        log: called on rank 0 after every step with ``{"kind": "step", "stage": desc, "step", "lr",
            loss terms, "loss", "images_per_s"}`` (e.g. :meth:`autopanoptic.engine.logs.RunLog.write`).
        parallel: in a process group, ``"cycle"`` (deal the step's passes to the ranks), ``"data"``
            (slice every batch over the ranks) or ``"sync"`` (``"data"`` with BatchNorm statistics over
            the whole batch); see :mod:`autopanoptic.engine.parallel`.
        resize: a :class:`~autopanoptic.engine.resize.Resize` for the training images (batch ``k``
            at shorter side ``resize.for_batch(k, cfg.seed)``), or None.
        loader_workers: DataLoader processes preparing the batches ahead, in the same order
            (:mod:`autopanoptic.engine.loader`); ``0`` decodes each batch in the loop.

    Example: see ``autopanoptic.engine.pipeline.train_supernet``.
    """
    device = torch.device(device)
    world = distributed.world()
    if parallel not in par.MODES:
        raise ValueError(f"{desc}: parallel must be one of {', '.join(par.MODES)}; got {parallel!r}")
    cycle_mode = world.active and parallel == "cycle"
    shards = par.data_shards(cfg.batch_size, world.size) if world.active and not cycle_mode else 1
    if world.is_main and world.active and not cycle_mode and shards < world.size and progress:
        print(f"{desc}: batch_size {cfg.batch_size} splits over {shards} of {world.size} ranks; "
              f"{world.size - shards} wait (use a batch size that divides by {world.size})", flush=True)
    progress = progress and world.is_main
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    amp_mode = getattr(cfg, "amp", "off")
    scaler = amp.grad_scaler(amp_mode, device)
    skipped = 0
    fingerprint = dict(fingerprint or {})
    existed = checkpoint_path is not None and Path(checkpoint_path).exists()
    step, losses, resumed_from = 0, [], 0
    if checkpoint_path is not None and resume and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        diff = _fingerprint_diff(state.get("fingerprint", {}), fingerprint)
        if diff is not None:
            raise CheckpointError(
                f"{checkpoint_path}: written by a run with another configuration ({diff}); "
                "use a new output folder, or delete the checkpoint to start over"
            )
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            skipped = int(state.get("skipped", 0))
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{checkpoint_path}: does not match the model ({first})") from None
        step, losses = int(state["step"]), list(state["losses"])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # one per rank (a dict: format 1)
        set_rng_state(rngs[world.rank] if world.rank < len(rngs) else rngs[0])
        resumed_from = step

    def save() -> None:
        if checkpoint_path is None:
            return
        rngs = distributed.gather_objects(rng_state())  # every rank's generators (they differ: e.g. RoI sampling)
        if not world.is_main:  # rank 0 writes; the others wait until the file is complete
            distributed.barrier()
            return
        save_checkpoint(
            checkpoint_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "losses": losses,
                "rng": rngs,
                "fingerprint": fingerprint,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "skipped": skipped,
            },
        )
        if losses_path is not None:
            atomic_write_json(losses_path, losses)
        if world.active:
            distributed.barrier()

    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    bar = None
    if progress and end > step:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=desc, unit="step", dynamic_ncols=True)

    def passes_of(s: int) -> list[Pass]:
        """The passes this rank runs at step ``s`` and their batches (pure functions of seed and step)."""
        m = len(archs_for_step(s))
        out = []
        for j in par.my_passes(m, world) if cycle_mode else range(m):
            k = s * m + j
            idx = batch_indices(pool, cfg.batch_size, k, seed=cfg.seed)
            flips = flips_for(k, cfg.batch_size, seed=cfg.seed, enabled=flip)
            if world.active and not cycle_mode:  # this rank's slice of the global batch
                idx, flips = par.shard_batch(idx, flips, world, shards)
                if not idx:
                    continue
            size = resize.for_batch(k, cfg.seed) if resize is not None else None
            out.append(Pass(s, j, k, tuple(idx), tuple(flips), size))
        return out

    ahead = None
    if loader_workers and end > step:
        first = step
        ahead = prefetched(dataset, lambda: (p for s in range(first, end) for p in passes_of(s)),
                           workers=loader_workers, device=device, resize=resize)
    model.train()
    replay = par.BatchNormReplay(model) if cycle_mode else contextlib.nullcontext()
    synced = contextlib.nullcontext()
    if world.active and parallel == "sync" and shards > 1:
        import torch.distributed as dist

        from autopanoptic.engine.syncbn import synced_batchnorm

        group = dist.new_group(list(range(shards))) if shards < world.size else None  # every rank calls it
        synced = synced_batchnorm(model, group)
    with UsageCounter(model) as usage, replay, synced:
        while step < end:
            started = time.perf_counter()
            lr = lr_at(
                step,
                base_lr=cfg.lr,
                total_steps=cfg.steps,
                warmup_steps=cfg.warmup_steps,
                schedule=cfg.schedule,
                milestones=cfg.milestones,
                gamma=cfg.gamma,
            )
            for group in opt.param_groups:
                group["lr"] = lr
            archs = list(archs_for_step(step))
            opt.zero_grad(set_to_none=True)
            usage.reset()
            if cycle_mode:
                replay.begin_step()
            totals: dict[str, float] = {}
            for p in passes_of(step):
                j = p.j
                arch = archs[j]
                torch.manual_seed(par.pass_seed(cfg.seed, step, j, world.rank if shards > 1 else None))
                if cycle_mode:
                    replay.begin_pass(j)
                if ahead is None:
                    images, targets = load_batch(dataset, p.indices, flips=p.flips, device=device, resize=resize,
                                                 min_size=p.min_size)
                else:
                    q, (images, targets) = next(ahead)
                    assert q == p, (q, p)  # the loader lists the loop's passes, in its order
                    images = [x.to(device, non_blocking=True) for x in images]
                    targets = [{n: v.to(device, non_blocking=True) for n, v in t.items()} for t in targets]
                with _training_errors(desc, step, device, cfg.batch_size, len(images)), amp.autocast(amp_mode, device):
                    out = model(images, targets) if arch is None else model(images, targets, arch=arch)
                out = {name: v.float() for name, v in out.items()}
                loss = sum(out.values())
                if world.active and not torch.isfinite(loss):
                    totals["nonfinite"] = 1.0  # every rank stops together after the reduction below
                    for name in (*out, "loss"):
                        totals.setdefault(name, 0.0)
                    continue
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"{desc}: the loss became {loss.item()} at step {step}; lower the learning rate "
                        f"(lr={cfg.lr}) or add warm-up steps"
                    )
                with _training_errors(desc, step, device, cfg.batch_size):
                    (loss if scaler is None else scaler.scale(loss)).backward()
                usage.end_pass()
                for name, v in out.items():
                    totals[name] = totals.get(name, 0.0) + float(v.detach())
                totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
            if world.active:
                totals = par.sum_over_ranks(totals)
                if totals.pop("nonfinite", 0.0) > 0:
                    raise TrainingError(
                        f"{desc}: the loss became non-finite at step {step} on some rank; lower the learning rate "
                        f"(lr={cfg.lr}) or add warm-up steps"
                    )
                distributed.reduce_gradients(usage.params, usage.counts, device)
                if cycle_mode:
                    replay.sync()
            else:
                usage.normalise()
            if scaler is not None:
                skipped = _scaled_step(scaler, opt, skipped, desc, step)
            else:
                if amp_mode != "off":
                    _check_gradients(params, desc, step, cfg.lr)
                opt.step()
            opt.zero_grad(set_to_none=True)
            record = {"step": step, "lr": lr, **{k: v / (len(archs) * shards) for k, v in totals.items()}}
            losses.append(record)
            if log is not None and world.is_main:
                images_per_s = cfg.batch_size * len(archs) / max(time.perf_counter() - started, 1e-9)
                log({"kind": "step", "stage": desc, **record, "images_per_s": images_per_s})
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.4g}")
            if step % cfg.checkpoint_every == 0 or step == end:
                save()
    if bar is not None:
        bar.close()
    if step == resumed_from and checkpoint_path is not None and not existed:
        save()
    return TrainResult(steps=step, resumed_from=resumed_from, losses=tuple(losses))


def _scaled_step(scaler: torch.amp.GradScaler, opt: torch.optim.Optimizer, skipped: int, desc: str, step: int) -> int:
    """One fp16 optimizer step through the scaler; returns the count of consecutive skipped steps."""
    before = scaler.get_scale()
    scaler.step(opt)  # skipped if a gradient is inf / nan (the same decision on every rank: same gradients)
    scaler.update()
    skipped = skipped + 1 if scaler.get_scale() < before else 0
    if skipped >= MAX_SKIPPED:
        raise TrainingError(
            f"{desc}: fp16 gradients overflowed at {skipped} consecutive steps (up to step {step}; loss scale now "
            f"{scaler.get_scale():.3g}); use amp=bf16 or amp=off, or lower the learning rate"
        )
    return skipped


def _check_gradients(params: Sequence[torch.nn.Parameter], desc: str, step: int, lr: float) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
        raise TrainingError(
            f"{desc}: a gradient became non-finite at step {step} under mixed precision; lower the learning rate "
            f"(lr={lr}), add warm-up steps, or use amp=off"
        )


def mean_loss(losses: Sequence[dict[str, float]], last: int = 5) -> float:
    """Mean total loss of the last ``last`` steps (``nan`` if there are none)."""
    tail = [r["loss"] for r in losses[-last:]]
    return sum(tail) / len(tail) if tail else math.nan
