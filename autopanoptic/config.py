"""Run configuration: frozen attrs values, YAML load / save, presets and ``key=value`` overrides.

A :class:`Config` holds everything one run needs, in sections: ``data``, ``model``, ``train``
(supernet training), ``search``, ``retrain``, ``eval`` and ``log``. It is never global: commands build one
and pass it explicitly. Presets ship as YAML files in ``autopanoptic/configs/`` (``tiny``,
``paper-coco``, ``paper-ade20k``).

>>> cfg = load_config("tiny", overrides=["train.lr=0.01"])
>>> cfg.train.lr
0.01
>>> load_config("tiny", overrides=["train.lrr=0.01"])
Traceback (most recent call last):
...
autopanoptic.errors.ConfigError: unknown config key 'train.lrr' (from --set); known keys in 'train': amp, batch_size, checkpoint_every, gamma, holdout_val, lr, milestones, momentum, parallel, schedule, seed, steps, warmup_steps, weight_decay
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from autopanoptic.errors import ConfigError
from autopanoptic.io import atomic_write_text

__all__ = [
    "OBJECTIVES",
    "PRESETS",
    "Config",
    "DataConfig",
    "EvalConfig",
    "LogConfig",
    "ModelConfig",
    "RetrainConfig",
    "SearchConfig",
    "TrainConfig",
    "apply_overrides",
    "config_defaults",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "preset_path",
    "save_config",
]

PRESETS: tuple[str, ...] = ("tiny", "tiny-truth", "paper-coco", "paper-ade20k")
"""Names of the configuration presets shipped with the package."""


# ---- validators -------------------------------------------------------------------------------
def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"must be > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"must be >= 0, got {value!r}")


def _fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"must be strictly between 0 and 1, got {value!r}")


def _one_of(*choices: Any):
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}; got {value!r}")

    return check


def _int_tuple(value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"must be a list of integers, got {value!r}")
    return tuple(int(v) for v in value)


def _str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"must be a list of names, got {value!r}")
    return tuple(str(v) for v in value)


def _sizes(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (int(value),)
    return _int_tuple(value)


def _all_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if any(v <= 0 for v in value):
        raise ValueError(f"sizes must be > 0, got {list(value)!r}")


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _controls(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"must be a number of control architectures (0, 1, ...) or auto, got {value!r}")
    return int(value)


def _frozen_mapping(value: Any) -> tuple[tuple[str, Any], ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), v) for k, v in value.items()))
    return tuple((str(k), v) for k, v in value)


OBJECTIVES: tuple[str, ...] = ("fitness", "latency", "macs", "params")
"""Names ``search.objectives`` may hold (``fitness`` first, then costs to minimise)."""


def _objectives(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return _str_tuple(value)


def _objectives_valid(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value or value[0] != "fitness":
        raise ValueError(f"must start with fitness, e.g. [fitness, latency]; got {list(value)!r}")
    bad = [v for v in value if v not in OBJECTIVES]
    if bad or len(set(value)) != len(value):
        raise ValueError(f"must be fitness followed by distinct names among latency, macs, params; got {list(value)!r}")


# ---- sections ---------------------------------------------------------------------------------
@attrs.frozen
class DataConfig:
    """Where the images come from and how they are split.

    ``root`` is a COCO-panoptic folder (``images/``, ``panoptic/``, ``panoptic.json`` by default;
    ``images``, ``json`` and ``pngs`` are paths relative to it); ``None``
    generates a synthetic dataset of ``synthetic_images`` images of ``synthetic_size`` pixels
    (``synthetic_style``: ``basic`` or ``hard``, see :mod:`autopanoptic.data.synthetic`) into the
    run folder. The evaluation split is ``eval_root`` if given, otherwise the last ``eval_fraction`` of
    ``root`` (by a seeded permutation). The search's validation split is carved out of what remains
    (the training data): ``val_fraction`` of it. The evaluation split is never used in training or
    search.

    ``min_size`` (``null``, a size, or a list of sizes for multi-scale training) and ``max_size``
    resize every image (shorter side ``min_size``, longer side at most ``max_size``;
    :mod:`autopanoptic.engine.resize`); ``null`` keeps images as they are. ``loader_workers``:
    ``torch.utils.data.DataLoader`` processes that prepare training and evaluation batches ahead, in order
    (:mod:`autopanoptic.engine.loader`; ``0`` = in the training loop).
    """

    root: str | None = attrs.field(default=None, converter=_opt_str)
    images: str = attrs.field(default="images", converter=str)
    json: str = attrs.field(default="panoptic.json", converter=str)
    pngs: str = attrs.field(default="panoptic", converter=str)
    kind: str = attrs.field(default="coco", validator=_one_of("coco", "ade20k"))
    eval_root: str | None = attrs.field(default=None, converter=_opt_str)
    eval_images: str = attrs.field(default="images", converter=str)
    eval_json: str = attrs.field(default="panoptic.json", converter=str)
    eval_pngs: str = attrs.field(default="panoptic", converter=str)
    eval_fraction: float = attrs.field(default=0.25, converter=float, validator=_fraction)
    val_fraction: float = attrs.field(default=0.25, converter=float, validator=_fraction)
    split_seed: int = attrs.field(default=0, converter=int)
    synthetic_images: int = attrs.field(default=64, converter=int, validator=_positive)
    synthetic_size: int = attrs.field(default=64, converter=int, validator=_positive)
    synthetic_seed: int = attrs.field(default=0, converter=int)
    synthetic_style: str = attrs.field(default="basic", validator=_one_of("basic", "hard"))
    flip: bool = attrs.field(default=True, converter=bool)
    min_size: tuple[int, ...] = attrs.field(default=(), converter=_sizes, validator=_all_positive)
    max_size: int | None = attrs.field(default=None, converter=attrs.converters.optional(int), validator=_positive)
    loader_workers: int = attrs.field(default=0, converter=int, validator=_non_negative)


@attrs.frozen
class ModelConfig:
    """Which network: a supernet preset of :func:`autopanoptic.nn.build_supernet`, overrides, and
    the ops never sampled (``exclude_ops``, e.g. the deformable convs on CPU; see docs/engine.md), and
    optionally pretrained backbone weights (a ``backbone.pt`` of ``autopanoptic pretrain-supernet``)
    loaded into the fresh supernet before training."""

    preset: str = attrs.field(default="tiny", converter=str)
    overrides: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_frozen_mapping)
    exclude_ops: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    backbone_weights: str | None = attrs.field(default=None, converter=_opt_str)


@attrs.frozen
class TrainConfig:
    """Strict-fair supernet training. One step = one strict-fair cycle of ``m`` architectures, each
    on its own batch of ``batch_size`` images, then one SGD step. ``amp``: mixed precision of the
    forward passes (``off``, ``bf16``, ``fp16``; :mod:`autopanoptic.engine.amp`). ``parallel``: how several workers
    share a step -- ``cycle`` deals the ``m`` passes to them, ``data`` slices every batch, ``sync`` slices
    it with BatchNorm over the whole batch (:mod:`autopanoptic.engine.parallel`; ``cycle`` does not change
    the result beyond float rounding). With ``holdout_val`` the
    supernet never sees the search-validation images (as SPOS kept its search images out of supernet
    training); the retrained network still uses every training image."""

    steps: int = attrs.field(default=30, converter=int, validator=_positive)
    batch_size: int = attrs.field(default=2, converter=int, validator=_positive)
    lr: float = attrs.field(default=0.02, converter=float, validator=_positive)
    momentum: float = attrs.field(default=0.9, converter=float, validator=_non_negative)
    weight_decay: float = attrs.field(default=1e-4, converter=float, validator=_non_negative)
    warmup_steps: int = attrs.field(default=0, converter=int, validator=_non_negative)
    schedule: str = attrs.field(default="cosine", validator=_one_of("cosine", "step", "constant"))
    milestones: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)
    gamma: float = attrs.field(default=0.1, converter=float, validator=_positive)
    checkpoint_every: int = attrs.field(default=10, converter=int, validator=_positive)
    seed: int = attrs.field(default=0, converter=int)
    holdout_val: bool = attrs.field(default=False, converter=bool)  # train without the search-validation images
    parallel: str = attrs.field(default="cycle", validator=_one_of("cycle", "data", "sync"))
    amp: str = attrs.field(default="off", validator=_one_of("off", "bf16", "fp16"))


@attrs.frozen
class SearchConfig:
    """Architecture search on the trained supernet. ``fitness``: ``pq`` (PQ on the search-validation
    split, the paper's), ``loss`` (minus the supernet's mean loss on it; lower noise, see
    docs/benchmarks/ranking.md) or ``naswot`` (a training-free baseline: the NASWOT score of the
    candidate's freshly initialised standalone network on the first 8 calibration images; the
    supernet's weights are not used, so the same policy and budget can be compared with and without
    a supernet). ``naswot_mask_head``: the NASWOT score counts the mask head's units too, on one
    whole-image RoI per image (:func:`autopanoptic.nn.proxies.naswot_score`); off, it reads the dense
    part of the network only.

    Budgets (``null`` = none): ``max_params``, ``max_macs`` (counted at ``cost_image_size``) and
    ``max_latency_ms`` (predicted by the table ``latency_table`` of ``autopanoptic latency build``,
    times ``1 + latency_margin``: set the margin to the worst under-prediction ``autopanoptic latency
    check`` reports so that measured latency stays within the budget too);
    every policy only proposes and counts architectures within them. ``objectives``: ``fitness``
    followed by any of ``latency``, ``macs``, ``params``: the search also writes the Pareto set of
    the candidates it evaluated (``search/pareto.json``; docs/latency.md). With path-priority or
    guided search the search then also measures up to ``front_points`` composites along its additive
    model's front against the first cost (0: none)."""

    policy: str = attrs.field(default="path-priority", validator=_one_of("path-priority", "evolution", "random", "guided"))
    fitness: str = attrs.field(default="pq", validator=_one_of("pq", "loss", "naswot"))
    naswot_mask_head: bool = attrs.field(default=False, converter=bool)
    cycles: int = attrs.field(default=2, converter=int, validator=_positive)
    per_cycle: int | None = attrs.field(default=None, converter=attrs.converters.optional(int), validator=_positive)
    population: int = attrs.field(default=50, converter=int, validator=_positive)
    generations: int = attrs.field(default=20, converter=int, validator=_positive)
    evaluations: int = attrs.field(default=300, converter=int, validator=_positive)
    calib_batches: int = attrs.field(default=4, converter=int, validator=_non_negative)
    calib_batch_size: int = attrs.field(default=4, converter=int, validator=_positive)
    max_params: float | None = attrs.field(default=None, converter=_opt_float, validator=_positive)
    max_macs: float | None = attrs.field(default=None, converter=_opt_float, validator=_positive)
    cost_image_size: int = attrs.field(default=64, converter=int, validator=_positive)
    max_latency_ms: float | None = attrs.field(default=None, converter=_opt_float, validator=_positive)
    latency_table: str | None = attrs.field(default=None, converter=_opt_str)
    latency_margin: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    objectives: tuple[str, ...] = attrs.field(default=("fitness",), converter=_objectives, validator=_objectives_valid)
    front_points: int = attrs.field(default=8, converter=int, validator=_non_negative)
    seed: int = attrs.field(default=0, converter=int)


