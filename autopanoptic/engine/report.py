"""``report.md`` and its plots (matplotlib, Agg backend), from what a run folder holds.

Plots (in ``<run>/plots/``): the per-layer scoreboard as a heat map (like the paper's Figure 2a),
the fitness of every evaluated candidate in evaluation order with the running best, every
candidate's op choices as a parallel-coordinates plot coloured by fitness, the training
loss curves of the supernet and of the retrained network, and a few predictions drawn over their
images (written by the evaluation). Missing pieces (e.g. no search yet) are skipped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from autopanoptic.engine import controls
from autopanoptic.engine.runs import RunDir
from autopanoptic.io import atomic_write_bytes, atomic_write_text

__all__ = ["plot_fitness", "plot_front", "plot_losses", "plot_parallel", "plot_scoreboard", "write_report"]


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _save(fig, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_scoreboard(board: dict[str, Any], path: Path) -> Path:
    """Heat map: one row per searchable layer, one column per choice (blank = not a choice)."""
    import numpy as np

    plt = _plt()
    layers, ops, scores = board["layers"], board["ops"], board["scores"]["scores"]
    width = max(len(o) for o in ops)
    grid = np.full((len(layers), width), np.nan)
    for i, row in enumerate(scores):
        grid[i, : len(row)] = row
    fig, ax = plt.subplots(figsize=(2.0 + 0.9 * width, 1.0 + 0.22 * len(layers)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(layers)), layers, fontsize=6)
    ax.set_xticks(range(width), [f"choice {j}" for j in range(width)], fontsize=7)
    for i, row in enumerate(ops):
        best = int(np.nanargmax(grid[i])) if np.isfinite(grid[i]).any() else -1
        for j, name in enumerate(row):
            ax.text(j, i, name, ha="center", va="center", fontsize=5,
                    color="red" if j == best else "white")
    fig.colorbar(im, ax=ax, label="score")
    ax.set_title("Path-priority scoreboard (red: best choice of the layer)")
    return _save(fig, path)


def plot_fitness(candidates: list[dict[str, Any]], path: Path) -> Path:
    """Fitness (PQ %) of every evaluated candidate in evaluation order, and the running best."""
    plt = _plt()
    fits = [100 * c["fitness"] for c in candidates]
    best, run = [], -math.inf
    for f in fits:
        run = max(run, f)
        best.append(run)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.scatter(range(len(fits)), fits, s=12, label="candidate")
    ax.plot(range(len(fits)), best, color="C1", label="best so far")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("PQ on the search validation split (%)")
    ax.legend(loc="lower right")
    ax.set_title("Fitness of every evaluated candidate")
    return _save(fig, path)


def plot_parallel(candidates: list[dict[str, Any]], path: Path, layers: list[str] | None = None) -> Path:
    """Parallel coordinates: one axis per layer (its choice index), one line per candidate,
    coloured by fitness (PQ %); the best candidates are drawn last, on top.

    Lines are offset vertically by a few hundredths (by evaluation order, not at random) so that
    candidates sharing a choice stay distinguishable. ``layers`` names the axes when given.
    """
    import numpy as np
    from matplotlib.collections import LineCollection

    plt = _plt()
    archs = np.array([c["arch"] for c in candidates], dtype=float)
    fits = np.array([100 * c["fitness"] for c in candidates])
    n_layers = archs.shape[1]
    order = np.argsort(fits, kind="stable")
    xs = np.arange(n_layers)
    segments = [np.column_stack([xs, archs[i] + 0.04 * ((i % 7) - 3)]) for i in order]
    fig, ax = plt.subplots(figsize=(min(18.0, 2.0 + 0.28 * n_layers), 3.8))
    lines = LineCollection(segments, cmap="viridis", linewidths=1.0, alpha=0.8)
    lines.set_array(fits[order])
    ax.add_collection(lines)
    ax.set_xlim(-0.5, n_layers - 0.5)
    ax.set_ylim(-0.5, archs.max() + 0.5)
    for x in xs:
        ax.axvline(x, color="0.85", linewidth=0.5, zorder=0)
    if layers is not None and len(layers) == n_layers:
        ax.set_xticks(xs, layers, rotation=90, fontsize=5)
    else:
        ax.set_xlabel("layer")
    ax.set_yticks(range(int(archs.max()) + 1))
    ax.set_ylabel("op choice (index)")
    fig.colorbar(lines, ax=ax, label="fitness: PQ (%)")
    ax.set_title(f"Op choices of the {len(candidates)} evaluated candidates, coloured by fitness")
    return _save(fig, path)


_COST_LABELS = {"latency": ("predicted latency (ms)", 1.0), "macs": ("GMACs", 1e-9), "params": ("M parameters", 1e-6)}


def plot_front(pareto: dict[str, Any], path: Path) -> Path:
    """Fitness against each cost of ``search/pareto.json`` (one panel per cost): every candidate,
    the Pareto front (points numbered as ``retrain --pick`` takes them), the chosen architecture."""
    plt = _plt()
    costs = pareto["objectives"][1:]
    cands, front, chosen = pareto["candidates"], pareto["front"], pareto.get("chosen")
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 3.6), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        label, unit = _COST_LABELS[cost]
        ax.scatter([c[cost] * unit for c in cands], [100 * c["fitness"] for c in cands], s=12, color="0.6",
                   label="candidate")
        xs = [cands[i][cost] * unit for i in front]
        ys = [100 * cands[i]["fitness"] for i in front]
        ax.plot(xs, ys, "o-", color="C3", markersize=5, label="Pareto front")
        for k, (x, y) in enumerate(zip(xs, ys), start=1):
            ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if chosen is not None and chosen.get("fitness") is not None:
            ax.scatter([chosen[cost] * unit], [100 * chosen["fitness"]], marker="*", s=160, color="C0", zorder=5,
                       label="chosen architecture")
        ax.set_xlabel(label)
        ax.set_ylabel("fitness (%)")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Fitness against cost of the evaluated candidates (numbers: retrain --pick K)")
    return _save(fig, path)


def plot_losses(curves: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """Total training loss per optimizer step, one line per curve."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, records in curves.items():
        if records:
            ax.plot([r["step"] for r in records], [r["loss"] for r in records], label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("total loss")
    ax.legend()
    ax.set_title("Training loss")
    return _save(fig, path)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _front_note(pareto: dict[str, Any]) -> str:
    n = sum(c.get("proposed") == "front" for c in pareto["candidates"])
    return f"; {n} of the candidates proposed along the search's score / cost front after it" if n else ""


def write_report(run: RunDir, cfg: Any = None) -> Path:
    """Write ``<run>/report.md`` (and its plots) from the run folder's files; returns its path."""
    root = run.root
    plots = root / "plots"
    lines = ["# autopanoptic run report\n", f"Run folder: `{root}`\n"]
    metrics = _load(root / "eval" / "metrics.json")
    if metrics:
        lines += ["## Evaluation (evaluation split, never used by training or search)\n",
                  "| | PQ | SQ | RQ | categories |", "|---|---|---|---|---|"]
        for g in ("All", "Things", "Stuff"):
            r = metrics[g]
            lines.append(f"| {g} | {_pct(r['pq'])} | {_pct(r['sq'])} | {_pct(r['rq'])} | {r['n']} |")
        if "untrained" in metrics:
            u = metrics["untrained"]["All"]
            lines.append(f"\nThe same architecture untrained: PQ {_pct(u['pq'])} (SQ {_pct(u['sq'])}, RQ {_pct(u['rq'])}).")
        lines.append(f"\n{metrics['n_images']} images; retrained for {metrics['retrain_steps']} steps.")
        if metrics.get("params") is not None:
            lines.append(f"Network: {metrics['params'] / 1e6:.2f} M parameters, {metrics['macs'] / 1e9:.3f} GMACs "
                         f"at {metrics['image_size']} px.")
        if metrics.get("box_ap") or metrics.get("semantic"):
            from autopanoptic.data.metrics import format_metrics_table

            lines += ["\nThe branches before fusion (box / mask AP on the thing classes, mIoU of the semantic "
                      "branch; see docs/metrics.md):\n", "```",
                      format_metrics_table({"bbox": metrics.get("box_ap"), "segm": metrics.get("mask_ap")}
                                           if metrics.get("box_ap") else None, metrics.get("semantic")), "```"]
        if cfg is not None and metrics.get("All"):
            from autopanoptic.engine.truth import comparison

            ctrl = [c["All"]["pq"] for c in metrics.get("controls") or []]
            lines += ["\n### Against the ground truth of the space\n", *comparison(cfg, metrics["All"]["pq"], ctrl)]
        lines += controls.report_lines(metrics)
        if metrics.get("timings"):
            lines.append("\nSeconds (wall clock per stage; cpu_total = CPU time of all workers and threads): " + ", ".join(f"{k} {v:.0f}" for k, v in metrics["timings"].items()) + ".")
        lines += ["\n### Per class\n", "| category | thing | PQ | SQ | RQ | TP | FP | FN |", "|---|---|---|---|---|---|---|---|"]
        for cid, r in sorted(metrics["per_class"].items(), key=lambda kv: int(kv[0])):
            if r.get("tp", 0) + r.get("fp", 0) + r.get("fn", 0) == 0:
                continue
            lines.append(f"| {r['name']} ({cid}) | {'yes' if r['isthing'] else 'no'} | {_pct(r['pq'])} | {_pct(r['sq'])} | "
                         f"{_pct(r['rq'])} | {r.get('tp', '')} | {r.get('fp', '')} | {r.get('fn', '')} |")
        lines.append("")
    arch = _load(root / "arch.json")
    if arch:
        lines += ["## Chosen architecture\n"]
        if arch.get("fitness") is not None:
            note = "" if arch.get("evaluated_during_search", True) else " (a composite, evaluated after the search)"
            from autopanoptic.engine.search import fitness_words, training_free

            lines.append(f"Search ({arch.get('policy')}, {arch.get('evaluations')} evaluations); fitness of the chosen "
                         f"architecture{note}: {fitness_words(arch.get('fitness_kind', 'pq'), arch['fitness'])}.\n")
            if training_free(arch.get("fitness_kind", "pq")) and not (root / "supernet" / "checkpoint.pt").exists():
                lines.append("No supernet was trained: the search's fitness scores freshly initialised networks, "
                             "so it needs none.\n")
        for group, layers in arch["ops"].items():
            lines.append(f"- **{group}**: " + ", ".join(f"`{k}` {v}" for k, v in layers.items()))
        lines.append("")
    board = _load(root / "search" / "scoreboard.json")
    if board:
        p = plot_scoreboard(board, plots / "scoreboard.png")
        lines += ["## Scoreboard\n", f"![scoreboard]({p.relative_to(root)})\n"]
    cands = _load(root / "search" / "candidates.json")
    if cands:
        p = plot_fitness(cands, plots / "fitness.png")
        lines += ["## Fitness of the candidates\n",
                  "Every evaluated candidate in evaluation order and the best fitness so far:\n",
                  f"![fitness]({p.relative_to(root)})\n"]
        p = plot_parallel(cands, plots / "candidates.png", board["layers"] if board else None)
        lines += ["Every candidate's op choice per layer, coloured by its fitness (parallel coordinates):\n",
                  f"![candidates]({p.relative_to(root)})\n"]
    pareto = _load(root / "search" / "pareto.json")
    if pareto and pareto.get("candidates"):
        p = plot_front(pareto, plots / "front.png")
        costs = pareto["objectives"][1:]
        lines += ["## Pareto front\n",
                  f"The {len(pareto['front'])} of {len(pareto['candidates'])} evaluated candidates that no other one beats "
                  f"in fitness and {', '.join(costs)} (`search/pareto.json`{_front_note(pareto)}); retrain point K with "
                  "`autopanoptic retrain --pick K`:\n", f"![front]({p.relative_to(root)})\n",
                  "| K | fitness | " + " | ".join(_COST_LABELS[c][0] for c in costs) + " |",
                  "|---|---|" + "---|" * len(costs)]
        for k, i in enumerate(pareto["front"], start=1):
            c = pareto["candidates"][i]
            lines.append(f"| {k} | {_pct(c['fitness'])} | " + " | ".join(f"{c[o] * _COST_LABELS[o][1]:.4g}" for o in costs) + " |")
        chosen = pareto.get("chosen")
        if chosen is not None:
            where = f"point {chosen['point']} of the front" if chosen.get("point") else "not on the front"
            lines.append(f"\nThe chosen architecture (`arch.json`) is {where}.\n")
    curves = {name: _load(root / name / "losses.json") or [] for name in ("supernet", "retrain")}
    curves.update({f"random control {i + 1}": _load(controls.folder(root, i) / "losses.json") or []
                   for i in range(len(controls.read_plan(root)))})
    if any(curves.values()):
        p = plot_losses(curves, plots / "losses.png")
        lines += ["## Training loss\n", f"![losses]({p.relative_to(root)})\n"]
    from autopanoptic.engine.ranking import scorer, stronger_baselines
    from autopanoptic.engine.search import training_free
    from autopanoptic.search.stats import format_p

    ranking = _load(root / "check-ranking" / "result.json")
    if ranking and (plots / "check_ranking.png").exists():
        q, t = ranking.get("quick_truth", {}), ranking.get("table_truth")
        fitness = (t or q).get("fitness", "pq")
        free = training_free(fitness)
        by = scorer(fitness) if free else "the supernet's fitness"
        what = (f"The {ranking['n']} architectures of the ground-truth table `{t.get('table')}` (each trained {t.get('seeds')} "
                f"times with the full recipe; its means are reliable at {t.get('reliability_icc', float('nan')):.2f}, so "
                f"even a perfect estimator would reach a tau of about {t.get('tau_ceiling', float('nan')):.2f}), "
                f"scored by {by}" + (f" on the search-validation split ({t.get('val_images')} images)."
                                     if not free else ".")
                if t else
                f"{ranking['n']} architectures spread over the range of {by}, each trained from scratch for "
                f"{q.get('steps')} steps on {q.get('train_images')} training images outside the search-validation "
                f"split and scored on that split ({q.get('val_images')} images).")
        subject, worth = (("the search's fitness", "a fitness worth searching with") if free else
                          ("the supernet", "a supernet worth searching"))
        lines += [f"## Does {subject} rank? (`autopanoptic check-ranking`)\n",
                  f"**{ranking['verdict']}**\n",
                  f"{what} Kendall tau {ranking['tau']:.2f} "
                  f"(95% bootstrap interval {ranking['tau_ci'][0]:.2f} to {ranking['tau_ci'][1]:.2f}), Spearman "
                  f"{ranking['rho']:.2f}, one-sided permutation p {format_p(ranking['p_value'])}. Training-free "
                  f"baselines against the same truth ({worth} should beat them): "
                  + (", ".join(f"{k} tau {v:.2f}" for k, v in ranking.get("baselines", {}).items()) or "-") + ".\n",
                  "![check-ranking](plots/check_ranking.png)\n"]
        better = stronger_baselines(ranking["tau"], ranking.get("baselines", {}), fitness)
        if better:
            lines.insert(len(lines) - 1, f"{better[0].upper()}{better[1:]}.\n")
    drawn = sorted(plots.glob("prediction_*.png")) if plots.is_dir() else []
    if drawn:
        lines += ["## Predictions on evaluation images\n"]
        lines += [f"![prediction]({p.relative_to(root)})" for p in drawn]
        lines.append("")
    return atomic_write_text(root / "report.md", "\n".join(lines) + "\n")
