"""Paper scale: the ``paper-search`` supernet and a ``paper-retrain`` network on COCO-sized images.

On whatever device is present (``--device auto``), on synthetic images (``write_synthetic``, square,
``--size`` px: 1024 on a GPU, about a COCO image's 800 x 1216 pixels; reduced on a CPU):

1. **Strict-fair step** of the supernet: ``--passes`` architectures of one strict-fair cycle (all 12
   on a GPU), each a forward and a backward pass on ``--batch`` images (2 per GPU: the paper's 16 over
   8 GPUs), then one SGD step; the time per step scaled to the cycle's 12 passes, and per image
   (forward, backward); peak memory. For each ``--amp`` mode (fp32, bf16, fp16 -- fp16 on CUDA only),
   with the deformable ops in the cycle and without them (``model.exclude_ops``).
2. **Retraining step** of the ``paper-retrain`` network of the cycle's first architecture.
3. **Evaluation throughput** of that network: images/s through :func:`autopanoptic.engine.evaluate.evaluate`
   (forward, panoptic fusion, PQ matching).
4. **The data path alone**: images/s of reading, decoding (JPEG + panoptic PNG), flipping and
   resizing 640 x 640 images to shorter side 800 / longer side <= 1333 (``data.min_size`` / ``data.max_size``) in one
   process, against the images/s one supernet step consumes (``data.loader_workers`` processes
   multiply the former).
5. **What the paper's schedules cost** from those figures: COCO search training (7393 steps of
   12 passes x 16 images: 12 epochs), retraining (88716 steps of 16 images), one search evaluation
   (5000 images) and the whole search (60 of them), in device-hours and in hours on 1 and 8 such
   devices (8: ideal scaling). On a CPU the images are small, so these figures say little about COCO.

Usage::

    .venv/bin/python benchmarks/paper_scale.py                     # this machine; writes docs/benchmarks/paper-scale.md
    .venv/bin/python benchmarks/paper_scale.py --device cuda       # fills the GPU rows (under 10 min on one GPU)
    .venv/bin/python benchmarks/paper_scale.py --size 48 --passes 1 --eval-images 1 --amp bf16 --deformable no --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import cpu_name, write_page  # noqa: E402  (benchmarks/ is the script folder, on sys.path)

DEFORMABLE = ("dfconv3x3", "dfconv5x5")
SEARCH_STEPS, RETRAIN_STEPS, PAPER_BATCH, CYCLE, EVAL_IMAGES, EVALUATIONS = 7393, 88716, 16, 12, 5000, 60


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process high-water mark so far


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def time_step(model, opt, batches, archs, amp_mode, device, repeats):
    """Median seconds of one step (forward and backward of each arch on its batch, one SGD step),
    split into forward and backward; the first step is a warm-up."""
    from autopanoptic.engine.amp import autocast, grad_scaler

    scaler = grad_scaler(amp_mode, device)
    fwd, bwd, total = [], [], []
    for r in range(repeats + 1):
        opt.zero_grad(set_to_none=True)
        f = b = 0.0
        _sync(device)
        t_start = time.perf_counter()
        for arch, (images, targets) in zip(archs, batches):
            t0 = time.perf_counter()
            with autocast(amp_mode, device):
                out = model(images, targets) if arch is None else model(images, targets, arch=arch)
            loss = sum(v.float() for v in out.values())
            _sync(device)
            t1 = time.perf_counter()
            (loss if scaler is None else scaler.scale(loss)).backward()
            _sync(device)
            f, b = f + t1 - t0, b + time.perf_counter() - t1
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()
        _sync(device)
        if r:
            fwd.append(f), bwd.append(b), total.append(time.perf_counter() - t_start)
    return statistics.median(fwd), statistics.median(bwd), statistics.median(total)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=None, help="image side (default 1024 on CUDA, 160 on CPU)")
    ap.add_argument("--batch", type=int, default=None, help="images per pass (default 2 on CUDA, 1 on CPU)")
    ap.add_argument("--passes", type=int, default=None, help="passes of the cycle timed (default 12 / 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps after a warm-up (default 3 / 1)")
    ap.add_argument("--eval-images", type=int, default=None, help="default 16 on CUDA, 4 on CPU")
    ap.add_argument("--amp", nargs="+", default=None, help="default: off bf16 fp16 on CUDA, off bf16 on CPU")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--deformable", choices=["both", "no"], default="both",
                    help="time the supernet with and without the deformable ops, or only without")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from autopanoptic.data import PanopticDataset, write_synthetic
    from autopanoptic.engine.datasets import load_batch
    from autopanoptic.engine.evaluate import evaluate
    from autopanoptic.engine.pipeline import resolve_device
    from autopanoptic.engine.restrict import OpRestriction
    from autopanoptic.engine.train import fair_cycle_for_step
    from autopanoptic.nn import build_network, build_supernet

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    size = args.size or (1024 if gpu else 160)
    batch = args.batch or (2 if gpu else 1)
    passes = args.passes or (CYCLE if gpu else 2)
    repeats = args.repeats or (3 if gpu else 1)
    n_eval = args.eval_images or (16 if gpu else 4)
    modes = args.amp or (["off", "bf16", "fp16"] if gpu else ["off", "bf16"])
    load_before = os.getloadavg()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="paper-scale-") as tmp:
        write_synthetic(tmp, max(batch * passes, n_eval, 2), size=size, seed=0, progress=False)
        ds = PanopticDataset(Path(tmp) / "images", Path(tmp) / "panoptic.json", Path(tmp) / "panoptic")
        cats = ds.categories
        batches = [load_batch(ds, [(p * batch + i) % len(ds) for i in range(batch)], device=device)
                   for p in range(passes)]
        torch.manual_seed(0)
        supernet = build_supernet("paper-search", cats.num_things, cats.num_stuff).to(device).train()
        opt = torch.optim.SGD([p for p in supernet.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        for deform in (True, False) if args.deformable == "both" else (False,):
            r = OpRestriction.build(supernet.search_space, () if deform else DEFORMABLE)
            archs = fair_cycle_for_step(r.sub, 0, 0, r.to_full)[:passes]
            for mode in modes:
                _reset_peak(device)
                f, b, t = time_step(supernet, opt, batches, archs, mode, device, repeats)
                rows.append({"what": "supernet step", "deformable": deform, "amp": mode,
                             "step_s": t * CYCLE / passes, "fwd_img_ms": 1e3 * f / (passes * batch),
                             "bwd_img_ms": 1e3 * b / (passes * batch), "peak_mib": _peak_mib(device)})
                print(rows[-1], flush=True)
        arch = fair_cycle_for_step(OpRestriction.build(supernet.search_space, DEFORMABLE).sub, 0, 0,
                                   OpRestriction.build(supernet.search_space, DEFORMABLE).to_full)[0]
        del supernet, opt
        torch.manual_seed(0)
        net = build_network("paper-retrain", arch, cats.num_things, cats.num_stuff).to(device).train()
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        for mode in modes:
            _reset_peak(device)
            f, b, t = time_step(net, opt, batches[:1], [None], mode, device, repeats)
            rows.append({"what": "retrain step", "deformable": False, "amp": mode, "step_s": t,
                         "fwd_img_ms": 1e3 * f / batch, "bwd_img_ms": 1e3 * b / batch, "peak_mib": _peak_mib(device)})
            print(rows[-1], flush=True)
        for mode in modes:
            evaluate(net, ds, range(min(2, n_eval)), device=device, amp=mode)  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            evaluate(net, ds, range(n_eval), device=device, amp=mode, batch_size=batch)
            _sync(device)
            rows.append({"what": "evaluation", "deformable": False, "amp": mode,
                         "img_per_s": n_eval / (time.perf_counter() - t0), "peak_mib": _peak_mib(device)})
            print(rows[-1], flush=True)
        from autopanoptic.engine.resize import Resize

        resize = Resize((800,), 1333)
        coco = Path(tmp) / "coco-size"  # COCO's images are about 640 x 480; these are 640 x 640
        write_synthetic(coco, 4, size=640, seed=1, progress=False)
        cds = PanopticDataset(coco / "images", coco / "panoptic.json", coco / "panoptic")
        load_batch(cds, [0], resize=resize)  # warm-up
        t0 = time.perf_counter()
        n_read = 8
        for i in range(n_read):
            load_batch(cds, [i % len(cds)], flips=[bool(i % 2)], resize=resize)
        data_rate = n_read / (time.perf_counter() - t0)
        consumed = max(batch * CYCLE / r["step_s"] for r in rows if r["what"] == "supernet step")
        rows.append({"what": "data path (1 process)", "deformable": False, "amp": "-", "img_per_s": data_rate,
                     "peak_mib": _peak_mib(device), "consumed": consumed})
        print(rows[-1], flush=True)
    load_after = os.getloadavg()
    table, costs = format_tables(rows, batch)
    print(table + "\n\n" + costs)
    if not args.no_write:
        write_doc(rows, table, costs, device, size, batch, passes, repeats, n_eval, load_before, load_after)
    return rows


def format_tables(rows: list[dict], batch: int) -> tuple[str, str]:
    """The measurements table and the paper-schedule costs (no deformable ops; each amp mode)."""
    lines = ["| what | deformable ops | amp | step (s) | forward / image (ms) | backward / image (ms) | "
             "images/s | peak memory (MiB) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        step = f"{r['step_s']:.2f}" if "step_s" in r else "-"
        fwd = f"{r['fwd_img_ms']:.0f}" if "fwd_img_ms" in r else "-"
        bwd = f"{r['bwd_img_ms']:.0f}" if "bwd_img_ms" in r else "-"
        ips = f"{r['img_per_s']:.2f}" if "img_per_s" in r else "-"
        if "consumed" in r:
            ips += f" (the fastest supernet step above consumes {r['consumed']:.2f})"
        lines.append(f"| {r['what']} | {'yes' if r['deformable'] else 'no'} | {r['amp']} | {step} | {fwd} | {bwd} | "
                     f"{ips} | {r['peak_mib']:.0f} |")
    cost = ["| amp | search training (device-h) | retraining (device-h) | one search evaluation, 5000 images "
            "(device-h) | 60 evaluations (device-h) | total: hours on 1 device | hours on 8 devices |",
            "|---|---|---|---|---|---|---|"]
    for mode in dict.fromkeys(r["amp"] for r in rows):
        sup = next((r for r in rows if r["what"] == "supernet step" and r["amp"] == mode and not r["deformable"]), None)
        ret = next((r for r in rows if r["what"] == "retrain step" and r["amp"] == mode), None)
        ev = next((r for r in rows if r["what"] == "evaluation" and r["amp"] == mode), None)
        if not (sup and ret and ev):
            continue
        search_h = SEARCH_STEPS * sup["step_s"] * PAPER_BATCH / batch / 3600
        retrain_h = RETRAIN_STEPS * ret["step_s"] * PAPER_BATCH / batch / 3600
        eval_h = EVAL_IMAGES / ev["img_per_s"] / 3600
        total = search_h + retrain_h + EVALUATIONS * eval_h
        cost.append(f"| {mode} | {search_h:.0f} | {retrain_h:.0f} | {eval_h:.2f} | {EVALUATIONS * eval_h:.1f} | "
                    f"{total:.0f} | {total / 8:.0f} |")
    return "\n".join(lines), "\n".join(cost)


def write_doc(rows, table, costs, device, size, batch, passes, repeats, n_eval, load_before, load_after) -> None:
    import torch

    machine = (f"{torch.cuda.get_device_name(device)}" if device.type == "cuda" else
               f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    load = f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    cuda = device.type == "cuda"  # a GPU's figures get a page of their own: the CPU page keeps its own
    doc = REPO / "docs" / "benchmarks" / ("paper-scale-cuda.md" if cuda else "paper-scale.md")
    gpu = ("" if cuda else """