@attrs.frozen
class RetrainConfig:
    """Retraining the chosen architecture as a standalone network (``preset`` None = the supernet's
    own preset, e.g. ``paper-retrain`` for the wider network). ``backbone_weights`` (a ``backbone.pt``
    of ``autopanoptic pretrain``) initialises a freshly built network's backbone
    (``init_from_supernet: false``). ``amp``: as ``train.amp``. ``parallel``: with several workers,
    ``data`` slices every batch over them (BatchNorm per slice); ``sync`` slices it too, with
    BatchNorm statistics over the whole batch (:mod:`autopanoptic.engine.syncbn`: for small batches,
    where a slice of one image would change what BatchNorm sees); ``single`` retrains on the first
    worker alone while the others wait (the single-process run, one core busy). ``controls``: how
    many architectures drawn uniformly from the sampling space are retrained with the same recipe as
    random controls (``<run>/retrain/controls/``; evaluated and shown beside the searched network);
    ``auto`` = one per worker that ``parallel: single`` leaves idle (none in one process)."""

    preset: str | None = attrs.field(default=None, converter=_opt_str)
    overrides: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_frozen_mapping)
    init_from_supernet: bool = attrs.field(default=True, converter=bool)
    backbone_weights: str | None = attrs.field(default=None, converter=_opt_str)
    steps: int = attrs.field(default=200, converter=int, validator=_positive)
    batch_size: int = attrs.field(default=2, converter=int, validator=_positive)
    lr: float = attrs.field(default=0.02, converter=float, validator=_positive)
    momentum: float = attrs.field(default=0.9, converter=float, validator=_non_negative)
    weight_decay: float = attrs.field(default=1e-4, converter=float, validator=_non_negative)
    warmup_steps: int = attrs.field(default=0, converter=int, validator=_non_negative)
    schedule: str = attrs.field(default="cosine", validator=_one_of("cosine", "step", "constant"))
    milestones: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)
    gamma: float = attrs.field(default=0.1, converter=float, validator=_positive)
    checkpoint_every: int = attrs.field(default=50, converter=int, validator=_positive)
    seed: int = attrs.field(default=0, converter=int)
    amp: str = attrs.field(default="off", validator=_one_of("off", "bf16", "fp16"))
    parallel: str = attrs.field(default="data", validator=_one_of("data", "sync", "single"))
    controls: int | str = attrs.field(default=0, converter=_controls)


