"""Parameter and multiply-accumulate (MAC) counts of any architecture, without training it.

The cost of a path through a supernet is additive: the input shape of every searchable layer is
fixed by the widths and the image size, so the cost of layer ``l`` depends only on its own choice
``c``. Hence

    cost(arch) = base + sum over layers l of table[l][arch[l]]

:func:`build_cost_table` measures ``base`` and ``table`` once (a handful of forwards, on the
``meta`` device when possible, so no arithmetic is done) and returns a :class:`CostTable`: a
frozen, torch-free value (numpy arrays, JSON round trip) whose :meth:`CostTable.params`,
:meth:`CostTable.macs` and :meth:`CostTable.constraint` are cheap enough to be a search constraint.

What is counted (the DetNAS / SPOS convention, which reproduces SPEC.md's figures):

- parameters: every parameter tensor once;
- MACs: ``nn.Conv2d`` (``output elements x in_channels / groups x kh x kw``), ``nn.Linear``
  (``output elements x in_features``) and ``nn.ConvTranspose2d`` (``input elements x
  out_channels / groups x kh x kw``); biases, normalisation, activations, pooling, RoIAlign, NMS
  are not multiply-accumulates of a layer and are not counted.
- **Custom ops**: a module that defines ``count_macs(inputs, output) -> int`` (``inputs`` the
  tuple of positional inputs of its ``forward``, ``output`` its output) is counted by that method
  *instead of* its children. Use it for functional ops invisible to module hooks (e.g.
  ``torchvision.ops.deform_conv2d``: see ``autopanoptic.nn.ops.heads.ModulatedDeformConv2d``).

The counts are for the forward pass the caller runs: :func:`count` uses a network's
``cost_forward(arch, image_size)`` when it has one, otherwise one ``1 x 3 x S x S`` image.

>>> from autopanoptic.nn.backbone import ShuffleNetSupernet
>>> net = ShuffleNetSupernet((1, 1, 2, 1), (8, 16, 24, 32, 48))
>>> table = build_cost_table(net, image_forward(64))
>>> table.params((0, 0, 0, 0, 0)) < table.params((3, 3, 3, 3, 3))
True
>>> CostTable.from_json(table.to_json()) == table
True
"""

from __future__ import annotations

import copy
import json
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from autopanoptic.errors import ArchitectureError, ConfigError

__all__ = [
    "CostConstraint",
    "CostTable",
    "build_cost_table",
    "count",
    "count_direct",
    "cost_table_for",
    "covering_archs",
    "image_forward",
    "module_macs",
]

Arch = tuple[int, ...]


def _as_table(value: Any) -> tuple[np.ndarray, ...]:
    rows = tuple(np.asarray(row, dtype=np.int64).reshape(-1) for row in value)
    for row in rows:
        row.setflags(write=False)
    return rows


def _validate_rows(instance: Any, attribute: attrs.Attribute, value: tuple[np.ndarray, ...]) -> None:
    if any(len(row) < 1 for row in value) or any((row < 0).any() for row in value):
        raise ConfigError(f"cost table: every layer needs at least one non-negative {attribute.name} entry")


