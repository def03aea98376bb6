"""Files whose loading would run code are refused on every path that reads a file.

Each crafted file holds an object whose unpickling (or YAML construction) would create a marker file.
Through the library and the CLI (in process: a traceback fails the test), every path that reads a
checkpoint, backbone weights, a config, an architecture or a pretraining config must end in one
``error: ...`` line with exit status 2, and the marker must never appear.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from autopanoptic.errors import CheckpointError
from autopanoptic_cli.main import main

SETTINGS = [
    "--set", "data.synthetic_images=6", "--set", "data.synthetic_size=48",
    "--set", "data.eval_fraction=0.3", "--set", "data.val_fraction=0.3",
    "--set", "train.steps=1", "--set", "train.batch_size=1",
    "--set", "search.fitness=pq",  # a search that reads the supernet checkpoint
]


class Payload:
    """Unpickling it calls ``open(marker, "w")``: the file appears if any code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def evil_checkpoint(path: Path, marker: Path, kind: str = "current") -> Path:
    """A checkpoint-shaped file carrying :class:`Payload`: ``current`` (our header with a valid checksum:
    the checksum is no protection against a crafted file), ``legacy`` (a bare torch.save zip, as the
    previous format) or ``pickle`` (a plain pickle, as ``torch.save(..., _use_new_zipfile_serialization=False)``)."""
    state = {"format": "autopanoptic-checkpoint-2" if kind == "current" else "autopanoptic-checkpoint-1",
             "model": {"w": Payload(marker)}, "step": 0}
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=kind != "pickle")
    blob = buf.getvalue()
    if kind == "current":
        blob = b"autopanoptic-checkpoint 2 sha256=%s bytes=%d\n" % (hashlib.sha256(blob).hexdigest().encode(),
                                                                      len(blob)) + blob
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


EVIL_YAML = "!!python/object/apply:builtins.open [{marker}, w]\n"


def invoke(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_refused(res, marker: Path, *words: str) -> None:
    assert "Traceback" not in res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert res.exit_code == 2 and lines and lines[-1].startswith("error: "), res.output
    for w in words:
        assert w in lines[-1], res.output
    assert not marker.exists(), "code from the file ran"


@pytest.mark.parametrize("kind", ["current", "legacy", "pickle"])
def test_the_loaders_refuse_code_in_every_checkpoint_form(tmp_path, kind):
    from autopanoptic.engine.checkpoint import load_checkpoint
    from autopanoptic.engine.pretrain import load_backbone_weights
    from autopanoptic.nn.backbone import ShuffleNetSupernet

    marker = tmp_path / "marker"
    path = evil_checkpoint(tmp_path / "c.pt", marker, kind)
    blob = path.read_bytes()
    refused = "refused" if kind != "pickle" else "not an autopanoptic checkpoint"
    with pytest.raises(CheckpointError, match=refused):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=refused):
        load_backbone_weights(ShuffleNetSupernet((1, 1, 1, 1), (8, 16, 24, 32, 48)), path)
    assert not marker.exists() and path.read_bytes() == blob
    if kind != "pickle":  # the same file unpickled without the restriction would have run the code
        torch.load(io.BytesIO(blob.split(b"\n", 1)[1] if kind == "current" else blob), weights_only=False)
        assert marker.exists()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """A run folder with its synthetic data and a valid architecture file; a classification folder."""
    from autopanoptic.config import load_config
    from autopanoptic.engine.archinfo import categories_for
    from autopanoptic.engine.pipeline import build_supernet_space
    from autopanoptic.search import save_arch

    root = tmp_path_factory.mktemp("untrusted")
    run = root / "run"
    res = invoke("train-supernet", "--out", run, "--device", "cpu", "--no-progress", *SETTINGS)
    assert res.exit_code == 0, res.output  # the data, and a real supernet checkpoint (replaced by the tests)
    cfg = load_config("tiny", [s for s in SETTINGS if s != "--set"])
    space = build_supernet_space(cfg, SimpleNamespace(categories=categories_for(cfg)))
    save_arch(space, tuple(0 for _ in space.n_choices), run / "arch.json")
    save_arch(space, tuple(0 for _ in space.n_choices), run / "retrain" / "arch.json")
    classes = root / "classes"
    assert invoke("data", "synth-classes", classes, "--classes", "2", "--per-class", "2", "--size", "16",
                  "--no-progress").exit_code == 0
    return run, classes


