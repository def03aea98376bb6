"""Supernet speed: the path tax of weight sharing, and time / memory per image on this CPU.

1. **Path tax.** One training step (zero_grad, forward, backward, SGD step) of the ``tiny``
   supernet on one path against the standalone network extracted for the same architecture, same
   batch, in one process, runs interleaved (A, B, A, B, ...); median of ``--repeats`` runs each.
   Target: ratio <= 1.10. Measured for two architectures: one without deformable ops and one drawn
   at random (seed 0).
2. **Time and memory per image.** For ``tiny`` at its image size (128 px) and ``paper-search`` at a
   small size (256 px): eval-mode forward (``torch.no_grad``) and training forward+backward, batch of
   2 images, median of ``--repeats`` runs divided by 2. Each measurement runs in a fresh
   subprocess; "peak RSS" is the process's high-water mark (VmHWM, model included) and "+ over
   model" its increase over the resident size right after building the model.

Everything runs on one thread (``torch.set_num_threads(1)``) because the machine's two cores are
shared; the load average at start and end is reported.

Usage::

    nice -n 10 .venv/bin/python benchmarks/supernet_speed.py            # writes docs/benchmarks/supernet.md
    .venv/bin/python benchmarks/supernet_speed.py --repeats 3 --no-write
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _machine import code_version, cpu_name  # noqa: E402  (benchmarks/ is the script folder, on sys.path)


def _status(field: str) -> float:
    """A ``/proc/self/status`` memory field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _batch(size: int, seed: int, num_things: int, num_stuff: int, n: int = 2):
    import torch

    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for i in range(n):
        images.append(torch.rand(3, size, size, generator=g))
        s = size
        boxes = torch.tensor([[0.1 * s, 0.1 * s, 0.5 * s, 0.6 * s], [0.4 * s, 0.3 * s, 0.9 * s, 0.9 * s]])
        masks = torch.zeros(2, s, s, dtype=torch.uint8)
        for j, b in enumerate(boxes.long().tolist()):
            masks[j, b[1] : b[3], b[0] : b[2]] = 1
        sem = torch.randint(0, num_stuff + 1, (s, s), generator=g)
        targets.append({"boxes": boxes, "labels": torch.tensor([1, min(2, num_things)]), "masks": masks, "semantic": sem})
    return images, targets


def measure_tax(repeats: int) -> list[dict]:
    import torch

    from autopanoptic.nn import build_supernet, extract

    torch.set_num_threads(1)
    torch.manual_seed(0)
    sup = build_supernet("tiny", 3, 4).train()
    space = sup.search_space
    images, targets = _batch(sup.config.image_size, 0, 3, 4)
    nb = sum(sup.config.stage_blocks)
    no_deform = list(space.sample(1))
    for i in range(nb, nb + 7):
        no_deform[i] %= 4  # dwconv / atconv only
    rows = []
    for label, arch in (("no deformable ops", tuple(no_deform)), ("random (seed 0)", space.sample(0))):
        net = extract(sup, arch).train()
        opt_s = torch.optim.SGD(sup.parameters(), lr=1e-4)
        opt_n = torch.optim.SGD(net.parameters(), lr=1e-4)

        def step_sup():
            opt_s.zero_grad(set_to_none=True)
            sum(sup(images, targets, arch=arch).values()).backward()
            opt_s.step()

        def step_net():
            opt_n.zero_grad(set_to_none=True)
            sum(net(images, targets).values()).backward()
            opt_n.step()

        for _ in range(2):  # warm-up
            step_sup()
            step_net()
        ts, tn = [], []
        for i in range(repeats):
            # alternate which network goes first, so a drift in machine load hits both alike
            order = (("s", step_sup), ("n", step_net)) if i % 2 == 0 else (("n", step_net), ("s", step_sup))
            for key, fn in order:
                t = time.perf_counter()
                fn()
                (ts if key == "s" else tn).append(time.perf_counter() - t)
        ms, mn = statistics.median(ts), statistics.median(tn)
        pair_ratio = statistics.median(a / b for a, b in zip(ts, tn))
        rows.append(
            {
                "arch": label,
                "ops": space.ops_of(arch)[nb : nb + 7],
                "supernet_ms": 1000 * ms,
                "standalone_ms": 1000 * mn,
                "ratio": ms / mn,
                "pair_ratio": pair_ratio,
            }
        )
    return rows


def _no_deform(space, arch):
    """``arch`` with every deformable head op replaced by the atrous op of the same kernel."""
    nb = len(space.groups["backbone"])
    out = list(arch)
    for i in range(nb, nb + len(space.groups["head"])):
        if out[i] >= 4:
            out[i] -= 2
    return tuple(out)


def measure_one(preset: str, size: int, mode: str, repeats: int, arch_kind: str = "random") -> dict:
    """Run in a subprocess: time per image and memory of one (preset, size, mode, architecture)."""
    import torch

    from autopanoptic.nn import build_supernet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build_supernet(preset, 3, 4)
    arch = net.search_space.sample(0)
    if arch_kind == "no-deform":
        arch = _no_deform(net.search_space, arch)
    images, targets = _batch(size, 1, 3, 4)
    rss_model = _status("VmRSS")
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        if mode == "forward":
            net.eval()
            with torch.no_grad():
                net(images, arch=arch)
        else:
            net.train()
            net.zero_grad(set_to_none=True)
            sum(net(images, targets, arch=arch).values()).backward()
        if i:  # the first run is a warm-up
            times.append(time.perf_counter() - t)
    return {
        "preset": preset,
        "size": size,
        "mode": mode,
        "arch": arch_kind,
        "ms_per_image": 1000 * statistics.median(times) / len(images),
        "peak_rss_mib": _status("VmHWM"),
        "over_model_mib": _status("VmHWM") - rss_model,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
    }


