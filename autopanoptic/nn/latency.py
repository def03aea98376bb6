"""Measured inference latency of any architecture: a lookup table per device, and its predictor.

Like parameters and MACs (:mod:`autopanoptic.nn.counting`), the time of one forward pass is modelled
as additive over the searchable layers:

    latency(arch) = fixed_ms + scale * sum over layers l of layer_ms[l][arch[l]]

:func:`build_latency_table` measures it on the device at hand, in inference mode (``eval()``, no
autograd), batch 1, with a fixed number of CPU threads:

- ``layer_ms[l][c]``: the candidate module ``c`` of layer ``l`` timed *in isolation on the exact
  inputs it receives in its place in the network* (recorded by hooks during one real forward of the
  supernet on that path; the semantic subnet's layers run once per FPN level, the mask head's on the
  detections of that forward). Warm-up calls, then the median of ``repeats`` timings.
- ``fixed_ms`` (and ``scale``): whatever every path pays besides its searchable ops -- stem, FPN,
  RPN, RoI heads, the residual attention products, fusion, Python overhead -- measured as one fixed
  cost: a few standalone networks (:func:`~autopanoptic.nn.standalone.build_network`) are timed end
  to end (median of ``repeats`` forwards, outputs included) and ``fixed_ms = median(end_to_end -
  sum of their ops)``. With enough calibration networks a linear correction ``end_to_end ~ fixed_ms
  + scale * ops`` is fitted by least squares instead (``scale`` 1 otherwise): it absorbs what
  timing an op alone gets systematically wrong (caches warm in isolation, per-call overhead).

Why ops in isolation rather than differences of whole networks (swapping one layer's op against a
reference path): a difference of two end-to-end timings carries the noise of the whole network in
every entry of the table, which for the tiny preset is larger than most ops' own time (an attention
block takes microseconds, the network tens of milliseconds); timing an op alone on its real inputs
carries only its own noise, and the calibrated fixed cost absorbs the cross-effects as one number.
The end-to-end check (:func:`check_latency`, ``autopanoptic latency check``) says how well it
predicts.

Timings are of a process in its steady state: CPU memory is primed first (see
``_prime_allocator``: glibc's allocator otherwise serves a fresh process's large tensors from new
``mmap`` pages, 10-15% slower on the tiny preset).

The :class:`LatencyTable` is a frozen, torch-free value keyed by what the timings depend on (device
name, torch version, image size, thread count, the network's preset, widths and class counts, the
search space's layers and ops); it is saved as JSON (atomically) and loading never executes code.
:meth:`LatencyTable.require` refuses a table measured under other conditions with one clear line;
:meth:`LatencyTable.predict` is a pure function of the architecture, cheap enough to be a search
constraint (:meth:`LatencyTable.constraint`) or objective.

>>> t = LatencyTable(key=LatencyKey("cpu: test", "2.5", (64, 64), 1, "tiny", (8, 16, 24, 32, 48), 2, 3,
...                                 (("l0", ("a", "b")), ("l1", ("a", "b", "c")))),
...                  fixed_ms=10.0, layer_ms=[[1.0, 2.0], [0.5, 1.5, 3.0]])
>>> t.predict((1, 2))
15.0
>>> LatencyTable.from_json(t.to_json()) == t
True
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from autopanoptic.errors import ArchitectureError, ConfigError

__all__ = [
    "LatencyCheck",
    "LatencyKey",
    "LatencyTable",
    "build_latency_table",
    "check_latency",
    "device_name",
    "measure_network_ms",
]

Arch = tuple[int, ...]
FORMAT = "autopanoptic-latency-table/1"


def _hw(value: Any) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    h, w = (int(v) for v in value)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    return h, w


def _layers(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((str(name), tuple(str(o) for o in ops)) for name, ops in value)


@attrs.frozen
class LatencyKey:
    """What a latency table's timings depend on; two tables are comparable only if their keys match.

    ``device`` is a readable device name (:func:`device_name`), ``image_size`` ``(H, W)``,
    ``threads`` the PyTorch CPU threads, ``layers`` the search space as ``(layer name, op names)``.
    """

    device: str = attrs.field(converter=str)
    torch_version: str = attrs.field(converter=str)
    image_size: tuple[int, int] = attrs.field(converter=_hw)
    threads: int = attrs.field(converter=int)
    preset: str = attrs.field(converter=str)
    widths: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    num_thing_classes: int = attrs.field(converter=int)
    num_stuff_classes: int = attrs.field(converter=int)
    layers: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(converter=_layers, repr=False)

    def describe(self) -> str:
        """One line: device, torch, image size, threads, network."""
        h, w = self.image_size
        return (f"{self.device}, torch {self.torch_version}, {h}x{w} px, {self.threads} thread(s), preset "
                f"{self.preset} widths {list(self.widths)}")


def _rows(value: Any) -> tuple[np.ndarray, ...]:
    rows = tuple(np.asarray(row, dtype=np.float64).reshape(-1) for row in value)
    for row in rows:
        row.setflags(write=False)
    return rows


def _finite_non_negative_rows(instance: Any, attribute: attrs.Attribute, value: tuple[np.ndarray, ...]) -> None:
    if any(len(r) < 1 or not np.isfinite(r).all() or (r < 0).any() for r in value):
        raise ValueError("latency table: every layer needs at least one finite, non-negative time")


def _finite(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not np.isfinite(value):
        raise ValueError(f"latency table: {attribute.name} must be finite, got {value!r}")


@attrs.frozen(eq=False)
class LatencyTable:
    """Additive latency model of one network on one device (milliseconds); see the module docstring.

    Fields: ``key`` (:class:`LatencyKey`), ``fixed_ms``, ``layer_ms`` (one array per layer, index =
    choice), ``scale`` (the fitted linear correction, 1 = none), ``repeats`` and ``calibration``
    (the calibration networks: ``[{"arch", "measured_ms"}]``, for the record).
    """

    key: LatencyKey
    fixed_ms: float = attrs.field(converter=float, validator=_finite)
    layer_ms: tuple[np.ndarray, ...] = attrs.field(converter=_rows, validator=_finite_non_negative_rows)
    scale: float = attrs.field(default=1.0, converter=float, validator=_finite)
    repeats: int = attrs.field(default=0, converter=int)
    calibration: tuple[tuple[Arch, float], ...] = attrs.field(
        default=(), converter=lambda v: tuple((tuple(int(c) for c in a), float(ms)) for a, ms in v))

    def __attrs_post_init__(self) -> None:
        ops = [len(o) for _, o in self.key.layers]
        if ops != [len(r) for r in self.layer_ms]:
            raise ValueError(f"latency table: layer_ms has {[len(r) for r in self.layer_ms]} choices per layer, "
                             f"the key's search space {ops}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyTable):
            return NotImplemented
        return (
            (self.key, self.fixed_ms, self.scale, self.repeats, self.calibration)
            == (other.key, other.fixed_ms, other.scale, other.repeats, other.calibration)
            and len(self.layer_ms) == len(other.layer_ms)
            and all(np.array_equal(a, b) for a, b in zip(self.layer_ms, other.layer_ms))
        )

    def __hash__(self) -> int:
        return hash((self.key, self.fixed_ms, self.scale, tuple(map(bytes, self.layer_ms))))

    def __len__(self) -> int:
        return len(self.layer_ms)

    @property
    def n_choices(self) -> tuple[int, ...]:
        return tuple(len(r) for r in self.layer_ms)

    def ops_ms(self, arch: Iterable[Any]) -> float:
        """Sum of the table's entries for ``arch`` (its searchable ops alone, uncorrected)."""
        a = tuple(int(c) for c in arch)
        if len(a) != len(self) or any(not 0 <= c < n for c, n in zip(a, self.n_choices)):
            raise ArchitectureError(f"architecture {list(a)} does not fit this latency table ({len(self)} layers "
                                    f"with {list(self.n_choices)} choices)")
        return float(sum(float(row[c]) for row, c in zip(self.layer_ms, a)))

    def predict(self, arch: Iterable[Any]) -> float:
        """Predicted end-to-end latency of ``arch`` in milliseconds: ``fixed_ms + scale * ops_ms``."""
        return self.fixed_ms + self.scale * self.ops_ms(arch)

    __call__ = predict

    def bounds(self) -> tuple[float, float]:
        """Fastest and slowest prediction over the whole space (per-layer min / max)."""
        lo = sum(float(r.min()) for r in self.layer_ms)
        hi = sum(float(r.max()) for r in self.layer_ms)
        return self.fixed_ms + self.scale * lo, self.fixed_ms + self.scale * hi

    def constraint(self, max_ms: float) -> LatencyConstraint:
        """A predicate ``arch -> bool`` (predicted latency <= ``max_ms``) for the search policies."""
        return LatencyConstraint(self, float(max_ms))

    # ---- compatibility ------------------------------------------------------------------------
    def require(self, **expected: Any) -> LatencyTable:
        """``self`` if every given :class:`LatencyKey` field equals ``expected``; else a
        :class:`ConfigError` naming every difference (e.g. a table of another device).

        >>> t = LatencyTable(LatencyKey("cpu: a", "2.5", 32, 1, "tiny", (2,) * 5, 1, 1, [("l", ("x",))]), 1.0, [[1.0]])
        >>> t.require(device="cpu: b", image_size=(32, 32))
        Traceback (most recent call last):
        ...
        autopanoptic.errors.ConfigError: the latency table was measured for device 'cpu: a', not 'cpu: b'; build one here with `autopanoptic latency build`
        """
        diffs = []
        for name, want in expected.items():
            field = attrs.fields_dict(LatencyKey)[name]
            want = field.converter(want) if field.converter is not None else want
            have = getattr(self.key, name)
            if have != want:
                shown = "the search space's layers and ops" if name == "layers" else None
                diffs.append(f"{shown} differ" if shown else f"{name.replace('_', ' ')} {have!r}, not {want!r}")
        if diffs:
            raise ConfigError(f"the latency table was measured for {'; '.join(diffs)}; build one here with "
                              "`autopanoptic latency build`")
        return self

    def require_network(self, config: Any, space: Any) -> LatencyTable:
        """:meth:`require` the network of ``config`` (a ``SupernetConfig``) and its search ``space``."""
        return self.require(preset=config.preset, widths=config.widths, num_thing_classes=config.num_thing_classes,
                            num_stuff_classes=config.num_stuff_classes, layers=_space_layers(space))

    # ---- files --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (see :meth:`from_json`)."""
        k = self.key
        return {
            "format": FORMAT,
            "key": {"device": k.device, "torch_version": k.torch_version, "image_size": list(k.image_size),
                    "threads": k.threads, "preset": k.preset, "widths": list(k.widths),
                    "num_thing_classes": k.num_thing_classes, "num_stuff_classes": k.num_stuff_classes,
                    "layers": [[name, list(ops)] for name, ops in k.layers]},
            "fixed_ms": self.fixed_ms,
            "scale": self.scale,
            "layer_ms": [r.tolist() for r in self.layer_ms],
            "repeats": self.repeats,
            "calibration": [{"arch": list(a), "measured_ms": ms} for a, ms in self.calibration],
        }

    @classmethod
    def from_json(cls, obj: Any) -> LatencyTable:
        """The table written by :meth:`to_json` (a :class:`ConfigError` for anything else)."""
        try:
            if obj.get("format") != FORMAT:
                raise ValueError(f"format {obj.get('format')!r}, expected {FORMAT!r}")
            return cls(
                key=LatencyKey(**obj["key"]), fixed_ms=obj["fixed_ms"], layer_ms=obj["layer_ms"], scale=obj["scale"],
                repeats=obj.get("repeats", 0),
                calibration=[(c["arch"], c["measured_ms"]) for c in obj.get("calibration", [])],
            )
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"not a latency table ({type(e).__name__}: {e}); build one with "
                              "`autopanoptic latency build`") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as JSON (atomically)."""
        from autopanoptic.io import atomic_write_json

        return atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        """Read a table written by :meth:`save` (plain JSON: nothing in it is executed)."""
        p = Path(path)
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: latency table not found; build one with `autopanoptic latency build`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not a latency table (not valid JSON: {e})") from None
        try:
            return cls.from_json(obj)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None


@attrs.frozen
class LatencyConstraint:
    """``arch -> bool``: predicted latency at most ``max_ms``. Picklable; ``name`` goes into journals."""

    table: LatencyTable = attrs.field(repr=False)
    max_ms: float

    @property
    def name(self) -> str:
        return f"latency(<={self.max_ms} ms)"

    def __call__(self, arch: Iterable[Any]) -> bool:
        return self.table.predict(arch) <= self.max_ms


def _space_layers(space: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((layer.name, tuple(layer.ops)) for layer in space.layers)


def fit_correction(ops_ms: Sequence[float], measured_ms: Sequence[float], *, min_points: int = 8) -> tuple[float, float]:
    """``(fixed_ms, scale)`` with ``measured ~ fixed_ms + scale * ops_ms``: least squares of the
    *relative* residuals (so that slow networks do not dominate) when there are at least
    ``min_points`` networks whose ops differ and the slope comes out positive, else
    ``scale = 1`` and ``fixed_ms`` the median of ``measured - ops`` (robust to one slow outlier).

    >>> fit_correction([1.0, 2.0], [11.0, 12.5])
    (10.25, 1.0)
    >>> fit_correction([1, 2, 3, 4, 5, 6, 7, 8], [12, 14, 16, 18, 20, 22, 24, 26])
    (10.0, 2.0)
    """
    x = np.asarray(ops_ms, dtype=float)
    y = np.asarray(measured_ms, dtype=float)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("fit_correction needs as many measured networks as op sums, at least one")
    if len(x) >= min_points and np.ptp(x) > 0:
        scale, fixed = np.polyfit(x, y, 1, w=1.0 / np.maximum(np.abs(y), 1e-9))
        if scale > 0:
            return float(round(fixed, 9)), float(round(scale, 9))
    return float(np.median(y - x)), 1.0


# --- measuring (torch from here on, imported lazily) ---------------------------------------------


def device_name(device: Any) -> str:
    """A readable name of ``device`` for table keys: ``"cuda: <GPU name>"`` or ``"cpu: <CPU model>"``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{dev.type}: {model or platform.processor() or platform.machine()}"