@attrs.frozen(eq=False)
class CostTable:
    """Additive cost model of a search space: ``base + sum_l table[l][arch[l]]``.

    Fields: ``base_params``, ``base_macs`` (ints: the parts every path uses), ``layer_params`` and
    ``layer_macs`` (one ``int64`` array per layer, index = choice), ``image_size`` (the size the MACs
    were measured at, informative; ``None`` if unknown).

    >>> t = CostTable(10, 100, [[1, 2], [3, 4, 5]], [[10, 20], [30, 40, 50]], image_size=32)
    >>> t.params((1, 2)), t.macs((0, 0))
    (17, 140)
    >>> t.constraint(max_params=15)((1, 2)), t.constraint(max_params=15)((0, 0))
    (False, True)
    """

    base_params: int = attrs.field(converter=int)
    base_macs: int = attrs.field(converter=int)
    layer_params: tuple[np.ndarray, ...] = attrs.field(converter=_as_table, validator=_validate_rows)
    layer_macs: tuple[np.ndarray, ...] = attrs.field(converter=_as_table, validator=_validate_rows)
    image_size: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))

    def __attrs_post_init__(self) -> None:
        if [len(r) for r in self.layer_params] != [len(r) for r in self.layer_macs]:
            raise ConfigError("cost table: layer_params and layer_macs must have the same shape")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CostTable):
            return NotImplemented
        return (
            (self.base_params, self.base_macs, self.image_size) == (other.base_params, other.base_macs, other.image_size)
            and self.n_choices == other.n_choices
            and all(np.array_equal(a, b) for a, b in zip(self.layer_params, other.layer_params))
            and all(np.array_equal(a, b) for a, b in zip(self.layer_macs, other.layer_macs))
        )

    def __hash__(self) -> int:
        return hash((self.base_params, self.base_macs, self.image_size, tuple(map(bytes, self.layer_macs))))

    def __len__(self) -> int:
        return len(self.layer_params)

    @property
    def n_choices(self) -> tuple[int, ...]:
        """Number of choices of every layer."""
        return tuple(len(r) for r in self.layer_params)

    def _check(self, arch: Iterable[Any]) -> Arch:
        a = tuple(int(c) for c in arch)
        if len(a) != len(self.layer_params) or any(not 0 <= c < n for c, n in zip(a, self.n_choices)):
            raise ArchitectureError(
                f"architecture {list(a)} does not fit this cost table ({len(self)} layers with "
                f"{list(self.n_choices)} choices)"
            )
        return a

    def params(self, arch: Iterable[Any]) -> int:
        """Parameters of the path ``arch``."""
        a = self._check(arch)
        return self.base_params + int(sum(int(row[c]) for row, c in zip(self.layer_params, a)))

    def macs(self, arch: Iterable[Any]) -> int:
        """Multiply-accumulates of one forward of the path ``arch`` at :attr:`image_size`."""
        a = self._check(arch)
        return self.base_macs + int(sum(int(row[c]) for row, c in zip(self.layer_macs, a)))

    def cost(self, arch: Iterable[Any]) -> tuple[int, int]:
        """``(params, macs)`` of ``arch``."""
        return self.params(arch), self.macs(arch)

    def bounds(self) -> dict[str, tuple[int, int]]:
        """Smallest and largest ``params`` and ``macs`` over the whole space (per-layer min / max).

        >>> CostTable(1, 0, [[1, 5], [2, 3]], [[0, 0], [0, 0]]).bounds()["params"]
        (4, 9)
        """
        return {
            "params": (self.base_params + sum(int(r.min()) for r in self.layer_params),
                       self.base_params + sum(int(r.max()) for r in self.layer_params)),
            "macs": (self.base_macs + sum(int(r.min()) for r in self.layer_macs),
                     self.base_macs + sum(int(r.max()) for r in self.layer_macs)),
        }  # fmt: skip

    def constraint(self, max_params: float | None = None, max_macs: float | None = None) -> CostConstraint:
        """A predicate ``arch -> bool`` (true when within both budgets) for the search policies."""
        return CostConstraint(self, max_params, max_macs)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (see :meth:`from_json`)."""
        return {
            "base_params": self.base_params,
            "base_macs": self.base_macs,
            "layer_params": [r.tolist() for r in self.layer_params],
            "layer_macs": [r.tolist() for r in self.layer_macs],
            "image_size": self.image_size,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CostTable:
        """The table saved by :meth:`to_json`."""
        try:
            return cls(
                obj["base_params"], obj["base_macs"], obj["layer_params"], obj["layer_macs"], obj.get("image_size")
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"not a cost table ({type(e).__name__}: {e}); write it with CostTable.save") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as JSON (atomically)."""
        from autopanoptic.io import atomic_write_text

        p = Path(path)
        atomic_write_text(p, json.dumps(self.to_json()) + "\n")
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CostTable:
        """Read a table written by :meth:`save`."""
        p = Path(path)
        try:
            obj = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: cost table not found; build it with build_cost_table and save it") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}); rebuild the cost table") from None
        try:
            return cls.from_json(obj)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None


