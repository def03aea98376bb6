"""``autopanoptic arch show``: print an architecture by component and op, with params and FLOPs."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("arch")
def arch() -> None:
    """Inspect architectures."""


@arch.command("show")
@click.argument("arch_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--config", "config", default="tiny", show_default=True, help="Preset or YAML config (the model).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config value.")
@click.option("--image-size", type=click.IntRange(min=8), default=None,
              help="Image side for counting MACs (default: search.cost_image_size).")
@click.option("--latency-table", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A table of `autopanoptic latency build`: also print the predicted latency.")
def show(arch_file: Path, config: str, overrides, image_size, latency_table) -> None:
    """Print ARCH_FILE (a JSON architecture) by component and op, with parameters and MACs (and the
    predicted latency with --latency-table)."""
    from autopanoptic.config import load_config
    from autopanoptic.engine.archinfo import arch_table, categories_for
    from autopanoptic.engine.pipeline import build_model
    from autopanoptic.search import load_arch

    cfg = load_config(config, list(overrides))
    model = build_model(cfg, categories_for(cfg))
    a = load_arch(model.search_space, arch_file)
    table = None
    if latency_table is not None:
        from autopanoptic.nn.latency import LatencyTable

        table = LatencyTable.load(latency_table).require_network(model.config, model.search_space)
    click.echo(arch_table(model, a, image_size or cfg.search.cost_image_size, latency=table))
