"""Small pure pieces of the engine: schedules, splits, batch order, run-folder lock, checkpoints."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autopanoptic.config import DataConfig
from autopanoptic.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from autopanoptic.engine.datasets import batch_indices, make_splits
from autopanoptic.engine.runs import RunDir, RunLockedError
from autopanoptic.engine.schedule import WARMUP_START, lr_at
from autopanoptic.errors import CheckpointError, DataError


@given(total=st.integers(1, 500), warmup=st.integers(0, 50), base=st.floats(1e-4, 1.0))
def test_cosine_warmup_schedule_shape(total, warmup, base):
    lrs = [lr_at(s, base_lr=base, total_steps=total, warmup_steps=warmup) for s in range(total + 1)]
    assert all(0.0 <= lr <= base * (1 + 1e-12) for lr in lrs)
    if warmup:
        assert lrs[0] == pytest.approx(base * WARMUP_START * (0.5 * (1 + np.cos(0))))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    after = lrs[warmup:]
    assert all(a >= b - 1e-12 for a, b in zip(after, after[1:]))  # non-increasing after warm-up


@given(milestones=st.lists(st.integers(0, 100), max_size=4), step=st.integers(0, 120))
def test_step_schedule_counts_milestones(milestones, step):
    lr = lr_at(step, base_lr=1.0, total_steps=100, schedule="step", milestones=milestones, gamma=0.1)
    assert lr == pytest.approx(0.1 ** sum(step >= m for m in milestones))


@given(n=st.integers(4, 300), ev=st.floats(0.05, 0.5), val=st.floats(0.05, 0.5), seed=st.integers(0, 5))
def test_splits_are_disjoint_deterministic_and_cover(n, ev, val, seed):
    cfg = DataConfig(eval_fraction=ev, val_fraction=val, split_seed=seed)
    try:
        s = make_splits(n, cfg, calib_images=6)
    except DataError:
        return
    assert s == make_splits(n, cfg, calib_images=6)
    assert not set(s.eval) & set(s.train)
    assert sorted(s.eval + s.train) == list(range(n))
    assert set(s.val) <= set(s.train) and set(s.calib) <= set(s.train) and not set(s.calib) & set(s.val)
    sep = make_splits(n, cfg, n_eval_source=7)
    assert sep.eval == tuple(range(7)) and sorted(sep.train) == list(range(n))


@given(n=st.integers(1, 30), batch=st.integers(1, 5), world=st.integers(1, 3), seed=st.integers(0, 3))
def test_batch_order_covers_each_epoch_once_and_ranks_do_not_overlap(n, batch, world, seed):
    pool = list(range(100, 100 + n))
    stream = []
    k = 0
    while len(stream) < 2 * n:
        for rank in range(world):
            stream += batch_indices(pool, batch, k, seed=seed, rank=rank, world_size=world)
        k += 1
    assert sorted(stream[:n]) == pool and sorted(stream[n : 2 * n]) == pool


def test_run_folder_lock(tmp_path):
    with RunDir(tmp_path / "r") as run:
        assert run.lock_path.exists()
        with pytest.raises(RunLockedError, match="in use by process"):
            RunDir(tmp_path / "r").acquire()
    assert not (tmp_path / "r" / ".lock").exists()
    # a lock left behind by a dead process on this host is taken over
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    import socket

    (tmp_path / "r" / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    with RunDir(tmp_path / "r"):
        pass


def test_checkpoint_round_trip_restores_random_state(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3))
    path = save_checkpoint(tmp_path / "c.pt", {"rng": state, "w": torch.arange(4)})
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], torch.arange(4))
    set_rng_state(loaded["rng"])
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_foreign_or_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an autopanoptic checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not an autopanoptic checkpoint, or its header is damaged"):
        load_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "torn.pt").write_bytes(b"autopanoptic-checkpoint 2 sha256=0")
    with pytest.raises(CheckpointError, match="truncated or corrupt checkpoint \\(damaged or incomplete header"):
        load_checkpoint(tmp_path / "torn.pt")


@pytest.mark.parametrize(
    "policy, expected",
    [("path-priority", "PathPriority"), ("evolution", "Evolution"), ("random", "RandomSearch"), ("guided", "GuidedSearch")],
)
def test_every_configurable_policy_is_built_with_the_budget_and_constraint(policy, expected):
    from autopanoptic.config import SearchConfig
    from autopanoptic.engine.search import make_policy

    def never_xception(arch):
        return 3 not in arch

    made = make_policy(SearchConfig(policy=policy, evaluations=24, population=12, generations=2), never_xception)
    assert type(made).__name__ == expected
    assert made.constraint is never_xception
