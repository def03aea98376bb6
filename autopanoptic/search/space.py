"""Search spaces and architectures as plain, frozen values.

A :class:`SearchSpace` is an ordered tuple of :class:`Layer` s. Each layer has a name, the names of
its candidate operations and a *group* (for Auto-Panoptic: ``backbone``, ``head`` or ``inter``). An
architecture is a plain ``tuple[int, ...]`` holding one choice index per layer.

>>> space = SearchSpace([Layer("l0", ("a", "b")), Layer("l1", ("x", "y", "z"), group="head")])
>>> space.size, space.cycle_length
(6, 6)
>>> space.validate([1, 2])
(1, 2)
>>> space.arch_to_json((1, 2))
{'backbone': [1], 'head': [2]}
>>> space.arch_to_named((1, 2))
{'backbone': {'l0': 'b'}, 'head': {'l1': 'z'}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from autopanoptic.errors import ArchitectureError
from autopanoptic.io import atomic_write_json

__all__ = ["Arch", "Layer", "SearchSpace", "load_arch", "save_arch"]

Arch = tuple[int, ...]
"""An architecture: one choice index per layer of its space."""


def _nonempty_str(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _ops_valid(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if len(value) == 0:
        raise ValueError(f"layer {instance.name!r} needs at least one op")
    for op in value:
        if not isinstance(op, str) or not op:
            raise ValueError(f"layer {instance.name!r}: op names must be non-empty strings, got {op!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"layer {instance.name!r}: op names must be distinct, got {list(value)}")


@attrs.frozen
class Layer:
    """One searchable layer: a name, its candidate op names, and the component it belongs to.

    >>> Layer("backbone.s1.b0", ("shuffle3x3", "xception3x3")).n_choices
    2
    """

    name: str = attrs.field(validator=_nonempty_str)
    ops: tuple[str, ...] = attrs.field(converter=tuple, validator=_ops_valid)
    group: str = attrs.field(default="backbone", validator=_nonempty_str)

    @property
    def n_choices(self) -> int:
        return len(self.ops)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ops": list(self.ops), "group": self.group}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Layer:
        return cls(name=obj["name"], ops=tuple(obj["ops"]), group=obj.get("group", "backbone"))


def _layers_valid(instance: Any, attribute: attrs.Attribute, value: tuple[Layer, ...]) -> None:
    if len(value) == 0:
        raise ValueError("a search space needs at least one layer")
    names = [layer.name for layer in value]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"layer names must be unique; repeated: {dup}")
    for layer in value:
        if not isinstance(layer, Layer):
            raise TypeError(f"layers must be Layer values, got {type(layer).__name__}")


@attrs.frozen
class SearchSpace:
    """An ordered, immutable collection of searchable layers.

    Groups keep the order in which they first appear, so an architecture serialised "by component"
    lists e.g. ``backbone``, then ``head``, then ``inter``.
    """

    layers: tuple[Layer, ...] = attrs.field(converter=tuple, validator=_layers_valid)
    name: str = attrs.field(default="custom")

    # ---- sizes -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    @property
    def n_choices(self) -> tuple[int, ...]:
        """Number of choices of each layer, in order."""
        return tuple(layer.n_choices for layer in self.layers)

    @property
    def size(self) -> int:
        """Exact number of architectures (a Python int, never a float)."""
        return math.prod(self.n_choices)

    @property
    def cycle_length(self) -> int:
        """Length of one strict-fair cycle: the lcm of the choice counts."""
        return math.lcm(*self.n_choices)

    @property
    def groups(self) -> dict[str, tuple[int, ...]]:
        """Group name -> indices of its layers, groups in order of first appearance."""
        out: dict[str, list[int]] = {}
        for i, layer in enumerate(self.layers):
            out.setdefault(layer.group, []).append(i)
        return {g: tuple(ix) for g, ix in out.items()}

    def layer_index(self, name: str) -> int:
        """Position of the layer called ``name``."""
        for i, layer in enumerate(self.layers):
            if layer.name == name:
                return i
        raise KeyError(f"no layer named {name!r} in search space {self.name!r}")

    def subspace(self, group: str) -> SearchSpace:
        """The space made of one group's layers only."""
        if group not in self.groups:
            raise KeyError(f"no group {group!r}; groups are {list(self.groups)}")
        return SearchSpace([self.layers[i] for i in self.groups[group]], name=f"{self.name}.{group}")

    # ---- architectures -----------------------------------------------------------------------
    def validate(self, arch: Iterable[Any]) -> Arch:
        """Return ``arch`` as a tuple of ints, or raise :class:`ValueError` naming the bad layer.

        >>> SearchSpace([Layer("a", ("x", "y"))]).validate([2])
        Traceback (most recent call last):
        ...
        autopanoptic.errors.ArchitectureError: layer 0 ('a') has 2 choices (0..1); got index 2
        """
        try:
            items = list(arch)
        except TypeError:
            raise ArchitectureError(f"an architecture must be a sequence of ints, got {type(arch).__name__}") from None
        if len(items) != len(self.layers):
            raise ArchitectureError(
                f"architecture has {len(items)} choices but search space {self.name!r} has {len(self.layers)} layers"
            )
        out = []
        for i, (value, layer) in enumerate(zip(items, self.layers)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ArchitectureError(
                    f"layer {i} ({layer.name!r}): choice must be an int, got {value!r}"
                )
            if not 0 <= int(value) < layer.n_choices:
                raise ArchitectureError(
                    f"layer {i} ({layer.name!r}) has {layer.n_choices} choices "
                    f"(0..{layer.n_choices - 1}); got index {int(value)}"
                )
            out.append(int(value))
        return tuple(out)

    def contains(self, arch: Iterable[Any]) -> bool:
        """Whether ``arch`` is a valid architecture of this space."""
        try:
            self.validate(arch)
        except ValueError:
            return False
        return True

    def sample(self, rng: np.random.Generator | int | None) -> Arch:
        """One architecture drawn uniformly at random (``rng`` a Generator or a seed)."""
        rng = np.random.default_rng(rng)
        return tuple(int(rng.integers(n)) for n in self.n_choices)

    def ops_of(self, arch: Arch) -> tuple[str, ...]:
        """The op name chosen at each layer."""
        arch = self.validate(arch)
        return tuple(layer.ops[c] for layer, c in zip(self.layers, arch))

    def encode(self, arch: Arch) -> int:
        """A unique integer in ``range(size)`` for ``arch`` (mixed radix, first layer most significant)."""
        arch = self.validate(arch)
        code = 0
        for n, c in zip(self.n_choices, arch):
            code = code * n + c
        return code

    def decode(self, code: int) -> Arch:
        """Inverse of :meth:`encode`."""
        if not 0 <= code < self.size:
            raise ArchitectureError(f"code {code} is outside 0..{self.size - 1}")
        out = []
        for n in reversed(self.n_choices):
            code, c = divmod(code, n)
            out.append(c)
        return tuple(reversed(out))

    # ---- serialisation of architectures ------------------------------------------------------
    def arch_to_json(self, arch: Arch) -> dict[str, list[int]]:
        """Choice indices grouped by component: ``{"backbone": [...], "head": [...], ...}``."""
        arch = self.validate(arch)
        return {g: [arch[i] for i in ix] for g, ix in self.groups.items()}

    def arch_to_named(self, arch: Arch) -> dict[str, dict[str, str]]:
        """Op names grouped by component: ``{"backbone": {"layer name": "op", ...}, ...}``."""
        arch = self.validate(arch)
        return {
            g: {self.layers[i].name: self.layers[i].ops[arch[i]] for i in ix}
            for g, ix in self.groups.items()
        }

    def arch_from_json(self, obj: Any) -> Arch:
        """Read an architecture from any of its JSON forms and validate it.

        Accepted: a flat list of indices; indices grouped by component (``{"backbone": [..]}``);
        op names grouped by component (``{"backbone": {"layer": "op"}}``); or a mapping with an
        ``"arch"`` key holding one of those.
        """
        if isinstance(obj, Mapping) and "arch" in obj:
            return self.arch_from_json(obj["arch"])
        if isinstance(obj, (list, tuple)):
            return self.validate(obj)
        if not isinstance(obj, Mapping):
            raise ArchitectureError(f"cannot read an architecture from a {type(obj).__name__}")
        groups = self.groups
        unknown = sorted(set(obj) - set(groups))
        if unknown:
            raise ArchitectureError(f"unknown component(s) {unknown}; this space has {list(groups)}")
        missing = [g for g in groups if g not in obj]
        if missing:
            raise ArchitectureError(f"architecture lacks component(s) {missing}")
        arch = [0] * len(self.layers)
        for g, ix in groups.items():
            part = obj[g]
            if isinstance(part, Mapping):
                names = {self.layers[i].name: i for i in ix}
                extra = sorted(set(part) - set(names))
                if extra:
                    raise ArchitectureError(f"component {g!r} has unknown layer(s) {extra}")
                for name, i in names.items():
                    if name not in part:
                        raise ArchitectureError(f"component {g!r} lacks layer {name!r}")
                    op = part[name]
                    layer = self.layers[i]
                    if op not in layer.ops:
                        raise ArchitectureError(
                            f"layer {i} ({name!r}): unknown op {op!r}; choices are {list(layer.ops)}"
                        )
                    arch[i] = layer.ops.index(op)
            elif isinstance(part, (list, tuple)):
                if len(part) != len(ix):
                    raise ArchitectureError(
                        f"component {g!r} has {len(part)} choices but the space has {len(ix)} layers in it"
                    )
                for i, value in zip(ix, part):
                    arch[i] = value
            else:
                raise ArchitectureError(f"component {g!r} must be a list or a mapping, got {type(part).__name__}")
        return self.validate(arch)

    # ---- serialisation of the space ------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "layers": [layer.to_json() for layer in self.layers]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SearchSpace:
        try:
            return cls(layers=[Layer.from_json(x) for x in obj["layers"]], name=obj.get("name", "custom"))
        except (KeyError, TypeError) as e:
            raise ArchitectureError(f"not a search-space JSON object: {e}") from None

    def fingerprint(self) -> str:
        """A short, stable hash of the space's structure (used to tie journals to their space)."""
        import hashlib

        blob = json.dumps(self.to_json()["layers"], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_arch(space: SearchSpace, arch: Arch, path: str | os.PathLike[str], **extra: Any) -> Path:
    """Write ``arch`` to ``path`` as JSON (atomically): grouped indices, named ops, and the flat form.

    Extra keyword arguments (e.g. ``fitness=0.43``) are stored beside it.
    """
    arch = space.validate(arch)
    obj = {
        "space": space.name,
        "space_fingerprint": space.fingerprint(),
        "arch": space.arch_to_json(arch),
        "flat": list(arch),
        "ops": space.arch_to_named(arch),
        **extra,
    }
    return atomic_write_json(path, obj)


def load_arch(space: SearchSpace, path: str | os.PathLike[str]) -> Arch:
    """Read an architecture JSON file written by :func:`save_arch` (or any form
    :meth:`SearchSpace.arch_from_json` accepts) and validate it against ``space``."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArchitectureError(f"{path}: no such architecture file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchitectureError(f"{path}: not valid JSON ({e})") from None
    try:
        if isinstance(obj, Mapping) and "flat" in obj:
            return space.validate(obj["flat"])
        return space.arch_from_json(obj)
    except ArchitectureError as e:
        raise ArchitectureError(f"{path}: {e}") from None
