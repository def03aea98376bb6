"""Latency tables for a run's configuration: build one, check it end to end, load the search's.

The measuring itself is :mod:`autopanoptic.nn.latency`; this module supplies the network a config
describes (its model preset, overrides and the data's class counts), the architectures to check (at
random from the config's sampling space, i.e. without ``model.exclude_ops``), and the table of
``search.latency_table`` checked against the searched network. Used by ``autopanoptic latency``,
``arch show --latency-table``, the search and ``benchmarks/latency.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autopanoptic.config import Config
from autopanoptic.errors import ConfigError
from autopanoptic.nn.latency import LatencyCheck, LatencyTable, build_latency_table, check_latency
from autopanoptic.search.space import Arch

__all__ = ["build_table", "check_table", "config_model", "random_archs", "search_latency_table"]


def config_model(cfg: Config):
    """A freshly initialised supernet of ``cfg.model`` for the classes of ``cfg.data``."""
    from autopanoptic.engine.archinfo import categories_for
    from autopanoptic.engine.pipeline import build_model

    return build_model(cfg, categories_for(cfg))


def build_table(cfg: Config, *, device: Any = "cpu", image_size: Any = None, threads: int = 1, warmup: int = 3,
                repeats: int = 15, calibrate: int = 8, seed: int = 0,
                progress: Callable[[str], None] | None = None) -> LatencyTable:
    """The :class:`~autopanoptic.nn.latency.LatencyTable` of the network of ``cfg`` on ``device``
    (``image_size``: ``(H, W)``; default the model preset's nominal square size). Its fixed cost is
    calibrated on ``calibrate`` random networks of the config's sampling space (where the search
    will use it)."""
    model = config_model(cfg)
    size = image_size if image_size is not None else model.config.image_size
    calib = random_archs(cfg, model.search_space, calibrate, seed) if calibrate else None
    return build_latency_table(model, size, device=device, threads=threads, warmup=warmup, repeats=repeats,
                               calibrate=calibrate, seed=seed, calibration_archs=calib, progress=progress)


def random_archs(cfg: Config, space: Any, n: int, seed: int) -> list[Arch]:
    """``n`` distinct random architectures (full space) of the sampling space of ``cfg``
    (``model.exclude_ops`` never chosen), or all of them if it has fewer."""
    from autopanoptic.engine.pipeline import restriction_for

    r = restriction_for(cfg, space)
    rng = np.random.default_rng(seed)
    want = min(int(n), r.sub.size)
    out: list[Arch] = []
    while len(out) < want:
        a = r.to_full(r.sub.sample(rng))
        if a not in out:
            out.append(a)
    return out


def check_table(cfg: Config, table: LatencyTable, *, device: Any = "cpu", networks: int = 20, seed: int = 0,
                warmup: int = 3, repeats: int = 15, progress: Callable[[str], None] | None = None) -> LatencyCheck:
    """Time ``networks`` random standalone networks of ``cfg`` end to end on ``device`` and compare
    with ``table``'s predictions (the table must have been measured on this device and torch)."""
    model = config_model(cfg)
    table.require_network(model.config, model.search_space)
    archs = random_archs(cfg, model.search_space, networks, seed)
    return check_latency(table, model.config, archs, device=device, warmup=warmup, repeats=repeats, progress=progress)


def search_latency_table(cfg: Config, model: Any) -> LatencyTable | None:
    """The table of ``search.latency_table`` (checked against ``model``'s network and space), or
    ``None`` when the config names none; a :class:`ConfigError` when ``search.max_latency_ms`` or a
    ``latency`` objective needs one and none is named.

    The table's device is the *target* device: the search may run elsewhere (e.g. search on a GPU
    for a CPU deployment), so only the network is checked here, not the machine.
    """
    s = cfg.search
    if s.latency_table is None:
        if s.max_latency_ms is not None or "latency" in s.objectives:
            raise ConfigError("search.max_latency_ms and the latency objective need search.latency_table: a table of "
                              "`autopanoptic latency build`")
        return None
    table = LatencyTable.load(s.latency_table)
    try:
        return table.require_network(model.config, model.search_space)
    except ConfigError as e:
        raise ConfigError(f"search.latency_table {s.latency_table}: {e}") from None