STAGE = ("--device", "cpu", "--no-progress", *SETTINGS)
FRESH = ("--set", "retrain.init_from_supernet=false")

# (name, evil file relative to the folder, command line ({run}, {evil}, {classes} filled in))
PATHS = [
    ("train-supernet resumes", "run/supernet/checkpoint.pt", ["train-supernet", "--out", "{run}", *STAGE]),
    ("search reads the supernet", "run/supernet/checkpoint.pt", ["search", "--out", "{run}", *STAGE]),
    ("retrain inherits the supernet", "run/supernet/checkpoint.pt", ["retrain", "--out", "{run}", *STAGE]),
    ("retrain resumes", "run/retrain/checkpoint.pt", ["retrain", "--out", "{run}", *STAGE, *FRESH]),
    ("evaluate reads the retrained net", "run/retrain/checkpoint.pt", ["evaluate", "--out", "{run}", *STAGE]),
    ("check-ranking reads the supernet", "run/supernet/checkpoint.pt", ["check-ranking", "--out", "{run}", *STAGE]),
    ("model.backbone_weights", "weights.pt",
     ["train-supernet", "--out", "{run}", *STAGE, "--set", "model.backbone_weights={evil}"]),
    ("retrain.backbone_weights", "weights.pt",
     ["retrain", "--out", "{run}", *STAGE, *FRESH, "--set", "retrain.backbone_weights={evil}"]),
    ("pretrain-supernet resumes", "pre/checkpoint.pt",
     ["pretrain-supernet", "{classes}", "--out", "{pre}", "--steps", "1", "--device", "cpu", "--no-progress"]),
    ("pretrain resumes", "pre/checkpoint.pt",
     ["pretrain", "{classes}", "--out", "{pre}", "--arch", "{run}/arch.json", "--steps", "1", "--device", "cpu",
      "--no-progress"]),
]


@pytest.mark.parametrize(("name", "evil", "args"), PATHS, ids=[p[0] for p in PATHS])
def test_every_command_refuses_a_checkpoint_that_would_run_code(base, tmp_path, name, evil, args):
    run0, classes = base
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    if name == "model.backbone_weights":  # read only when training starts afresh
        (run / "supernet" / "checkpoint.pt").unlink()
    marker = tmp_path / "marker"
    path = evil_checkpoint(tmp_path / evil, marker, "current" if "resumes" in name else "legacy")
    blob = path.read_bytes()
    filled = [a.format(run=run, evil=path, classes=classes, pre=tmp_path / "pre") for a in args]
    assert_refused(invoke(*filled), marker, str(path), "refused")
    assert path.read_bytes() == blob


def test_configs_and_architectures_that_would_run_code_are_refused(base, tmp_path):
    run0, classes = base
    marker = tmp_path / "marker"
    yaml_text = EVIL_YAML.format(marker=marker)
    bad_cfg = tmp_path / "evil.yaml"
    bad_cfg.write_text(yaml_text)
    for args in (
        ["train-supernet", "--config", bad_cfg, "--out", tmp_path / "r", "--dry-run"],
        ["arch", "show", run0 / "arch.json", "--config", bad_cfg],
        ["pretrain-supernet", classes, "--out", tmp_path / "pre", "--pretrain-config", bad_cfg, "--device", "cpu"],
    ):
        assert_refused(invoke(*args), marker, str(bad_cfg))
    for name, text in (("arch.yaml", yaml_text), ("arch.json", None)):
        arch = tmp_path / name
        if text is None:
            evil_checkpoint(arch, marker, "legacy")  # a pickle where JSON is expected
        else:
            arch.write_text(text)
        assert_refused(invoke("arch", "show", arch), marker, str(arch))
        assert_refused(invoke("retrain", "--out", tmp_path / "r2", *STAGE, "--arch", arch), marker, str(arch))
