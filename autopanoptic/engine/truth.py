"""Ground-truth tables: architectures trained from scratch with several seeds, as a value.

A table (written by ``benchmarks/ground_truth.py``; the one for the ``tiny`` space ships as
``benchmarks/ground_truth/tiny.json``) records the data (a :class:`~autopanoptic.config.DataConfig`),
the training recipe (a :class:`~autopanoptic.config.RetrainConfig`), the architectures in the
full-space encoding and every finished (architecture, seed) run. :class:`GroundTruth` reads it and
answers what every ranking claim needs: the per-architecture means, how reliable they are, where a
PQ falls in the distribution, and whether a run's settings make its retrained PQ comparable with the
table at all (:meth:`GroundTruth.mismatch`).

Example::

    gt = GroundTruth.load("benchmarks/ground_truth/tiny.json")
    archs, means = gt.means()
    gt.percentile(0.35)          # share of the table's architectures below PQ 0.35
    gt.mismatch(cfg)             # None when cfg's data and retraining match the table
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from autopanoptic.errors import DataError
from autopanoptic.search import stats

__all__ = ["GroundTruth", "Reliability", "comparison", "share_below", "table_for"]

FORMAT = 1
# settings that do not change what a retraining reaches
_IGNORED = {"data": {"root", "images", "json", "pngs", "eval_root", "eval_images", "eval_json", "eval_pngs",
                     "loader_workers"},
            "retrain": {"checkpoint_every", "seed", "backbone_weights", "parallel", "controls"}}


def same_settings(stored: dict[str, Any], current: dict[str, Any], section: str) -> str | None:
    """Whether ``current`` (a config section as a dict) has the settings ``stored`` recorded: the keys
    ``stored`` has must be equal; keys added to the config since it was written must hold their
    defaults (a table or checkpoint predates them). Returns the first difference, or None."""
    from autopanoptic.config import config_defaults

    defaults = config_defaults()
    for k in sorted(set(stored) | set(current)):
        if k in _IGNORED.get(section, ()):
            continue
        want = stored[k] if k in stored else defaults.get(f"{section}.{k}")
        if _norm(current.get(k)) != _norm(want):
            return f"{section}.{k} is {current.get(k)!r} in the run, {want!r} in the table"
    return None


@attrs.frozen
class Reliability:
    """How trustworthy the per-architecture means are (see :mod:`autopanoptic.search.stats`)."""

    n_archs: int  # architectures with at least 2 seeds
    seeds: float  # mean number of seeds of those
    split_half: float  # split-half reliability of the mean, Spearman-Brown corrected
    icc: float  # the same by one-way ANOVA, ICC(1, k)
    sd_between: float  # sd of the architectures' true values
    sd_within: float  # sd of one run around its architecture's value (seed noise)
    sd_means: float  # sd of the per-architecture means
    se_mean: float  # standard error of one mean (sd_within / sqrt(seeds))

    @property
    def spread_over_se(self) -> float:
        return self.sd_means / self.se_mean if self.se_mean > 0 else float("inf")

    @classmethod
    def of(cls, rows: Sequence[Sequence[float]]) -> Reliability:
        """The figures of per-architecture rows of seed values (rows with fewer than 2 values are left out).

        >>> r = Reliability.of([[1.0, 1.2], [2.0, 2.2], [3.0, 3.2], [9.0]])
        >>> r.n_archs, r.seeds, round(r.sd_within, 3), round(r.icc, 3)
        (3, 2.0, 0.141, 0.99)
        """
        rows = [list(r) for r in rows if len(r) >= 2]
        icc, sb, sw = stats.mean_reliability(rows)
        k = float(np.mean([len(r) for r in rows])) if rows else float("nan")
        means = [float(np.mean(r)) for r in rows]
        return cls(
            n_archs=len(rows), seeds=k, split_half=stats.split_half_reliability(rows), icc=icc, sd_between=sb,
            sd_within=sw, sd_means=float(np.std(means, ddof=1)) if len(means) > 1 else float("nan"),
            se_mean=sw / np.sqrt(k) if rows else float("nan"),
        )


@attrs.frozen
class GroundTruth:
    """One ground-truth table (see the module docstring)."""

    preset: str
    exclude_ops: tuple[str, ...]
    data: dict[str, Any] = attrs.field(eq=False)
    recipe: dict[str, Any] = attrs.field(eq=False)
    archs: tuple[tuple[int, ...], ...]
    runs: tuple[tuple[dict[str, Any], ...], ...] = attrs.field(eq=False)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        """Read a table; a missing or malformed file is a :class:`DataError` naming it."""
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except OSError as e:
            raise DataError(f"{path}: cannot read the ground-truth table ({e.strerror})") from None
        except ValueError as e:
            raise DataError(f"{path}: not a JSON ground-truth table ({e})") from None
        return cls.from_json(obj, source=str(path), path=path)

    @classmethod
    def from_json(cls, obj: Any, *, source: str = "ground truth", path: Path | None = None) -> GroundTruth:
        try:
            if obj.get("format") != FORMAT:
                raise DataError(f"{source}: ground-truth format {obj.get('format')!r}, this release reads {FORMAT}")
            archs = tuple(tuple(int(c) for c in a["arch"]) for a in obj["architectures"])
            runs = tuple(tuple(a["runs"]) for a in obj["architectures"])
            for rs in runs:
                for r in rs:
                    float(r["pq"]), int(r["seed"])
            return cls(preset=str(obj["preset"]), exclude_ops=tuple(obj["exclude_ops"]), data=dict(obj["data"]),
                       recipe=dict(obj["recipe"]), archs=archs, runs=runs, path=path)
        except DataError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"{source}: not a ground-truth table ({type(e).__name__}: {e})") from None

    def with_seeds(self, seeds: Sequence[int]) -> GroundTruth:
        """The table with only the runs of ``seeds``."""
        keep = {int(s) for s in seeds}
        return attrs.evolve(self, runs=tuple(tuple(r for r in rs if int(r["seed"]) in keep) for rs in self.runs))

    def settled(self) -> GroundTruth:
        """The table on the seeds every architecture has finished (0 .. k-1, the largest such k), so that
        every mean averages as many trainings: while a table grows by more seeds (``--seeds 6``), its
        comparisons stay on the seeds it had. While the first seeds still run (k = 0), the table as it is.

        >>> gt = GroundTruth(preset="tiny", exclude_ops=(), data={}, recipe={}, archs=((0,), (1,)),
        ...                  runs=(({"seed": 0, "pq": 0.5}, {"seed": 1, "pq": 0.6}, {"seed": 2, "pq": 0.7}),
        ...                        ({"seed": 0, "pq": 0.4}, {"seed": 1, "pq": 0.5})))
        >>> [len(rs) for rs in gt.settled().runs]
        [2, 2]
        """
        done = [{int(r["seed"]) for r in rs} for rs in self.runs]
        k = 0
        while done and all(k in d for d in done):
            k += 1
        return self.with_seeds(range(k)) if k else self

    def table(self, key: str = "pq") -> list[list[float]]:
        """Per architecture, the ``key`` of each finished seed that has it (possibly none).

        A dotted key reads inside a run: ``"large.pq"``, ``"large.pq_by_size.400"`` (the second
        evaluation set of ``benchmarks/ground_truth.py``, which older runs lack).
        """
        return [[v for v in (_dig(r, key) for r in rs) if v is not None] for rs in self.runs]

    def singles(self, key: str = "pq") -> list[float]:
        """Every finished training's ``key``, all architectures together (what one training of a run
        compares with)."""
        return [v for row in self.table(key) for v in row]

    def means(self, key: str = "pq", min_seeds: int = 1) -> tuple[list[tuple[int, ...]], np.ndarray]:
        """The architectures with at least ``min_seeds`` finished seeds, and their mean ``key``."""
        keep = [i for i, rs in enumerate(self.runs) if len(rs) >= max(1, min_seeds)]
        t = self.table(key)
        return [self.archs[i] for i in keep], np.array([np.mean(t[i]) for i in keep])

    def reliability(self, key: str = "pq", archs: Sequence[int] | None = None) -> Reliability:
        """:class:`Reliability` of the ``key`` over all architectures, or over those indexed by ``archs``."""
        t = self.table(key)
        return Reliability.of(t if archs is None else [t[i] for i in archs])

    def percentile(self, value: float, key: str = "pq", min_seeds: int = 1) -> float:
        """Share of the table's architectures whose mean is below ``value`` (ties count half), in [0, 1]."""
        _, m = self.means(key, min_seeds)
        return share_below(m, value)

    def mismatch(self, cfg: Any, sections: Sequence[str] = ("data", "retrain")) -> str | None:
        """Why a run with config ``cfg`` is not comparable with the table (``None`` if it is): the
        same generated data and splits, the same preset and sampling space, and a retraining from
        scratch with the same recipe (``sections=("data",)``: the data alone, for scoring the table's
        architectures with the run's supernet, whatever the run's retraining)."""
        from autopanoptic.config import config_to_dict

        d = config_to_dict(cfg)
        if cfg.data.root is not None:
            return "the run uses its own dataset (data.root), the table generated data"
        if cfg.model.preset != self.preset or (
                "retrain" in sections and (cfg.retrain.preset or cfg.model.preset) != self.preset):
            return f"the table is for the {self.preset!r} preset"
        if cfg.model.overrides or ("retrain" in sections and cfg.retrain.overrides):
            return "the run overrides the network's shape (model/retrain overrides)"
        if tuple(cfg.model.exclude_ops) != self.exclude_ops:
            return f"the table's sampling space excludes {list(self.exclude_ops)}, the run's {list(cfg.model.exclude_ops)}"
        for section, want in (("data", self.data), ("retrain", self.recipe)):
            if section not in sections:
                continue
            why = same_settings(want, d[section], section)
            if why is not None:
                return why
        return None


