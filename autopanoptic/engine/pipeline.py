"""The stages of a run, each reading and writing the run folder (see :mod:`autopanoptic.engine.runs`):

``prepare_data`` -> ``train_supernet`` -> ``search`` -> ``retrain`` -> ``evaluate_run`` -> report,
and :func:`demo`, which runs them all. Every stage resumes from what the folder already holds
(a finished stage is not redone; an interrupted one continues from its checkpoint or journal).

Example::

    from autopanoptic.config import load_config
    from autopanoptic.engine import pipeline
    from autopanoptic.engine.runs import RunDir
    cfg = load_config("tiny")
    with RunDir("runs/demo") as run:
        metrics = pipeline.demo(cfg, run)
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from autopanoptic.config import Config, config_to_dict, save_config
from autopanoptic.engine.datasets import Splits, make_splits, open_dataset
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.engine.runs import RunDir
from autopanoptic.errors import ArchitectureError, CheckpointError, ConfigError
from autopanoptic.io import atomic_write_json
from autopanoptic.search.space import Arch

__all__ = [
    "RunData",
    "build_model",
    "demo",
    "evaluate_run",
    "load_supernet",
    "prepare_data",
    "resolve_device",
    "search_model",
    "restriction_for",
    "retrain",
    "set_threads",
    "supernet_checkpoint",
    "search",
    "supernet_readers",
    "train_supernet",
]


def set_threads(n: int | None) -> None:
    """Use ``n`` PyTorch CPU threads (``0`` / ``None``: leave PyTorch's default).

    The tiny networks run many small kernels: one thread is as fast as two on an idle 2-core machine
    and up to 10x faster on a busy one (OpenMP threads wait for each other when one of them is
    descheduled); see docs/engine.md.
    """
    if n:
        torch.set_num_threads(int(n))


def resolve_device(device: str | None) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``), or ``None`` / ``auto`` = cuda if available."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if str(device) != "cpu" and not str(device).startswith("cuda"):
        raise ConfigError(f"--device {device!r}: use cpu or cuda")
    return torch.device(device)


@attrs.frozen
class RunData:
    """The datasets of a run and its splits."""

    train: Any  # PanopticDataset (train / val / calib indices into it)
    eval: Any  # PanopticDataset (eval indices into it; may be the same object)
    splits: Splits

    @property
    def categories(self):
        return self.train.categories


def prepare_data(cfg: Config, run: RunDir, *, progress: bool = True) -> RunData:
    """Open (or, with ``data.root = null``, generate into ``<run>/data``) the datasets; split them."""
    from autopanoptic.data import write_synthetic

    d = cfg.data
    if d.root is None:
        root = run.root / "data"
        marker = root / "synthetic.json"
        want = synthetic_marker(d)
        if not (root / "panoptic.json").exists() or not marker.exists() or json.loads(marker.read_text()) != want:
            write_synthetic(root, d.synthetic_images, size=d.synthetic_size, seed=d.synthetic_seed, kind=d.kind,
                            style=d.synthetic_style, progress=progress)
            atomic_write_json(marker, want)
        train = open_dataset(root, "images", "panoptic.json", "panoptic", d.kind)
    else:
        train = open_dataset(d.root, d.images, d.json, d.pngs, d.kind)
    if d.eval_root is not None:
        ev = open_dataset(d.eval_root, d.eval_images, d.eval_json, d.eval_pngs, d.kind)
        splits = make_splits(len(train), d, n_eval_source=len(ev), calib_images=_calib_images(cfg))
    else:
        ev = train
        splits = make_splits(len(train), d, calib_images=_calib_images(cfg))
    from autopanoptic.engine.distributed import world

    if world().is_main:  # under torchrun every rank computes the same splits; rank 0 writes them
        atomic_write_json(run.path("splits.json"), splits.to_json(), indent=None)
    return RunData(train=train, eval=ev, splits=splits)


def synthetic_marker(d) -> dict[str, Any]:
    """What identifies a generated dataset of a :class:`~autopanoptic.config.DataConfig` (stored as
    ``data/synthetic.json``; the ``basic`` style keeps the marker of earlier releases)."""
    want = {"images": d.synthetic_images, "size": d.synthetic_size, "seed": d.synthetic_seed, "kind": d.kind}
    if d.synthetic_style != "basic":
        want["style"] = d.synthetic_style
    return want


def _calib_images(cfg: Config) -> int:
    return max(1, cfg.search.calib_batches * cfg.search.calib_batch_size)


def _overrides(pairs) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in pairs}


def build_model(cfg: Config, categories, *, seed: int | None = None):
    """A freshly initialised supernet for ``cfg.model`` (seeded with ``cfg.train.seed``)."""
    from autopanoptic.nn import build_supernet

    torch.manual_seed(cfg.train.seed if seed is None else seed)
    try:
        return build_supernet(cfg.model.preset, categories.num_things, categories.num_stuff, **_overrides(cfg.model.overrides))
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise ConfigError(f"model: {e}") from None
        raise ConfigError(f"model.preset / model.overrides: {e}") from None


def restriction_for(cfg: Config, space) -> OpRestriction:
    """The sampling space of ``model.exclude_ops`` (see :mod:`autopanoptic.engine.restrict`)."""
    return OpRestriction.build(space, cfg.model.exclude_ops)


def _fingerprint(cfg: Config, *sections: str, **extra: Any) -> dict[str, Any]:
    d = config_to_dict(cfg)
    out: dict[str, Any] = {}
    for s in sections:
        for k, v in d[s].items():
            out[f"{s}.{k}"] = v
    out.update(extra)
    return out


def _resize(cfg: Config):
    from autopanoptic.engine.resize import Resize

    return Resize.from_config(cfg.data)


def _save_config(cfg: Config, run: RunDir) -> None:
    from autopanoptic.engine.distributed import world

    if world().is_main:  # one writer of a run folder's files: rank 0 (every rank has the same config)
        save_config(cfg, run.path("config.yaml"))


def run_log(cfg: Config, run: RunDir):
    """The run's ``metrics.jsonl`` (+ TensorBoard with ``log.tensorboard``) on rank 0; elsewhere a
    log that drops everything. See :mod:`autopanoptic.engine.logs`."""
    from autopanoptic.engine.distributed import world
    from autopanoptic.engine.logs import RunLog

    return RunLog.open(run.root, tensorboard=cfg.log.tensorboard, enabled=world().is_main)


def train_supernet(cfg: Config, run: RunDir, data: RunData | None = None, *, device="cpu", progress: bool = True,
                   stop_after: int | None = None):
    """Strict-fair supernet training into ``<run>/supernet/`` (resumes from its checkpoint)."""
    from autopanoptic.engine.train import fair_cycle_for_step, train

    data = data or prepare_data(cfg, run, progress=progress)
    _save_config(cfg, run)
    model = build_model(cfg, data.categories)
    if cfg.model.backbone_weights and not (run.root / "supernet" / "checkpoint.pt").exists():
        from autopanoptic.engine.pretrain import load_backbone_weights

        load_backbone_weights(model, cfg.model.backbone_weights)
    r = restriction_for(cfg, model.search_space)
    with run_log(cfg, run) as log:
        result = train(
            model, data.train, supernet_pool(cfg, data.splits), cfg.train,
            archs_for_step=lambda step: fair_cycle_for_step(r.sub, cfg.train.seed, step, r.to_full),
            checkpoint_path=run.path("supernet", "checkpoint.pt"),
            losses_path=run.path("supernet", "losses.json"),
            fingerprint=_fingerprint(cfg, "train", "model", "data"),
            device=device, stop_after=stop_after, flip=cfg.data.flip, progress=progress, desc="supernet",
            parallel=cfg.train.parallel, resize=_resize(cfg), loader_workers=cfg.data.loader_workers, log=log.write,
        )
    return model, result


def supernet_pool(cfg: Config, splits: Splits) -> tuple[int, ...]:
    """The images the supernet trains on: the training split, without the search-validation images
    when ``train.holdout_val`` is set."""
    if not cfg.train.holdout_val:
        return splits.train
    val = set(splits.val)
    return tuple(i for i in splits.train if i not in val)


def supernet_readers(cfg: Config) -> tuple[str, ...]:
    """The stages after supernet training that read its weights: ``search``, unless its fitness is
    training-free (``search.fitness: naswot`` scores freshly initialised networks), and ``retrain``
    when it starts from them (``retrain.init_from_supernet``). With none, :func:`demo` trains no
    supernet: it would change nothing the run reports.

    >>> from autopanoptic.config import load_config
    >>> supernet_readers(load_config("tiny")), supernet_readers(load_config("tiny-truth"))
    (('search', 'retrain'), ('search',))
    >>> supernet_readers(load_config("tiny-truth", ["search.fitness=naswot"]))
    ()
    """
    from autopanoptic.engine.search import training_free

    return (() if training_free(cfg.search.fitness) else ("search",)) + (("retrain",) if cfg.retrain.init_from_supernet else ())


def supernet_checkpoint(root: str | Path) -> Path:
    """The supernet checkpoint of the run folder ``root``; a :class:`CheckpointError` that says what
    to run where there is none."""
    path = Path(root) / "supernet" / "checkpoint.pt"
    if not path.exists():
        raise CheckpointError(f"{path}: no trained supernet in this run folder; run `autopanoptic train-supernet` first")
    return path


def load_supernet(cfg: Config, run: RunDir, data: RunData, *, device="cpu"):
    """The trained supernet of the run (its training must have finished). Its checkpoint's step and
    fingerprint are kept as ``model.provenance`` (``{"step": int, "fingerprint": dict}``), so that a
    caller that records where the weights came from need not read the checkpoint again."""
    from autopanoptic.engine.checkpoint import load_checkpoint

    path = supernet_checkpoint(run.root)
    state = load_checkpoint(path, map_location=device)
    from autopanoptic.engine.train import _fingerprint_diff

    diff = _fingerprint_diff(state.get("fingerprint", {}), _fingerprint(cfg, "train", "model", "data"))
    if diff is not None:
        raise CheckpointError(
            f"{path}: the supernet was trained with another configuration ({diff}); use the same config and --set "
            "values for every stage of a run"
        )
    if state["step"] < cfg.train.steps:
        raise CheckpointError(
            f"{path}: supernet training stopped at step {state['step']} of {cfg.train.steps}; "
            "run `autopanoptic train-supernet` again to finish it"
        )
    model = build_model(cfg, data.categories)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not match model.preset {cfg.model.preset!r} ({str(e).splitlines()[0]})") from None
    model.provenance = {"step": int(state["step"]), "fingerprint": dict(state.get("fingerprint", {}))}
    return model.to(device)


def search_model(cfg: Config, run: RunDir, data: RunData, *, device="cpu"):
    """The supernet that scores candidates with ``search.fitness`` (the search's, and
    ``check-ranking``'s): the run's trained one, or for a training-free fitness a freshly initialised
    one, of which only the structure is read (space, costs, config): that needs no trained supernet."""
    if "search" in supernet_readers(cfg):
        return load_supernet(cfg, run, data, device=device)
    return build_model(cfg, data.categories).to(device)


def _cost_counter(cfg: Config, model):
    from autopanoptic.nn import count

    size = cfg.search.cost_image_size

    def counter(arch: Arch) -> tuple[float, float]:
        return count(model, arch, size)

    return counter


def _op_costs(cfg: Config, model, latency):
    """Per (layer, choice) costs of the full space in the first cost objective (``None`` with
    fitness alone): the latency table's corrected milliseconds (``scale * layer_ms``: the prediction
    is ``fixed_ms`` plus their sum), or the supernet's cost table's MACs or parameters, the very
    counts of ``search/pareto.json`` (both models are exactly additive over the layers)."""
    costs = cfg.search.objectives[1:]
    if not costs:
        return None
    if costs[0] == "latency":
        return [latency.scale * row for row in latency.layer_ms]
    from autopanoptic.nn.counting import cost_table_for

    table = cost_table_for(model, cfg.search.cost_image_size)
    return table.layer_macs if costs[0] == "macs" else table.layer_params


def search(cfg: Config, run: RunDir, data: RunData | None = None, *, device="cpu", progress: bool = True):
    """Search the trained supernet; writes ``search/journal.jsonl``, ``search/scoreboard.json``,
    ``search/candidates.json``, ``arch.json`` and, with several ``search.objectives``,
    ``search/pareto.json`` (:func:`~autopanoptic.engine.search.pareto_record`)."""
    from autopanoptic.engine import distributed
    from autopanoptic.engine.latency import search_latency_table
    from autopanoptic.engine.search import search_supernet

    data = data or prepare_data(cfg, run, progress=progress)
    _save_config(cfg, run)
    model = search_model(cfg, run, data, device=device)
    latency = search_latency_table(cfg, model)
    r = restriction_for(cfg, model.search_space)
    with run_log(cfg, run) as log:
        outcome = search_supernet(
            model, data.train, data.splits.val, data.splits.calib, cfg.search, r, device=device,
            # one journal per fitness kind: a resumed search never mixes PQ and loss fitnesses
            journal=run.path("search", "journal.jsonl" if cfg.search.fitness == "pq" else f"journal-{cfg.search.fitness}.jsonl"),
            candidates_json=run.path("search", "candidates.json"),
            count=_cost_counter(cfg, model), latency=latency, op_costs=_op_costs(cfg, model, latency), progress=progress,
            log=log.write, resize=_resize(cfg), amp=cfg.eval.amp, loader_workers=cfg.data.loader_workers,
        )
    if distributed.world().is_main:  # every rank has the outcome; rank 0 writes it, the others wait for it
        _write_search_outcome(cfg, run, model, r, latency, outcome)
    distributed.wait_for_all()  # a later stage reads arch.json on every rank
    return outcome


def _write_search_outcome(cfg: Config, run: RunDir, model, r, latency, outcome) -> None:
    """``search/scoreboard.json``, ``search/pareto.json`` (several objectives) and ``arch.json``."""
    from autopanoptic.search import save_arch

    board = outcome.scoreboard
    atomic_write_json(run.path("search", "scoreboard.json"), {
        "layers": [layer.name for layer in r.sub.layers],
        "ops": [list(layer.ops) for layer in r.sub.layers],
        "scores": board.to_json(),
    })
    if len(cfg.search.objectives) > 1:
        from autopanoptic.engine.search import pareto_record

        atomic_write_json(run.path("search", "pareto.json"), pareto_record(
            outcome.history, cfg.search.objectives, count=_cost_counter(cfg, model), latency=latency,
            chosen=outcome.best, chosen_fitness=outcome.chosen_fitness, front=outcome.front))
    params, macs = _cost_counter(cfg, model)(outcome.best)
    save_arch(model.search_space, outcome.best, run.path("arch.json"), fitness=outcome.chosen_fitness,
              evaluated_during_search=outcome.best_fitness is not None,
              policy=cfg.search.policy, fitness_kind=cfg.search.fitness, evaluations=len(outcome.history),
              params=params, macs=macs,
              top_k=[list(a) for a in outcome.top_k])


def _read_arch(run: RunDir, space, arch_path: str | Path | None, pick: int | None = None) -> Arch:
    from autopanoptic.search import load_arch

    if pick is not None:
        if arch_path is not None:
            raise ArchitectureError("pass either --arch or --pick, not both")
        return front_point(run, space, pick)
    path = Path(arch_path) if arch_path is not None else run.root / "arch.json"
    if arch_path is None and not path.exists():
        raise ArchitectureError(f"{path}: no architecture in this run folder; run `autopanoptic search` first or pass --arch")
    return load_arch(space, path)


def front_point(run: RunDir, space, k: int) -> Arch:
    """The architecture of point ``k`` (numbered from 1) of the run's Pareto front (``search/pareto.json``)."""
    path = run.root / "search" / "pareto.json"
    if not path.exists():
        raise ArchitectureError(f"{path}: no Pareto front in this run folder; search with several objectives, e.g. "
                                "--set search.objectives=[fitness,latency]")
    try:
        rec = json.loads(path.read_text())
        front = [rec["candidates"][int(i)]["arch"] for i in rec["front"]]
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise ArchitectureError(f"{path}: not a Pareto front written by the search ({type(e).__name__})") from None
    if not 1 <= int(k) <= len(front):
        raise ArchitectureError(f"--pick {k}: the front of {path} has points 1 to {len(front)}")
    return space.validate(front[int(k) - 1])


def retrain_shape(cfg: Config) -> tuple[str, dict[str, Any]]:
    """The preset and overrides of the retrained network: ``retrain.preset`` with its own overrides,
    or the supernet's preset with the model's overrides updated by ``retrain.overrides``."""
    rc = cfg.retrain
    if rc.preset:
        return rc.preset, _overrides(rc.overrides)
    return cfg.model.preset, {**_overrides(cfg.model.overrides), **_overrides(rc.overrides)}


def _retrain_network(cfg: Config, data: RunData, arch: Arch, supernet=None):
    from autopanoptic.nn import build_network, extract

    rc = cfg.retrain
    preset, overrides = retrain_shape(cfg)
    if supernet is not None:
        if rc.preset not in (None, cfg.model.preset) or rc.overrides:
            raise ConfigError(
                f"retrain.init_from_supernet=true needs the supernet's own shape, but retrain.preset={rc.preset!r} / "
                "retrain.overrides change it; set retrain.init_from_supernet=false"
            )
        return extract(supernet, arch)
    torch.manual_seed(rc.seed)
    return build_network(preset, arch, data.categories.num_things, data.categories.num_stuff, **overrides)


def retrain(cfg: Config, run: RunDir, data: RunData | None = None, *, arch_path=None, pick: int | None = None,
            device="cpu", progress: bool = True, stop_after: int | None = None):
    """Retrain the chosen architecture (``arch.json``, ``arch_path``, or point ``pick`` of the Pareto
    front in ``search/pareto.json``) as a standalone network into ``<run>/retrain/``; optionally
    starting from the supernet's weights (``retrain.init_from_supernet``)."""
    from autopanoptic.engine.train import train
    from autopanoptic.search import save_arch

    data = data or prepare_data(cfg, run, progress=progress)
    _save_config(cfg, run)
    space = build_supernet_space(cfg, data)
    arch = _read_arch(run, space, arch_path, pick)
    r = restriction_for(cfg, space)
    if cfg.retrain.init_from_supernet:
        try:
            r.to_sub(arch)  # an op the supernet never trained cannot be inherited
        except ArchitectureError as e:
            raise ArchitectureError(
                f"{e}; the supernet never trained it: set retrain.init_from_supernet=false to train from scratch"
            ) from None
        supernet = load_supernet(cfg, run, data, device=device)
    else:
        supernet = None
    from autopanoptic.engine import controls, distributed

    w = distributed.world()
    alone = w.active and cfg.retrain.parallel == "single"
    ctrl = controls.draw(r, controls.count(cfg.retrain.controls, w.size, cfg.retrain.parallel), cfg.search.seed,
                         cfg.retrain.seed)
    # job 0 = the chosen network, job i + 1 = control i; with `single` each job runs on one worker
    jobs = [(run.root / "retrain", arch, "retrain")] + [
        (controls.folder(run.root, i), a, f"control {i + 1}") for i, a in enumerate(ctrl)]
    mine = [j for j in range(len(jobs)) if controls.owner(j, w.size, alone) in (None, w.rank)]
    # from the supernet every network is extracted before it is freed; fresh ones are built when trained
    nets = {j: _built_network(cfg, data, jobs[j][1], supernet, jobs[j][0])
            for j in sorted({0, *mine}) if j == 0 or supernet is not None}
    del supernet
    if w.is_main:  # rank 0 writes the run folder's records; each rank writes only what it trains
        save_arch(space, arch, run.path("retrain", "arch.json"))
        for i, a in enumerate(ctrl):
            save_arch(space, a, run.path("retrain", "controls", str(i), "arch.json"), control=i)
        controls.write_plan(run.root, space, ctrl)
    distributed.wait_for_all()  # evaluation reads these on every rank
    result = None
    with run_log(cfg, run) as log:
        for j in mine:
            where, a, desc = jobs[j]
            net_j = nets[j] if j in nets else _built_network(cfg, data, a, None, where)
            with distributed.solo() if alone else contextlib.nullcontext():
                res = train(
                    net_j, data.train, data.splits.train, cfg.retrain, archs_for_step=lambda step: [None],
                    checkpoint_path=where / "checkpoint.pt", losses_path=where / "losses.json",
                    fingerprint=_fingerprint(cfg, "retrain", "model", "data", arch=list(a)),
                    device=device, stop_after=stop_after, flip=cfg.data.flip, progress=progress, desc=desc,
                    resize=_resize(cfg), loader_workers=cfg.data.loader_workers, log=log.write if j == 0 else None,
                    parallel="sync" if cfg.retrain.parallel == "sync" else "data",
                )
            if j == 0:
                result = res
            else:
                nets.pop(j, None)
                del net_j
    net = nets[0]
    if alone:  # the other workers trained controls or waited; they take rank 0's result from its checkpoint
        distributed.wait_for_all()
        result = distributed.broadcast_object(result)
        if not w.is_main:
            from autopanoptic.engine.checkpoint import load_checkpoint

            net.load_state_dict(load_checkpoint(run.root / "retrain" / "checkpoint.pt", map_location=device)["model"])
    return net, result


def _built_network(cfg: Config, data: RunData, arch: Arch, supernet, where: Path):
    """A network of ``arch`` to retrain into ``where``: the supernet's weights, or a fresh one (with
    ``retrain.backbone_weights`` loaded unless ``where`` already holds a checkpoint to resume)."""
    net = _retrain_network(cfg, data, arch, supernet)
    if cfg.retrain.backbone_weights:
        if supernet is not None:
            raise ConfigError("retrain.backbone_weights needs retrain.init_from_supernet=false (the weights would "
                              "replace the supernet's)")
        if not (where / "checkpoint.pt").exists():
            from autopanoptic.engine.pretrain import load_backbone_weights

            load_backbone_weights(net, cfg.retrain.backbone_weights)
    return net


def build_supernet_space(cfg: Config, data: RunData):
    """The search space of ``cfg.model`` (without building the network's weights)."""
    from autopanoptic.nn.supernet import make_config

    try:
        return make_config(cfg.model.preset, data.categories.num_things, data.categories.num_stuff,
                           **_overrides(cfg.model.overrides)).search_space()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.preset / model.overrides: {str(e).splitlines()[0]}") from None


def load_retrained(cfg: Config, run: RunDir, data: RunData, *, device="cpu", folder: Path | None = None):
    """The retrained network of the run (or of ``folder``, e.g. a random control's), its architecture,
    and the number of steps it was trained for."""
    from autopanoptic.engine.checkpoint import load_checkpoint
    from autopanoptic.search import load_arch

    folder = run.root / "retrain" if folder is None else Path(folder)
    path = folder / "checkpoint.pt"
    if not path.exists():
        raise CheckpointError(f"{path}: no retrained network in this run folder; run `autopanoptic retrain` first")
    space = build_supernet_space(cfg, data)
    arch = load_arch(space, folder / "arch.json")
    state = load_checkpoint(path, map_location=device)
    cfg_fresh = attrs.evolve(cfg, retrain=attrs.evolve(cfg.retrain, init_from_supernet=False))
    net = _retrain_network(cfg_fresh, data, arch)
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not match retrain.preset ({str(e).splitlines()[0]})") from None
    return net.to(device), arch, int(state["step"])


def evaluate_run(cfg: Config, run: RunDir, data: RunData | None = None, *, device="cpu", progress: bool = True) -> dict[str, Any]:
    """Evaluate the retrained network on the evaluation split; writes ``eval/metrics.json``,
    ``eval/predictions.json`` + ``eval/predictions/*.png`` (COCO panoptic) and drawings.

    Under ``torchrun`` every rank evaluates its share of the images
    (:func:`~autopanoptic.engine.distributed.evaluate_sharded`) and rank 0 alone writes, the same
    files as one process; every rank returns the same metrics."""
    from autopanoptic.data.metrics import json_safe
    from autopanoptic.engine.distributed import evaluate_sharded, world
    from autopanoptic.nn import count

    if cfg.log.tensorboard:  # say so now, not after the evaluation
        from autopanoptic.engine.logs import check_tensorboard

        check_tensorboard()
    data = data or prepare_data(cfg, run, progress=progress)
    net, arch, steps = load_retrained(cfg, run, data, device=device)
    started = time.perf_counter()
    res = evaluate_sharded(
        net, data.eval, data.splits.eval, device=device, batch_size=cfg.eval.batch_size,
        export_dir=run.root / "eval" if cfg.eval.export else None,
        draw=cfg.eval.draw, draw_dir=run.root / "plots", progress=progress, desc="evaluate",
        branch_metrics=True, amp=cfg.eval.amp, resize=_resize(cfg), loader_workers=cfg.data.loader_workers,
    )
    summary = res.summary()
    cats = data.eval.categories
    per_class = {
        str(cid): {**v, "name": cats.name(int(cid)), "isthing": bool(cats.is_thing(int(cid)))}
        for cid, v in summary["per_class"].items()
    }
    try:
        params, macs = count(net, arch, cfg.search.cost_image_size)
    except Exception:  # counting is informative only
        params = macs = None
    metrics = {
        "All": summary["All"], "Things": summary["Things"], "Stuff": summary["Stuff"],
        "per_class": per_class, "n_images": res.n_images, "retrain_steps": steps,
        "arch": list(arch), "params": params, "macs": macs, "image_size": cfg.search.cost_image_size,
        "seconds": time.perf_counter() - started,
        "box_ap": json_safe(res.ap["bbox"]), "mask_ap": json_safe(res.ap["segm"]),
        "semantic": json_safe(res.semantic),
    }
    metrics["controls"] = _evaluate_controls(cfg, run, data, device=device, progress=progress)
    if world().is_main:
        atomic_write_json(run.path("eval", "metrics.json"), metrics)
        record = {"kind": "eval", "stage": "evaluate", "retrain_steps": steps}
        for group, suffix in (("All", ""), ("Things", "_Things"), ("Stuff", "_Stuff")):
            record.update({f"{m.upper()}{suffix}": summary[group][m] for m in ("pq", "sq", "rq")})
        with run_log(cfg, run) as log:
            log.write({**record, "n_images": res.n_images, "seconds": metrics["seconds"]})
    return metrics


def _evaluate_controls(cfg: Config, run: RunDir, data: RunData, *, device="cpu", progress: bool = True) -> list[dict]:
    """PQ / SQ / RQ and size of each random control of the last retraining (see
    :mod:`autopanoptic.engine.controls`); a control whose training did not finish is an error."""
    from autopanoptic.engine import controls
    from autopanoptic.engine.distributed import evaluate_sharded
    from autopanoptic.nn import count

    out = []
    for i, planned in enumerate(controls.read_plan(run.root)):
        net, arch, steps = load_retrained(cfg, run, data, device=device, folder=controls.folder(run.root, i))
        if arch != planned or steps < cfg.retrain.steps:
            raise CheckpointError(f"{controls.folder(run.root, i)}: random control {i + 1} is not the finished retraining "
                                  f"of its planned architecture ({steps} of {cfg.retrain.steps} steps); run "
                                  "`autopanoptic retrain` again to finish it")
        summary = evaluate_sharded(net, data.eval, data.splits.eval, device=device, batch_size=cfg.eval.batch_size,
                                   progress=progress, desc=f"evaluate control {i + 1}", amp=cfg.eval.amp,
                                   resize=_resize(cfg), loader_workers=cfg.data.loader_workers).summary()
        try:
            params, macs = count(net, arch, cfg.search.cost_image_size)
        except Exception:  # counting is informative only
            params = macs = None
        out.append({"index": i, "arch": list(arch), "retrain_steps": steps, "params": params, "macs": macs,
                    **{g: summary[g] for g in ("All", "Things", "Stuff")}})
    return out


def demo(cfg: Config, run: RunDir, *, device="cpu", progress: bool = True, baseline: bool = True) -> dict[str, Any]:
    """Everything: data, strict-fair supernet training, search, retraining, evaluation, report.
    Supernet training is skipped when no later stage reads its weights (:func:`supernet_readers`).

    With ``baseline``, the untrained network of the chosen architecture is evaluated too (the
    PQ an untrained net reaches, for comparison). Returns the metrics, with stage timings.
    """
    from autopanoptic.engine import distributed
    from autopanoptic.engine.report import write_report

    times: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    with distributed.main_first():  # in a process group rank 0 generates the data, the others read it
        data = prepare_data(cfg, run, progress=progress)
    times["data"] = time.perf_counter() - t0
    if supernet_readers(cfg):  # else no stage would read it (a training-free fitness, retraining from scratch)
        t = time.perf_counter()
        train_supernet(cfg, run, data, device=device, progress=progress)
        times["train_supernet"] = time.perf_counter() - t
    t = time.perf_counter()
    search(cfg, run, data, device=device, progress=progress)
    times["search"] = time.perf_counter() - t
    t = time.perf_counter()
    retrain(cfg, run, data, device=device, progress=progress)
    times["retrain"] = time.perf_counter() - t
    t = time.perf_counter()
    metrics = evaluate_run(cfg, run, data, device=device, progress=progress)
    times["evaluate"] = time.perf_counter() - t
    if baseline:
        space = build_supernet_space(cfg, data)
        arch = _read_arch(run, space, None)
        fresh = _retrain_network(attrs.evolve(cfg, retrain=attrs.evolve(cfg.retrain, init_from_supernet=False)), data, arch)
        base = distributed.evaluate_sharded(fresh, data.eval, data.splits.eval, device=device,
                                            batch_size=cfg.eval.batch_size, amp=cfg.eval.amp, resize=_resize(cfg))
        metrics["untrained"] = {g: base.summary()[g] for g in ("All", "Things", "Stuff")}
    times["total"] = time.perf_counter() - t0
    # CPU seconds of all the run's processes (every rank, all its threads), summed in rank order
    times["cpu_total"] = sum(distributed.all_gather_objects(time.process_time() - c0))
    times["workers"] = distributed.world().size
    metrics["timings"] = times
    if distributed.world().is_main:
        atomic_write_json(run.path("eval", "metrics.json"), metrics)
        write_report(run, cfg)
    return metrics