@attrs.frozen
class CostConstraint:
    """``arch -> bool``: ``table.params(arch) <= max_params`` and ``table.macs(arch) <= max_macs``
    (a ``None`` budget is not checked). Picklable; ``name`` is recorded in search journals."""

    table: CostTable = attrs.field(repr=False)
    max_params: float | None = None
    max_macs: float | None = None

    @property
    def name(self) -> str:
        return f"cost(params<={self.max_params}, macs<={self.max_macs})"

    def __call__(self, arch: Iterable[Any]) -> bool:
        a = tuple(arch)
        if self.max_params is not None and self.table.params(a) > self.max_params:
            return False
        return self.max_macs is None or self.table.macs(a) <= self.max_macs


# --- measuring (torch from here on, imported lazily) ---------------------------------------------


def _is_counted_leaf(m: Any) -> bool:
    from torch import nn

    return callable(getattr(m, "count_macs", None)) or isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d))


def module_macs(module: Any, inputs: tuple, output: Any) -> int:
    """MACs of one call of a counted module (see the module docstring for the formulas).

    >>> import torch
    >>> conv = torch.nn.Conv2d(4, 8, 3, padding=1, groups=2)
    >>> module_macs(conv, (torch.zeros(1, 4, 5, 5),), torch.zeros(1, 8, 5, 5))
    3600
    """
    from torch import nn

    custom = getattr(module, "count_macs", None)
    if callable(custom):
        return int(custom(inputs, output))
    if isinstance(module, nn.ConvTranspose2d):
        k = int(np.prod(module.kernel_size))
        return int(inputs[0].numel()) * module.out_channels // module.groups * k
    if isinstance(module, nn.Conv2d):
        k = int(np.prod(module.kernel_size))
        return int(output.numel()) * module.in_channels // module.groups * k
    if isinstance(module, nn.Linear):
        return int(output.numel()) * module.in_features
    raise TypeError(f"no MAC formula for {type(module).__name__}; define count_macs(inputs, output) on it")


def _counted_leaves(root: Any) -> list[tuple[str, Any]]:
    """Counted modules below ``root`` (a module with ``count_macs`` hides its children)."""
    out = []

    def walk(prefix: str, m: Any) -> None:
        if _is_counted_leaf(m):
            out.append((prefix, m))
            return
        for name, child in m.named_children():
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", root)
    return out


class _MacMeter:
    """Forward hooks on every counted module; MACs accumulate into ``totals[owner]``."""

    def __init__(self, model: Any, owner_of: Callable[[Any], Any] = lambda m: None):
        self.totals: dict[Any, int] = {}
        self.handles = []
        for _, m in _counted_leaves(model):
            key = owner_of(m)
            self.handles.append(m.register_forward_hook(self._hook(key)))

    def _hook(self, key: Any):
        def hook(module, inputs, output):
            self.totals[key] = self.totals.get(key, 0) + module_macs(module, inputs, output)

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def image_forward(image_size: int, batch: int = 1) -> Callable[[Any, Any], Any]:
    """``run_forward(model, arch)`` doing ``model(zeros(batch, 3, S, S), arch)`` (``arch`` omitted
    when ``None``) on the model's device, without gradients."""

    def run(model: Any, arch: Any) -> Any:
        import torch

        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        x = torch.zeros(batch, 3, image_size, image_size, device=device)
        with torch.no_grad():
            return model(x) if arch is None else model(x, arch)

    run.image_size = image_size  # type: ignore[attr-defined]
    return run


def covering_archs(n_choices: Sequence[int]) -> list[Arch]:
    """``max(n_choices)`` architectures that together use every choice of every layer
    (architecture ``j`` takes choice ``j mod n`` in a layer of ``n`` choices).

    >>> covering_archs([2, 3])
    [(0, 0), (1, 1), (0, 2)]
    """
    m = max(n_choices)
    return [tuple(j % n for n in n_choices) for j in range(m)]


