"""``arch show``: an architecture by component and op, with parameters and multiply-adds."""

from __future__ import annotations

from typing import Any

from autopanoptic.search.space import Arch

__all__ = ["arch_table", "categories_for"]


def categories_for(cfg: Any):
    """The category map of a config's data (the synthetic categories when ``data.root`` is null)."""
    from autopanoptic.data import CategoryMap, synthetic_categories
    from autopanoptic.engine.datasets import open_dataset

    d = cfg.data
    if d.root is None:
        return CategoryMap.from_json(synthetic_categories(d.kind, d.synthetic_style))
    return open_dataset(d.root, d.images, d.json, d.pngs, d.kind).categories


def arch_table(supernet: Any, arch: Arch, image_size: int, latency: Any = None) -> str:
    """A text table: one line per searchable layer (component, layer, op, parameters of that op;
    with a ``latency`` table, its time there), then the whole network's parameters and MACs at
    ``image_size`` x ``image_size`` pixels (and its predicted latency)."""
    from autopanoptic.nn import count

    space = supernet.search_space
    arch = space.validate(arch)
    lines = [f"{'component':10} {'layer':26} {'op':12} {'params':>10}" + (f" {'ms':>8}" if latency else "")]
    for group, idx in space.groups.items():
        for i in idx:
            layer = space.layers[i]
            module = supernet.layer_choices[i][arch[i]]
            n = sum(p.numel() for p in module.parameters())
            ms = f" {latency.layer_ms[i][arch[i]]:8.3f}" if latency else ""
            lines.append(f"{group:10} {layer.name:26} {layer.ops[arch[i]]:12} {n:10,d}{ms}")
    params, macs = count(supernet, arch, image_size)
    lines.append(f"whole network: {params / 1e6:.3f} M parameters, {macs / 1e9:.4f} GMACs at {image_size}x{image_size} px")
    if latency is not None:
        h, w = latency.key.image_size
        lines.append(f"predicted latency: {latency.predict(arch):.2f} ms at {h}x{w} px on {latency.key.device} "
                     f"({latency.key.threads} thread(s), torch {latency.key.torch_version})")
    return "\n".join(lines)