def measure_counts() -> list[dict]:
    """Whole-network parameters and MACs (``autopanoptic.nn.count``, meta device) of a few paths."""
    from autopanoptic.nn import count
    from autopanoptic.search.spaces import auto_panoptic

    space = auto_panoptic()
    paths = {
        "all choice 0 (shuffle3x3, dwconv3x3, r=4)": (0,) * 56,
        "shuffle3x3, atconv5x5 heads, r=16": (0,) * 40 + (3,) * 7 + (2,) * 9,
        "xception3x3, dfconv5x5 heads, r=4": (3,) * 40 + (5,) * 7 + (0,) * 9,
        "random (seed 0)": space.sample(0),
    }
    rows = []
    for preset in ("paper-search", "paper-retrain"):
        for label, arch in paths.items():
            params, macs = count(preset, arch, 800, num_thing_classes=80, num_stuff_classes=53)
            rows.append({"preset": preset, "arch": label, "params_m": params / 1e6, "gmacs": macs / 1e9})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--tax-repeats", type=int, default=21, help="timed steps per network for the path tax")
    ap.add_argument("--paper-size", type=int, default=256)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: JSON args of measure_one
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure_one(**json.loads(args.one))))
        return

    t0 = time.time()
    load0 = os.getloadavg()
    tax = measure_tax(args.tax_repeats)
    runs = []
    for preset, size in (("tiny", 128), ("paper-search", args.paper_size)):
        for kind, mode in itertools.product(("random", "no-deform"), ("forward", "forward+backward")):
            spec = json.dumps({"preset": preset, "size": size, "mode": mode, "repeats": args.repeats, "arch_kind": kind})
            out = subprocess.run(
                [sys.executable, __file__, "--one", spec], capture_output=True, text=True, check=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    counts = measure_counts()
    load1 = os.getloadavg()

    commit = code_version()
    lines = [
        "| architecture | mask/semantic ops | supernet step (ms) | standalone step (ms) | ratio of medians | median of pair ratios |",
        "|---|---|---|---|---|---|",
    ]
    for r in tax:
        lines.append(
            f"| {r['arch']} | {', '.join(r['ops'])} | {r['supernet_ms']:.1f} | {r['standalone_ms']:.1f} | "
            f"{r['ratio']:.3f} | {r['pair_ratio']:.3f} |"
        )
    table1 = "\n".join(lines)
    lines = [
        "| preset | supernet params (M) | image | architecture | mode | ms / image (median) | peak RSS (MiB) | + over model (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['preset']} | {r['params_m']:.1f} | {r['size']} x {r['size']} | {r['arch']} | {r['mode']} | "
            f"{r['ms_per_image']:.0f} | {r['peak_rss_mib']:.0f} | {r['over_model_mib']:.0f} |"
        )
    table2 = "\n".join(lines)
    lines = ["| preset | architecture | params (M) | GMACs at 800 x 800 |", "|---|---|---|---|"]
    for r in counts:
        lines.append(f"| {r['preset']} | {r['arch']} | {r['params_m']:.2f} | {r['gmacs']:.1f} |")
    table3 = "\n".join(lines)
    machine = (
        f"{cpu_name()}, {os.cpu_count()} logical cores (shared with other jobs), 1 torch thread, "
        f"Python {platform.python_version()}, torch {__import__('torch').__version__}; load average "
        f"{load0[0]:.1f} at start, {load1[0]:.1f} at end; total {time.time() - t0:.0f} s; "
        f"{args.repeats} timed runs per figure"
    )
    print(table1)
    print()
    print(table2)
    print()
    print(table3)
    print()
    print(machine)
    if args.no_write:
        return
    from autopanoptic.io import atomic_write_text

    doc = f"""# Supernet speed

Written by `benchmarks/supernet_speed.py` (commit {commit}); rerun it to refresh this page:
`nice -n 10 .venv/bin/python benchmarks/supernet_speed.py`.

**Machine.** {machine}.

## The path tax of weight sharing

One training step (zero_grad, forward, backward, SGD step) of the `tiny` supernet on one path
against the standalone network `extract(supernet, arch)` of the same architecture, same batch
(2 images of 128 x 128, 2 instances each), measured interleaved in one process (the network that
goes first alternates); medians of {args.tax_repeats} steps each, and the median over pairs of the
ratio of the two steps of a pair (less sensitive to changes in machine load during the run).
Target: ratio at most 1.10 (a path must not pay for the ops it does not use).

{table1}

## Time and memory per image

Batch of 2 images, architecture `search_space.sample(0)`, untrained weights; eval-mode forward
under `torch.no_grad()` (RPN, RoI heads, mask pasting and panoptic fusion included) and a training
forward+backward (all losses). Time is the median batch time divided by 2. Each row runs in a fresh
process: peak RSS is the process's high-water mark, model included; "+ over model" is the increase
over the resident size right after the model was built. Deformable ops make time depend strongly
on the architecture (on this CPU a `dfconv5x5` head layer costs several times an `atconv5x5`).

{table2}

## Whole-network counts

`autopanoptic.nn.count(preset, arch, 800)` (80 thing and 53 stuff classes, COCO): parameters of
the standalone network of the path, and multiply-accumulates of `cost_forward` on one 800 x 800
image: backbone, FPN, semantic branch, attention, RPN head, box head on 1000 RoIs and mask head on
100 RoIs (Conv2d / Linear / ConvTranspose2d and the deformable convolutions; see
`autopanoptic.nn.counting`). Counted on the `meta` device: no arithmetic, exact shapes.

{table3}
"""
    path = atomic_write_text(REPO / "docs" / "benchmarks" / "supernet.md", doc)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