def _n_params(params: Iterable[Any], seen: set[int]) -> int:
    total = 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def build_cost_table(
    model: Any,
    run_forward: Callable[[Any, Arch], Any],
    n_layers: int | None = None,
    *,
    archs: Sequence[Arch] | None = None,
    image_size: int | None = None,
    full_arch: Callable[[Arch], Any] | None = None,
) -> CostTable:
    """Measure the :class:`CostTable` of ``model`` (anything exposing ``layer_choices``: one sequence
    of candidate modules per searchable layer, index = choice).

    Args:
        model: the supernet; it is used as given (call it on a ``meta``-device copy to avoid all
            arithmetic: see :func:`cost_table_for`).
        run_forward: ``run_forward(model, arch)`` runs one forward of the path ``arch`` at the image
            size to count (e.g. :func:`image_forward` or ``lambda m, a: m.cost_forward(a, 512)``).
        n_layers: number of searchable layers (default ``len(model.layer_choices)``).
        archs: the architectures to run (default :func:`covering_archs`); together they must use
            every choice of every layer.
        image_size: recorded in the table (default ``run_forward.image_size`` if set).
        full_arch: maps a table architecture to what ``run_forward`` expects (default identity).

    Parameters of layer ``l`` choice ``c`` are those of ``model.layer_choices[l][c]``; every other
    parameter is ``base``. MACs of ``(l, c)`` are those of hooked modules inside that candidate during
    a forward whose architecture picks ``c``; every other MAC is ``base``. A :class:`ConfigError`
    is raised if the measurements are not additive (a choice or the base costing differently in
    two forwards), which would mean a layer's input shape depends on other layers' choices.
    """
    layers = list(model.layer_choices)
    n = len(layers) if n_layers is None else int(n_layers)
    if n != len(layers):
        raise ConfigError(f"n_layers={n} but the model exposes {len(layers)} layer_choices")
    n_choices = [len(layer) for layer in layers]
    owner: dict[int, tuple[int, int]] = {}
    for l, layer in enumerate(layers):
        for c, cand in enumerate(layer):
            for m in cand.modules():
                owner.setdefault(id(m), (l, c))

    seen: set[int] = set()
    layer_params = [[_n_params(cand.parameters(), seen) for cand in layer] for layer in layers]
    base_params = _n_params(model.parameters(), seen)

    meter = _MacMeter(model, lambda m: owner.get(id(m)))
    macs: list[list[int | None]] = [[None] * k for k in n_choices]
    base_macs: int | None = None
    run_archs = list(covering_archs(n_choices) if archs is None else archs)
    try:
        for arch in run_archs:
            arch = tuple(int(c) for c in arch)
            meter.totals = {}
            run_forward(model, full_arch(arch) if full_arch else arch)
            totals = dict(meter.totals)
            base = totals.pop(None, 0)
            if base_macs is not None and base != base_macs:
                raise ConfigError(f"the shared part cost {base_macs} then {base} MACs: the forward is not additive")
            base_macs = base
            stray = [key for key in totals if key[1] != arch[key[0]]]
            if stray:
                l, c = stray[0]
                raise ConfigError(f"layer {l} choice {c} ran although the architecture chose {arch[l]}")
            for l, c in enumerate(arch):
                got = totals.get((l, c), 0)
                if macs[l][c] is not None and macs[l][c] != got:
                    raise ConfigError(f"layer {l} choice {c} cost {macs[l][c]} then {got} MACs: not additive")
                macs[l][c] = got
    finally:
        meter.close()
    missing = [(l, c) for l, row in enumerate(macs) for c, v in enumerate(row) if v is None]
    if missing:
        raise ConfigError(f"the given archs never use layer {missing[0][0]} choice {missing[0][1]}; pass covering archs")
    size = image_size if image_size is not None else getattr(run_forward, "image_size", None)
    return CostTable(base_params, base_macs or 0, layer_params, macs, image_size=size)


def count_direct(model: Any, run_forward: Callable[[Any, Any], Any], arch: Any = None) -> tuple[int, int]:
    """``(params, macs)`` of a network as it is (all its parameters; MACs of one ``run_forward``).

    >>> from autopanoptic.nn.backbone import ShuffleNetBackbone
    >>> net = ShuffleNetBackbone((0,) * 5, (1, 1, 2, 1), (8, 16, 24, 32, 48)).eval()
    >>> count_direct(net, image_forward(32))[0] == sum(p.numel() for p in net.parameters())
    True
    """
    meter = _MacMeter(model)
    try:
        run_forward(model, arch)
    finally:
        meter.close()
    return _n_params(model.parameters(), set()), int(meter.totals.get(None, 0))