def share_below(values: Sequence[float], value: float) -> float:
    """Share of ``values`` below ``value``, ties counting half (NaN when there are none)."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return float("nan")
    return float((np.sum(v < value) + 0.5 * np.sum(v == value)) / len(v))


def _dig(run: dict[str, Any], key: str) -> float | None:
    v: Any = run
    for part in key.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    return float(v)


def _norm(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 9)
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


def spread_table(values: Sequence[float]) -> dict[str, float]:
    """min / quartiles / max / mean / sd of ``values`` (for reports)."""
    v = np.asarray(values, float)
    q = np.quantile(v, [0, 0.25, 0.5, 0.75, 1]) if len(v) else [np.nan] * 5
    return {"min": float(q[0]), "q1": float(q[1]), "median": float(q[2]), "q3": float(q[3]), "max": float(q[4]),
            "mean": float(v.mean()) if len(v) else float("nan"),
            "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan")}


def table_for(cfg: Any) -> Path | None:
    """The ground-truth table a run's report compares with (``eval.ground_truth``; ``auto``: the
    source tree's ``benchmarks/ground_truth/<preset>.json`` if it exists)."""
    want = cfg.eval.ground_truth
    if want is None:
        return None
    if want != "auto":
        return Path(want).expanduser()
    return next((p for p in shipped_tables(cfg.model.preset) if p.is_file()), None)


