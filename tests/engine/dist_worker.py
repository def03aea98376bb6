"""Helpers of tests/engine/test_distributed.py, and the script ``torchrun`` launches there.

``torchrun --nproc_per_node 2 dist_worker.py DATA OUT`` runs, on every rank, a distributed training
(with a resume from rank 0's checkpoint), a sharded evaluation and two distributed searches; rank 0
saves what the test compares against the same computations in one process.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from autopanoptic.config import SearchConfig, TrainConfig
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.engine.train import fair_cycle_for_step, train
from autopanoptic.search.space import Layer, SearchSpace

TRAIN_CFG = TrainConfig(steps=4, batch_size=4, lr=0.1, momentum=0.9, weight_decay=1e-3, warmup_steps=1,
                        checkpoint_every=1, seed=2)


class LinNet(torch.nn.Module):
    """A tiny choice network without BatchNorm (its loss is a mean over images, so gradients of
    equal slices average to the global-batch gradient)."""

    def __init__(self, n_choices=(2, 3), width=4, classes=3):
        super().__init__()
        self.search_space = SearchSpace([Layer(f"l{i}", tuple(f"op{j}" for j in range(n))) for i, n in enumerate(n_choices)])
        c_in, layers = 3, []
        for n in n_choices:
            layers.append(torch.nn.ModuleList(torch.nn.Conv2d(c_in, width, 2 * j + 1, padding=j) for j in range(n)))
            c_in = width
        self.layers = torch.nn.ModuleList(layers)
        self.cls = torch.nn.Conv2d(width, classes, 1)

    def forward(self, images, targets=None, arch=None):
        x = torch.stack(images)
        for layer, c in zip(self.layers, arch):
            x = torch.tanh(layer[c](x))
        sem = torch.stack([t["semantic"] for t in targets])
        return {"loss_semantic": torch.nn.functional.cross_entropy(self.cls(x), sem)}


def train_data(n=8, size=6, seed=0):
    """Images with random semantic labels (the format ``load_batch`` reads)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "image": (rng.random((size, size, 3)) * 255).astype(np.uint8),
            "instances": {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                          "masks": np.zeros((0, size, size), np.uint8)},
            "semantic": rng.integers(0, 3, (size, size)).astype(np.int64),
        }
        for _ in range(n)
    ]


def run_training(ckpt_dir: Path | None, *, stop_after=None, init_seed=0):
    """LinNet trained with TRAIN_CFG (strict-fair cycles over its space); returns (model, result)."""
    torch.manual_seed(init_seed)
    model = LinNet()
    r = OpRestriction.build(model.search_space, ())
    res = train(model, train_data(), range(8), TRAIN_CFG,
                archs_for_step=lambda s: fair_cycle_for_step(r.sub, TRAIN_CFG.seed, s, r.to_full),
                checkpoint_path=None if ckpt_dir is None else ckpt_dir / "checkpoint.pt",
                losses_path=None if ckpt_dir is None else ckpt_dir / "losses.json",
                stop_after=stop_after, progress=False)
    return model, res