def _default_forward(model: Any, image_size: int) -> Callable[[Any, Any], Any]:
    if callable(getattr(model, "cost_forward", None)):

        def run(m: Any, arch: Any) -> Any:
            return m.cost_forward(arch, image_size)

        run.image_size = image_size  # type: ignore[attr-defined]
        return run
    return image_forward(image_size)


def _shapes(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def _meta_copy(model: Any) -> Any:
    """A copy of ``model`` on the ``meta`` device (shapes only), or ``None`` if that fails.

    A model with a ``config`` attribute is rebuilt from it on the meta device (no copy of the
    weights) when that gives the same state-dict shapes; otherwise it is deep-copied and moved."""
    import torch

    config = getattr(model, "config", None)
    if config is not None:
        try:
            with torch.device("meta"):
                clone = type(model)(config)
            if _shapes(clone) == _shapes(model):
                return clone
        except Exception:
            pass
    try:
        return copy.deepcopy(model).to("meta")
    except Exception:
        return None


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PRESET_TABLES: dict[tuple[str, int, int, int], CostTable] = {}


def cost_table_for(model: Any, image_size: int, *, meta: bool = True) -> CostTable:
    """The (cached) :class:`CostTable` of a supernet at ``image_size``, using its
    ``cost_forward(arch, image_size)`` if it has one, else a ``1 x 3 x S x S`` image. Measured on a
    ``meta``-device copy when ``meta`` (no arithmetic), falling back to the model itself (in eval
    mode, no gradients) if an op has no meta kernel. The cache assumes the model's structure is not
    changed afterwards.
    """
    import torch

    per_model = _TABLES.setdefault(model, {})
    size = int(image_size)
    if size in per_model:
        return per_model[size]
    table = None
    if meta:
        clone = _meta_copy(model)
        if clone is not None:
            clone.eval()
            try:
                table = build_cost_table(clone, _default_forward(clone, size), image_size=size)
            except (NotImplementedError, RuntimeError):
                table = None
    if table is None:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                table = build_cost_table(model, _default_forward(model, size), image_size=size)
        finally:
            model.train(was_training)
    per_model[size] = table
    return table


def count(
    model: Any,
    arch: Any = None,
    image_size: int = 224,
    *,
    num_thing_classes: int = 80,
    num_stuff_classes: int = 53,
) -> tuple[int, int]:
    """``(params, macs)`` of the path ``arch`` at ``image_size`` x ``image_size`` pixels.

    ``model`` is a supernet (anything with ``layer_choices``: counted through its cached
    :class:`CostTable`), a standalone network (``arch`` ignored: counted directly), or a preset
    name of :func:`autopanoptic.nn.build_supernet` (built on the ``meta`` device with
    ``num_thing_classes`` / ``num_stuff_classes``, COCO's by default). Counting runs on a
    ``meta``-device copy (shapes only, no arithmetic) whenever the model's ops allow it.

    >>> from autopanoptic.nn.backbone import ShuffleNetSupernet
    >>> net = ShuffleNetSupernet((1, 1, 2, 1), (8, 16, 24, 32, 48))
    >>> count(net, (0, 1, 2, 3, 0), 64) == count(net.extract((0, 1, 2, 3, 0)), None, 64)
    True
    """
    import torch

    size = int(image_size)
    if isinstance(model, str):
        key = (model, num_thing_classes, num_stuff_classes, size)
        if key not in _PRESET_TABLES:
            from autopanoptic.nn.supernet import build_supernet

            with torch.device("meta"):
                net = build_supernet(model, num_thing_classes, num_stuff_classes)
            net.eval()
            _PRESET_TABLES[key] = build_cost_table(net, _default_forward(net, size), image_size=size)
        table = _PRESET_TABLES[key]
        return table.params(arch), table.macs(arch)
    if getattr(model, "layer_choices", None) is not None:
        if arch is None:
            raise ArchitectureError("counting a supernet needs an architecture: one choice per searchable layer")
        table = cost_table_for(model, size)
        return table.params(arch), table.macs(arch)
    clone = _meta_copy(model)
    if clone is not None:
        clone.eval()
        try:
            return count_direct(clone, _default_forward(clone, size), None)
        except (NotImplementedError, RuntimeError):
            pass
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return count_direct(model, _default_forward(model, size), None)
    finally:
        model.train(was_training)