## GPU: not measured yet

No GPU was available when this page was written. To measure one (about 5 minutes; the figures go to
`docs/benchmarks/paper-scale-cuda.md`; this page keeps the CPU's):

    .venv/bin/python benchmarks/paper_scale.py --device cuda

On a machine with its own PyTorch and no internet (this project's lent GPU machine: torch 2.11,
torchvision 0.26), run it from the checkout with `PYTHONPATH=. python benchmarks/paper_scale.py
--device cuda`, installing beforehand the wheels it lacks (pycocotools, pyspng, zlib-ng), carried
over from a machine that can download them (`pip download --only-binary=:all: ...`). In the same
call, `benchmarks/cycle_dealing.py --device cuda --no-write` (about a minute) says whether dealing a
strict-fair cycle's passes by cost would pay on that GPU ([cycle-dealing.md](cycle-dealing.md)).
""")
    write_page(doc, f"""# Paper scale: time, memory and what the paper's schedules cost

`benchmarks/paper_scale.py` (see its docstring for what is measured). The `paper-search` supernet
and the `paper-retrain` network of one architecture, on synthetic {size} x {size} images, {batch}
image(s) per pass, {passes} pass(es) of a strict-fair cycle timed and scaled to its 12,
median of {repeats} step(s) after a warm-up; evaluation over {n_eval} images. Costs use the
no-deformable rows and scale the measured step to the paper's 16 images per pass.

## {'GPU' if device.type == 'cuda' else 'CPU'}: {machine}, PyTorch {torch.__version__}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d', time.gmtime())}, {load}

{table}

What the paper's COCO schedules would cost at these figures{' (at this reduced image size: not COCO figures)' if device.type != 'cuda' else ''}:

{costs}
{gpu}
Peak memory on CPU is the process's resident high-water mark so far (it only grows down the table);
on CUDA it is `torch.cuda.max_memory_allocated`, reset before each row.
""")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