@attrs.frozen
class EvalConfig:
    """Evaluation of the retrained network on the evaluation split (``amp``: mixed precision of the
    forward passes of every evaluation -- this one and the search's -- ``off`` / ``bf16`` / ``fp16``).
    ``ground_truth``: a ground-truth table (:mod:`autopanoptic.engine.truth`) the report compares the
    retrained PQ with, when the run's data and retraining match it; ``auto`` = the table of the model
    preset shipped in the source tree (``benchmarks/ground_truth/<preset>.json``) if there is one;
    ``null`` = none."""

    export: bool = attrs.field(default=True, converter=bool)
    draw: int = attrs.field(default=4, converter=int, validator=_non_negative)
    batch_size: int = attrs.field(default=4, converter=int, validator=_positive)  # images per forward pass
    amp: str = attrs.field(default="off", validator=_one_of("off", "bf16", "fp16"))
    ground_truth: str | None = attrs.field(default="auto", converter=_opt_str)


def _bool(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")


@attrs.frozen
class LogConfig:
    """Run logs (see :mod:`autopanoptic.engine.logs`). ``<run>/metrics.jsonl`` is always written;
    ``tensorboard: true`` also writes TensorBoard event files to ``<run>/tensorboard/`` (needs
    ``pip install 'autopanoptic[tensorboard]'``)."""

    tensorboard: bool = attrs.field(default=False, validator=_bool)


@attrs.frozen
class Config:
    """A whole run's configuration."""

    data: DataConfig = attrs.field(factory=DataConfig)
    model: ModelConfig = attrs.field(factory=ModelConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    search: SearchConfig = attrs.field(factory=SearchConfig)
    retrain: RetrainConfig = attrs.field(factory=RetrainConfig)
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    log: LogConfig = attrs.field(factory=LogConfig)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "search": SearchConfig,
    "retrain": RetrainConfig,
    "eval": EvalConfig,
    "log": LogConfig,
}


# ---- dict conversion --------------------------------------------------------------------------
def _section_to_dict(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in attrs.fields(type(value)):
        v = getattr(value, f.name)
        if f.name in ("overrides",):
            v = {k: x for k, x in v}
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts / lists (YAML- and JSON-safe).

    >>> config_to_dict(Config())["train"]["lr"]
    0.02
    """
    return {name: _section_to_dict(getattr(cfg, name)) for name in _SECTIONS}


def config_defaults() -> dict[str, Any]:
    """``{"section.key": default}`` of every config key, in the form of :func:`config_to_dict`: what a
    file written before a key existed is read as (e.g. a checkpoint's fingerprint).

    >>> config_defaults()["train.lr"]
    0.02
    """
    return {f"{s}.{k}": v for s, part in config_to_dict(Config()).items() for k, v in part.items()}


def config_from_dict(obj: Any, *, source: str = "config") -> Config:
    """Build a :class:`Config` from nested dicts, raising :class:`ConfigError` naming the bad key.

    Missing keys take their defaults; unknown keys are errors (a typo must not be silently ignored).
    """
    if obj is None:
        obj = {}
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown config section(s) {unknown}; sections are {', '.join(_SECTIONS)}")
    sections = {}
    for name, cls in _SECTIONS.items():
        part = obj.get(name) or {}
        if not isinstance(part, Mapping):
            raise ConfigError(f"{source}: section '{name}' must be a mapping, got {type(part).__name__}")
        known = {f.name for f in attrs.fields(cls)}
        bad = sorted(set(part) - known)
        if bad:
            raise ConfigError(
                f"{source}: unknown config key '{name}.{bad[0]}'; known keys in '{name}': {', '.join(sorted(known))}"
            )
        kwargs = dict(part)
        try:
            sections[name] = cls(**kwargs)
        except (ValueError, TypeError) as e:
            key = _guess_key(cls, kwargs, e)
            raise ConfigError(f"{source}: bad value for '{name}.{key}': {e}") from None
    return Config(**sections)


def _guess_key(cls: type, kwargs: Mapping[str, Any], err: Exception) -> str:
    """Which field made ``cls(**kwargs)`` fail: try them one at a time."""
    for key, value in kwargs.items():
        try:
            cls(**{key: value})
        except (ValueError, TypeError):
            return key
    return "?"


# ---- overrides --------------------------------------------------------------------------------
def apply_overrides(cfg: Config, overrides: Sequence[str], *, source: str = "--set") -> Config:
    """Apply ``section.key=value`` overrides (values parsed as YAML) and re-validate.

    >>> apply_overrides(Config(), ["train.steps=5", "search.policy=random"]).train.steps
    5
    """
    d = config_to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} ({source}) must look like section.key=value, e.g. train.lr=0.01")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if len(parts) < 2 or parts[0] not in _SECTIONS:
            raise ConfigError(
                f"unknown config key '{key}' ({source}); keys look like section.key with sections {', '.join(_SECTIONS)}"
            )
        section, field = parts[0], parts[1]
        known = {f.name for f in attrs.fields(_SECTIONS[section])}
        if field not in known:
            raise ConfigError(
                f"unknown config key '{key}' (from {source}); known keys in '{section}': {', '.join(sorted(known))}"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if len(parts) == 2:
            d[section][field] = value
        else:  # e.g. model.overrides.width=32
            target = d[section][field]
            if not isinstance(target, dict):
                raise ConfigError(f"config key '{section}.{field}' is not a mapping; cannot set '{key}' ({source})")
            target[".".join(parts[2:])] = value
    return config_from_dict(d, source=source)


# ---- files ------------------------------------------------------------------------------------
def preset_path(name: str) -> Path:
    """Path of a shipped preset YAML file."""
    return Path(__file__).resolve().parent / "configs" / f"{name}.yaml"


def load_config(source: str | os.PathLike[str] | None = "tiny", overrides: Sequence[str] = ()) -> Config:
    """Load a preset name or a YAML file, then apply ``overrides``.

    A YAML file may start from a preset with a top-level ``preset: tiny`` key; its sections then
    override that preset's values key by key.
    """
    if source is None:
        cfg = Config()
    else:
        obj = _read_yaml(source)
        cfg = config_from_dict(obj, source=str(source))
    return apply_overrides(cfg, overrides) if overrides else cfg


def _read_yaml(source: str | os.PathLike[str], _depth: int = 0) -> dict[str, Any]:
    name = str(source)
    if name in PRESETS:
        path = preset_path(name)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(
                f"config {name!r} is neither a preset ({', '.join(PRESETS)}) nor an existing YAML file"
            )
    try:
        obj = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else "syntax error"
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    base = obj.pop("preset", None)
    if base is not None:
        if _depth > 4:
            raise ConfigError(f"{path}: presets nest too deeply")
        merged = _read_yaml(str(base), _depth + 1)
        for section, part in obj.items():
            if isinstance(part, Mapping) and isinstance(merged.get(section), Mapping):
                merged[section] = {**merged[section], **part}
            else:
                merged[section] = part
        obj = merged
    return obj


def save_config(cfg: Config, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config as YAML (atomically); :func:`load_config` reads it back equal.

    >>> import tempfile, pathlib
    >>> p = save_config(Config(), pathlib.Path(tempfile.mkdtemp()) / "c.yaml")
    >>> load_config(p) == Config()
    True
    """
    return atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