def _sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _prime_allocator() -> None:
    """Allocate, touch and free one 30 MiB CPU buffer: glibc's ``malloc`` then raises its ``mmap``
    threshold (up to 32 MiB), so later large tensors come from the heap instead of fresh ``mmap``
    pages -- the steady state of a long-running process. Without it the first networks timed in a
    fresh process ran 10-15% slower than the same networks after any large allocation (measured on
    the tiny preset), and a table and its check would disagree by that much."""
    import torch

    buf = torch.empty(30 * 2**20 // 4)
    buf.fill_(0.0)
    del buf


def _median_ms(call: Callable[[], Any], device: Any, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def latency_image(image_size: Any, device: Any = "cpu", seed: int = 0):
    """The fixed ``3 x H x W`` image every latency measurement uses (uniform noise, seeded)."""
    import torch

    h, w = _hw(image_size)
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)).to(device)


def measure_network_ms(net: Any, image: Any, *, device: Any = "cpu", warmup: int = 3, repeats: int = 15) -> float:
    """Median end-to-end time (ms) of ``net([image])`` in inference mode (``net`` is put in eval
    mode on ``device``): the forward pass with fusion, as deployed."""
    import torch

    net.eval().to(device)
    with torch.inference_mode():
        return _median_ms(lambda: net([image]), device, warmup, repeats)


