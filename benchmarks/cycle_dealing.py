"""Would dealing a strict-fair cycle's passes by their cost beat round-robin? Measured, then simulated.

`train.parallel: cycle` deals the ``m`` passes of a step round-robin (rank ``r`` runs passes ``r,
r + R, ...``); the step waits for the slowest rank. Dealing by expected cost (longest first to the
least-loaded rank, "LPT") is the same step (gradients summed in another order) and could shorten
that wait, if the cost of a pass can be predicted before it runs. This script answers it without a
process group: one process times every pass of ``--steps`` strict-fair cycles of the ``tiny``
supernet (forward and backward on its batch of 2, one thread), counts each pass's multiply-accumulates
(:func:`autopanoptic.nn.count`, the deterministic cost a dealing could use), and computes for R ranks
the compute time of the slowest rank per step under round-robin, LPT by MACs, LPT by the measured
times (an oracle no dealing has), and the bound max(sum / R, longest pass). Communication and
BatchNorm replay are the same under every dealing and left out.

Two op sets: the CPU demo's (the deformable convolutions excluded, as the `tiny` preset does on CPU)
and the full space (deformable ops in, as the paper presets use them on a GPU).

    .venv/bin/python benchmarks/cycle_dealing.py            # about 4 minutes on one core; writes docs/benchmarks/cycle-dealing.md
    .venv/bin/python benchmarks/cycle_dealing.py --steps 3 --no-write
    .venv/bin/python benchmarks/cycle_dealing.py --device cuda --no-write   # a GPU's passes (prints the table)
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _machine import code_version, cpu_name, write_page  # noqa: E402


def lpt(costs, ranks: int) -> list[list[int]]:
    """Longest processing time first: each pass, in decreasing cost, to the least-loaded rank."""
    loads, out = [0.0] * ranks, [[] for _ in range(ranks)]
    for j in sorted(range(len(costs)), key=lambda j: (-costs[j], j)):
        r = min(range(ranks), key=lambda r: (loads[r], r))
        out[r].append(j)
        loads[r] += costs[j]
    return out


def measure(exclude: tuple[str, ...], steps: int, warmup: int, data, device: str = "cpu") -> list[tuple[int, int, float, float]]:
    """(step, pass, seconds, MACs) of every pass after ``warmup`` steps of a fresh tiny supernet on ``device``."""
    from autopanoptic.engine.datasets import batch_indices, load_batch
    from autopanoptic.engine.restrict import OpRestriction
    from autopanoptic.engine.train import fair_cycle_for_step
    from autopanoptic.nn import build_supernet, count

    cats = data.categories
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    torch.manual_seed(0)
    sup = build_supernet("tiny", cats.num_things, cats.num_stuff).to(device)
    r = OpRestriction.build(sup.search_space, exclude)
    opt = torch.optim.SGD(sup.parameters(), lr=0.02, momentum=0.9)
    rows = []
    for step in range(warmup + steps):
        archs = fair_cycle_for_step(r.sub, 0, step, r.to_full)
        for j, a in enumerate(archs):
            images, targets = load_batch(data, batch_indices(range(len(data)), 2, step * len(archs) + j, seed=0),
                                         device=device)
            torch.manual_seed(step * 1000 + j)
            sync()
            t = time.perf_counter()
            sum(sup(images, targets, arch=a).values()).backward()
            sync()
            seconds = time.perf_counter() - t
            if step >= warmup:
                rows.append((step, j, seconds, float(count(sup, a, 64)[1])))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return rows


def simulate(rows, ranks: int) -> dict[str, float]:
    """Summed over steps: the slowest rank's compute under each dealing, and the bound."""
    out = dict.fromkeys(("round-robin", "LPT by MACs", "LPT by measured time", "bound"), 0.0)
    for s in sorted({r[0] for r in rows}):
        ps = sorted((r for r in rows if r[0] == s), key=lambda r: r[1])
        t, m = [p[2] for p in ps], [p[3] for p in ps]
        out["round-robin"] += max(sum(t[j] for j in range(k, len(t), ranks)) for k in range(ranks))
        out["LPT by MACs"] += max(sum(t[j] for j in g) for g in lpt(m, ranks))
        out["LPT by measured time"] += max(sum(t[j] for j in g) for g in lpt(t, ranks))
        out["bound"] += max(sum(t) / ranks, max(t))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed strict-fair steps per op set")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to measure a GPU's passes")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from autopanoptic.data import PanopticDataset, write_synthetic

    with tempfile.TemporaryDirectory() as d:
        write_synthetic(Path(d), 64, size=64, seed=7, style="hard")
        data = PanopticDataset(Path(d) / "images", Path(d) / "panoptic.json", Path(d) / "panoptic")
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        sets = {"CPU demo (deformable ops excluded)": ("dfconv3x3", "dfconv5x5"), "full space (deformable ops in)": ()}
        measured = {name: measure(ex, args.steps, args.warmup, data, args.device) for name, ex in sets.items()}
    lines = ["| op set | passes timed | pass time: mean, sd (ms) | corr(time, MACs) | ranks | round-robin (s) | "
             "LPT by MACs | LPT by measured time | bound |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in measured.items():
        t = np.array([r[2] for r in rows])
        m = np.array([r[3] for r in rows])
        corr = float(np.corrcoef(t, m)[0, 1])
        for R in args.ranks:
            sim = simulate(rows, R)
            rr = sim["round-robin"]
            lines.append(f"| {name} | {len(rows)} | {1000 * t.mean():.0f}, {1000 * t.std(ddof=1):.0f} | {corr:+.2f} | {R} | "
                         f"{rr:.2f} | {sim['LPT by MACs'] / rr:.2f} | {sim['LPT by measured time'] / rr:.2f} | "
                         f"{sim['bound'] / rr:.2f} |")
    table = "\n".join(lines)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    print(table)
    if args.no_write:
        return
    write_page(REPO / "docs" / "benchmarks" / "cycle-dealing.md", f"""# Dealing a strict-fair cycle's passes: round-robin or by cost?

`benchmarks/cycle_dealing.py` (its docstring says what is measured): every pass of {args.steps} strict-fair
steps of a fresh `tiny` supernet timed in one process (forward and backward, batch of 2, one thread,
64-px synthetic images), then, for R ranks, the compute time of the slowest rank summed over the
steps under each dealing. Columns after the round-robin time are ratios to it (lower is better).
Measured {started} on {device_name}, Python {platform.python_version()}, torch {torch.__version__},
commit {code_version(REPO)}.

{table}

To re-measure:

    .venv/bin/python benchmarks/cycle_dealing.py
""")


if __name__ == "__main__":
    main()