class NoisyOracle(torch.nn.Module):
    """A 'network' answering each image with its ground truth, damaged depending on the image and on
    ``arch`` (rows blanked, some segments dropped): PQ is non-trivial and differs between archs.
    Its instances (some dropped, boxes shifted, scores varied, with ties) and semantic map (rows
    overwritten) are damaged likewise, so box / mask AP and mIoU are non-trivial too."""

    def __init__(self, dataset):
        super().__init__()
        from autopanoptic.engine.datasets import to_tensors

        self.search_space = SearchSpace([Layer("a", ("x", "y", "z")), Layer("b", ("x", "y"))])
        self.bn = torch.nn.BatchNorm2d(3)
        self.dataset = dataset
        self.lookup = {self._key(to_tensors(dataset[i])[0]): i for i in range(len(dataset))}

    @staticmethod
    def _key(img: torch.Tensor) -> str:
        return hashlib.sha1(img.detach().cpu().contiguous().numpy().tobytes()).hexdigest()

    def forward(self, images, arch=None):
        cats = self.dataset.categories
        out = []
        for img in images:
            i = self.lookup[self._key(img)]
            s = self.dataset[i]
            pan = np.asarray(s["panoptic"]).astype(np.int64).copy()
            damage = (i * 7 + 5 * sum(arch or ())) % 23
            pan[:damage] = 0
            yy, xx = np.mgrid[: pan.shape[0], : pan.shape[1]]
            pan[(3 * yy + 5 * xx + i) % 13 == 0] = 0  # speckles: fractional IoUs, whose float sums depend on order
            segs = []
            for k, seg in enumerate(s["segments"]):
                if (k + i + (arch[0] if arch else 0)) % 4 == 3:
                    pan[pan == seg["id"]] = 0
                    continue
                thing = seg["category_id"] in cats.thing_ids
                ids = cats.thing_ids if thing else cats.stuff_ids
                segs.append({"id": seg["id"], "label": list(ids).index(seg["category_id"]), "isthing": thing,
                             "score": 1.0})
            a = tuple(arch or (0, 0))
            inst = s["instances"]
            keep = [k for k in range(len(inst["labels"])) if (k + i + a[0]) % 3 != 2]
            masks = np.asarray(inst["masks"])[keep].astype(bool)
            masks[:, :damage] = False
            boxes = np.asarray(inst["boxes"], np.float32)[keep] + np.float32((i + a[1]) % 3)
            scores = np.array([0.5 + 0.25 * ((k + a[1]) % 2) for k in keep], np.float32)  # ties across images
            semantic = np.where(np.asarray(s["semantic"]) == 255, 0, np.asarray(s["semantic"]))
            semantic[: damage // 2] = (i + a[0]) % (cats.num_stuff + 1)
            out.append({"panoptic": torch.from_numpy(pan), "segments": segs, "semantic": torch.from_numpy(semantic),
                        "instances": {"boxes": torch.from_numpy(boxes), "scores": torch.from_numpy(scores),
                                      "labels": torch.as_tensor(np.asarray(inst["labels"])[keep], dtype=torch.int64),
                                      "masks": torch.from_numpy(masks)}})
        return out


def open_data(root: Path):
    """The synthetic panoptic dataset the test wrote into ``root``."""
    from autopanoptic.engine.datasets import open_dataset

    return open_dataset(root, "images", "panoptic.json", "panoptic", "coco")


def tiny_supernet(ds):
    """The tiny panoptic supernet (seeded) and its restriction (no deformable convs: faster)."""
    from autopanoptic.nn import build_supernet

    torch.manual_seed(0)
    net = build_supernet("tiny", ds.categories.num_things, ds.categories.num_stuff)
    return net, OpRestriction.build(net.search_space, ("dfconv3x3", "dfconv5x5"))


SEARCH_ORACLE = SearchConfig(policy="random", evaluations=5, calib_batches=0, seed=4)
SEARCH_REAL = SearchConfig(policy="random", evaluations=3, calib_batches=1, calib_batch_size=2, seed=1)


def search_checks(ds, out: Path, tag: str):
    """Both searches (oracle and real tiny supernet); returns ``{name: history}`` (JSON-able)."""
    from autopanoptic.engine.search import search_supernet

    res = {}
    oracle = NoisyOracle(ds)
    o = search_supernet(oracle, ds, range(len(ds)), range(2), SEARCH_ORACLE, OpRestriction.build(oracle.search_space, ()),
                        journal=out / f"journal_oracle_{tag}.jsonl", progress=False)
    res["oracle"] = [[list(a), f] for a, f in o.history] + [list(o.best), o.chosen_fitness]
    net, r = tiny_supernet(ds)
    s = search_supernet(net, ds, range(4), range(4, 6), SEARCH_REAL, r, journal=out / f"journal_real_{tag}.jsonl",
                        progress=False)
    res["real"] = [[list(a), f] for a, f in s.history]
    return res


def eval_record(res) -> dict:
    """What the tests compare of an EvalResult (JSON-able; ``nan`` survives as ``NaN``)."""
    return {"stats": res.stats.to_array().tolist(), "n": res.n_images, "ap": res.ap, "semantic": res.semantic,
            "predictions_json": None if res.predictions_json is None else str(res.predictions_json),
            "drawn": [str(p) for p in res.drawn]}


ORACLE_EXPORT = {"arch": (0, 1), "batch_size": 2, "draw": 3}  # 7 images: rank 0 gets 4, rank 1 gets 3


class BrokenDataset:
    """``ds`` whose image ``bad`` cannot be read (as a corrupt file would)."""

    def __init__(self, ds, bad: int):
        self.ds, self.bad, self.categories = ds, bad, ds.categories

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        if i == self.bad:
            from autopanoptic.errors import DataError

            raise DataError(f"image {i}: unreadable")
        return self.ds[i]


def eval_checks(ds, out: Path):
    """Sharded evaluation of the oracle (two archs, uneven batches; AP and mIoU; one with export and
    drawings, gathered one image per round) and of the tiny supernet; an unreadable image on rank 1."""
    from autopanoptic.engine.distributed import all_gather_objects, evaluate_sharded

    oracle = NoisyOracle(ds)
    res = {}
    r = evaluate_sharded(oracle, ds, range(len(ds)), **ORACLE_EXPORT, branch_metrics=True, chunk=1,
                         export_dir=out / "export_dist", draw_dir=out / "draw_dist")
    res[f"oracle{ORACLE_EXPORT['arch']}"] = eval_record(r)
    r = evaluate_sharded(oracle, ds, range(len(ds)), arch=(2, 0), batch_size=2, branch_metrics=True)
    res["oracle(2, 0)"] = eval_record(r)
    net, restriction = tiny_supernet(ds)
    arch = restriction.to_full(tuple(0 for _ in restriction.sub.layers))
    r = evaluate_sharded(net, ds, range(5), arch=arch, batch_size=2, branch_metrics=True)
    res["supernet"] = eval_record(r)
    try:  # image 2 is in batch 1, which rank 1 evaluates: every rank must stop, none wait for ever
        evaluate_sharded(oracle, BrokenDataset(ds, 2), range(len(ds)), arch=(0, 1), batch_size=2)
        failure = None
    except Exception as e:
        failure = f"{type(e).__name__}: {e}"
    res["failure"] = all_gather_objects(failure)
    res["same_on_every_rank"] = len({json.dumps(x) for x in all_gather_objects(json.dumps(res))}) == 1
    return res


def main(data: Path, out: Path) -> None:
    """Entry point under torchrun (see the module docstring)."""
    import torch.distributed as dist

    from autopanoptic.engine.distributed import init_from_env

    torch.set_num_threads(1)
    w, _ = init_from_env("cpu")
    assert w.size == 2, w
    ckpt = out / "train"
    _, half = run_training(ckpt, stop_after=2)
    model, res = run_training(ckpt, init_seed=99)  # weights must come from rank 0's checkpoint
    ds = open_data(data)
    results = {"resumed_from": res.resumed_from, "half_steps": half.steps, "losses": list(res.losses),
               "eval": eval_checks(ds, out), "search": search_checks(ds, out, "dist")}
    if w.is_main:
        torch.save(model.state_dict(), out / "weights_dist.pt")
        (out / "results_dist.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