def shipped_tables(preset: str) -> list[Path]:
    """Where ``eval.ground_truth: auto`` looks for ``preset``'s table, in order: the source tree's
    ``benchmarks/ground_truth/`` (a checkout or an editable install: the newest), then the copy a
    regular install ships inside the package (``autopanoptic/ground_truth/``, made by setup.py)."""
    here = Path(__file__).resolve()
    return [here.parents[2] / "benchmarks" / "ground_truth" / f"{preset}.json",
            here.parents[1] / "ground_truth" / f"{preset}.json"]


def applicable_table(cfg: Any, sections: Sequence[str] = ("data", "retrain")
                     ) -> tuple[GroundTruth | None, Path | None, str]:
    """The ground-truth table a run with config ``cfg`` is comparable with (settled), its file and a
    phrase naming it; or ``None`` and the sentence that says why no comparison applies (``sections``:
    as :meth:`GroundTruth.mismatch`)."""
    path = table_for(cfg)
    if path is None:
        return None, None, "No ground-truth table for this configuration (`eval.ground_truth`); no comparison."
    try:
        gt = GroundTruth.load(path).settled()
    except DataError as e:
        return None, path, f"The ground-truth table could not be read: {e}"
    why = gt.mismatch(cfg, sections)
    if why is not None:
        needs = ("data, preset, sampling space and retraining recipe (from scratch)" if "retrain" in sections
                 else "data, preset and sampling space")
        return None, path, (f"The comparison with the ground truth (`{path.name}`) does not apply: {why}. It applies to "
                            f"a run with the table's {needs}, e.g. the `tiny-truth` preset; see "
                            "docs/benchmarks/ground-truth.md.")
    return gt, path, (f"compared with the ground truth `{path.name}` ({len(gt.runs)} random architectures of this space "
                "trained with the same data and recipe)")


def terminal_line(cfg: Any, pq: float, controls: Sequence[float] = ()) -> str | None:
    """One line for the terminal: where a run's retrained PQ (and its controls') falls among the
    ground truth's single trainings; None where no comparison applies (the report says why)."""
    gt, path, _ = applicable_table(cfg)
    single = gt.singles() if gt is not None else []
    if not single or path is None:
        return None
    line = (f"against the ground truth ({path.name}: {len(single)} trainings of {len(gt.runs)} random "
            f"architectures, same data and recipe): the searched network beats {100 * share_below(single, pq):.0f}%")
    if controls:
        line += ", its control" + "s" * (len(controls) > 1) + " " + ", ".join(
            f"{100 * share_below(single, c):.0f}%" for c in controls)
    return line


def comparison(cfg: Any, pq: float, controls: Sequence[float] = ()) -> list[str]:
    """Report lines: where a run's retrained PQ (and its random ``controls``' PQ) falls in the ground
    truth, or why that does not apply."""
    gt, path, words = applicable_table(cfg)
    if gt is None or path is None:
        return [words]
    single = gt.singles()
    _, means = gt.means(min_seeds=max((len(r) for r in gt.runs), default=1))
    if not single:
        return [f"The ground-truth table `{path.name}` holds no finished run yet."]
    below = share_below(single, pq)
    lines = [f"The retrained network reaches PQ {100 * pq:.1f}. Against the ground truth of random architectures "
             f"of this space trained with the same data and recipe (`{path.name}`): it beats "
             f"{100 * below:.0f}% of the table's {len(single)} single trainings (median "
             f"{100 * float(np.median(single)):.1f}, best {100 * max(single):.1f})"]
    if len(means):
        lines[0] += (f", and {100 * gt.percentile(pq, min_seeds=max(len(r) for r in gt.runs)):.0f}% of its "
                     f"{len(means)} architecture means (median {100 * float(np.median(means)):.1f}).")
    else:
        lines[0] += "."
    for i, c in enumerate(controls):
        lines.append(f"Random control {i + 1} (PQ {100 * c:.1f}) beats {100 * share_below(single, c):.0f}% of those "
                     "single trainings.")
    return lines