def _record_inputs(supernet: Any, archs: Sequence[Arch], image: Any) -> dict[tuple[int, int], list[tuple]]:
    """For every (layer, choice) used by ``archs``: the calls ``(args, kwargs)`` its candidate module
    received during one eval forward of the first path using it (inputs detached, kept on device)."""
    import torch

    calls: dict[tuple[int, int], list[tuple]] = {}
    handles = []
    current: dict[tuple[int, int], list[tuple]] = {}

    def hook_for(key):
        def hook(module, args, kwargs):
            if key not in calls:
                current.setdefault(key, []).append((args, kwargs))

        return hook

    for l, layer in enumerate(supernet.layer_choices):
        for c, cand in enumerate(layer):
            handles.append(cand.register_forward_pre_hook(hook_for((l, c)), with_kwargs=True))
    try:
        with torch.inference_mode():
            for arch in archs:
                current.clear()
                supernet([image], arch=arch)
                for key, recorded in current.items():
                    calls.setdefault(key, recorded)
    finally:
        for h in handles:
            h.remove()
    return calls


def build_latency_table(
    supernet: Any,
    image_size: Any,
    *,
    device: Any = "cpu",
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 15,
    calibrate: int = 8,
    seed: int = 0,
    calibration_archs: Sequence[Arch] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LatencyTable:
    """Measure the :class:`LatencyTable` of ``supernet`` (a ``PanopticSupernet``) on ``device``.

    Args:
        image_size: ``(H, W)`` (or one side) of the single input image.
        threads: PyTorch CPU threads during the measurement (set here, restored afterwards).
        warmup, repeats: untimed calls, then timed ones whose median is kept.
        calibrate: random standalone networks (``seed``) timed end to end, besides the
            :func:`~autopanoptic.nn.counting.covering_archs` ones, to fit ``fixed_ms`` / ``scale``.
        calibration_archs: the networks to time besides the covering ones, instead of random ones
            (e.g. random ones of the space the search samples, so that the fit is made where it is used).
        progress: called with a short message before each stage.

    The supernet's weights (e.g. freshly initialised) only matter through what the heads detect:
    the mask head is timed on the detections of the recording forward.
    """
    import torch

    from autopanoptic.nn.counting import covering_archs
    from autopanoptic.nn.standalone import build_network

    say = progress or (lambda msg: None)
    space = supernet.search_space
    size = _hw(image_size)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    _prime_allocator()
    try:
        supernet.eval().to(device)
        image = latency_image(size, device)
        archs = [space.validate(a) for a in covering_archs(space.n_choices)]
        say(f"recording the inputs of every op ({len(archs)} forwards)")
        calls = _record_inputs(supernet, archs, image)
        layer_ms: list[list[float]] = []
        with torch.inference_mode():
            for l, layer in enumerate(supernet.layer_choices):
                say(f"timing layer {l + 1}/{len(space)} ({space.layers[l].name})")
                row = []
                for c, cand in enumerate(layer):
                    recorded = calls.get((l, c), [])

                    def call(cand=cand, recorded=recorded):
                        for args, kwargs in recorded:
                            cand(*args, **kwargs)

                    row.append(_median_ms(call, device, warmup, repeats))
                layer_ms.append(row)
        if calibration_archs is None:
            rng = np.random.default_rng(seed)
            calibration_archs = [space.sample(rng) for _ in range(calibrate)]
        # the covering networks span the whole space (every op, the slowest included): the fit holds
        # over all of it, not only where the random ones fall
        calibration_archs = archs + [space.validate(a) for a in calibration_archs]
        measured = []
        for i, arch in enumerate(calibration_archs):
            say(f"timing calibration network {i + 1}/{len(calibration_archs)} end to end")
            net = build_network(supernet.config, arch)
            measured.append((arch, measure_network_ms(net, image, device=device, warmup=warmup, repeats=repeats)))
    finally:
        torch.set_num_threads(old_threads)
    cfg = supernet.config
    key = LatencyKey(device_name(device), torch.__version__, size, threads, cfg.preset, cfg.widths,
                     cfg.num_thing_classes, cfg.num_stuff_classes, _space_layers(space))
    plain = LatencyTable(key, 0.0, layer_ms)
    fixed, scale = fit_correction([plain.ops_ms(a) for a, _ in measured], [ms for _, ms in measured])
    return attrs.evolve(plain, fixed_ms=fixed, scale=scale, repeats=repeats, calibration=measured)


@attrs.frozen
class LatencyCheck:
    """Predicted against measured end-to-end latency of some networks (:func:`check_latency`)."""

    archs: tuple[Arch, ...]
    predicted_ms: tuple[float, ...]
    measured_ms: tuple[float, ...]

    @property
    def relative_errors(self) -> tuple[float, ...]:
        """``|predicted - measured| / measured`` per network."""
        return tuple(abs(p - m) / m for p, m in zip(self.predicted_ms, self.measured_ms))

    @property
    def median_error(self) -> float:
        return float(np.median(self.relative_errors))

    @property
    def worst_error(self) -> float:
        return float(max(self.relative_errors))

    @property
    def worst_under(self) -> float:
        """The largest ``measured / predicted - 1`` (0 if the table never under-predicts): the
        ``search.latency_margin`` that keeps every one of these networks' measured latency within a
        budget that its prediction meets."""
        return float(max(0.0, *(m / p - 1 for p, m in zip(self.predicted_ms, self.measured_ms))))

    @property
    def bias(self) -> float:
        """Median of ``(predicted - measured) / measured`` (positive: the table over-predicts)."""
        return float(np.median([(p - m) / m for p, m in zip(self.predicted_ms, self.measured_ms)]))

    def summary(self) -> str:
        """One line: networks, median and worst relative error, bias."""
        return (f"{len(self.archs)} networks: median relative error {100 * self.median_error:.1f}%, worst "
                f"{100 * self.worst_error:.1f}%, bias {100 * self.bias:+.1f}%; worst under-prediction "
                f"{100 * self.worst_under:.1f}% (search.latency_margin={self.worst_under:.3f} keeps them within a budget)")


def check_latency(
    table: LatencyTable,
    config: Any,
    archs: Sequence[Arch],
    *,
    device: Any = "cpu",
    warmup: int = 3,
    repeats: int = 15,
    progress: Callable[[str], None] | None = None,
) -> LatencyCheck:
    """Time the standalone network of every ``arch`` (``config``: its ``SupernetConfig``) end to end
    on ``device`` under the table's image size and threads, and compare with ``table.predict``.
    The table must have been measured here (same device and torch version): :meth:`LatencyTable.require`.
    """
    import torch

    from autopanoptic.nn.standalone import build_network

    table.require(device=device_name(device), torch_version=torch.__version__)
    table.require_network(config, config.search_space())
    say = progress or (lambda msg: None)
    image = latency_image(table.key.image_size, device)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(table.key.threads)
    _prime_allocator()
    measured = []
    try:
        for i, arch in enumerate(archs):
            say(f"timing network {i + 1}/{len(archs)} end to end")
            net = build_network(config, arch)
            measured.append(measure_network_ms(net, image, device=device, warmup=warmup, repeats=repeats))
    finally:
        torch.set_num_threads(old_threads)
    archs = tuple(tuple(int(c) for c in a) for a in archs)
    return LatencyCheck(archs, tuple(table.predict(a) for a in archs), tuple(measured))
