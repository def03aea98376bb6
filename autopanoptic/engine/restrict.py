"""Restricting the ops that training and search may sample, by configuration only.

The search space itself never changes (SPEC.md section 1). ``model.exclude_ops`` names ops (e.g. the
deformable convolutions, slow on CPU) that are never sampled: :class:`OpRestriction` builds the
*sampling space* -- the same layers with those ops removed -- and maps its architectures back to the
full space. Strict fairness then holds over the sampling space: within a cycle of
``sub.cycle_length`` architectures every *allowed* choice of every layer is trained equally often;
excluded choices are never trained, so the search must not pick them either, and it does not,
because the search policy runs on the same sampling space.

>>> from autopanoptic.search.space import Layer, SearchSpace
>>> space = SearchSpace([Layer("a", ("x", "y", "z")), Layer("b", ("x", "w"))])
>>> r = OpRestriction.build(space, ["y"])
>>> r.sub.n_choices, r.to_full((1, 1)), r.to_sub((2, 0))
((2, 2), (2, 1), (1, 0))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from autopanoptic.errors import ArchitectureError, ConfigError
from autopanoptic.search.space import Arch, Layer, SearchSpace

__all__ = ["OpRestriction"]


@attrs.frozen
class OpRestriction:
    """The full space, the sampling space, and the choice-index maps between them."""

    full: SearchSpace
    sub: SearchSpace
    index_maps: tuple[tuple[int, ...], ...]  # per layer: sub choice -> full choice
    excluded: tuple[str, ...] = ()

    @classmethod
    def build(cls, space: SearchSpace, exclude_ops: Iterable[str] = ()) -> OpRestriction:
        """Remove ``exclude_ops`` from every layer; a layer left with no op is a :class:`ConfigError`."""
        excluded = tuple(dict.fromkeys(str(o) for o in exclude_ops))
        known = {op for layer in space.layers for op in layer.ops}
        unknown = [o for o in excluded if o not in known]
        if unknown:
            raise ConfigError(
                f"model.exclude_ops: unknown op(s) {unknown}; ops of this space are {sorted(known)}"
            )
        layers, maps = [], []
        for layer in space.layers:
            keep = [i for i, op in enumerate(layer.ops) if op not in excluded]
            if not keep:
                raise ConfigError(
                    f"model.exclude_ops removes every op of layer {layer.name!r} ({list(layer.ops)}); keep at least one"
                )
            layers.append(Layer(layer.name, tuple(layer.ops[i] for i in keep), layer.group))
            maps.append(tuple(keep))
        sub = SearchSpace(layers, name=space.name if not excluded else f"{space.name}-without-{'-'.join(excluded)}")
        return cls(full=space, sub=sub, index_maps=tuple(maps), excluded=excluded)

    def to_full(self, arch: Sequence[int]) -> Arch:
        """A sampling-space architecture as an architecture of the full space."""
        arch = self.sub.validate(arch)
        return tuple(m[c] for m, c in zip(self.index_maps, arch))

    def to_sub(self, arch: Sequence[int]) -> Arch:
        """A full-space architecture in the sampling space; excluded ops are an :class:`ArchitectureError`."""
        arch = self.full.validate(arch)
        out = []
        for i, (m, c) in enumerate(zip(self.index_maps, arch)):
            if c not in m:
                raise ArchitectureError(
                    f"layer {i} ({self.full.layers[i].name!r}) uses op {self.full.layers[i].ops[c]!r}, "
                    f"which model.exclude_ops excludes"
                )
            out.append(m.index(c))
        return tuple(out)
