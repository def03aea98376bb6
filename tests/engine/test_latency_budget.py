"""``search.max_latency_ms`` / ``search.latency_table`` / ``search.objectives``: the config keys,
the search's table, and every policy kept within the latency budget."""

from __future__ import annotations

import numpy as np
import pytest

from autopanoptic.config import SearchConfig, load_config
from autopanoptic.engine.latency import search_latency_table
from autopanoptic.engine.restrict import OpRestriction
from autopanoptic.engine.search import CostBudget, budget_for, make_policy
from autopanoptic.errors import ConfigError
from autopanoptic.nn.latency import LatencyKey, LatencyTable
from autopanoptic.search import run
from autopanoptic.search.spaces import auto_panoptic

SPACE = auto_panoptic((1, 1, 1, 1))


def synthetic_table(space, seed=0, **key):
    rng = np.random.default_rng(seed)
    k = dict(device="cpu: x", torch_version="2.5", image_size=64, threads=1, preset="tiny",
             widths=(16, 32, 64, 128, 256), num_thing_classes=2, num_stuff_classes=3,
             layers=[(layer.name, layer.ops) for layer in space.layers])
    k.update(key)
    return LatencyTable(LatencyKey(**k), 5.0, [rng.uniform(0.1, 3.0, n) for n in space.n_choices])


POLICIES = [
    SearchConfig(policy="path-priority", cycles=2),
    SearchConfig(policy="evolution", population=10, generations=3),
    SearchConfig(policy="random", evaluations=20),
    SearchConfig(policy="guided", evaluations=20),
]


@pytest.mark.parametrize("cfg", POLICIES, ids=lambda c: c.policy)
def test_every_policy_evaluates_only_architectures_within_the_latency_budget(cfg):
    table = synthetic_table(SPACE)
    r = OpRestriction.build(SPACE, ["dfconv3x3", "dfconv5x5"])
    sampled = [table.predict(r.to_full(r.sub.sample(s))) for s in range(400)]
    # a budget that many random architectures violate (path-priority needs whole fair cycles within it)
    budget = float(np.quantile(sampled, 0.9 if cfg.policy == "path-priority" else 0.3))
    import attrs

    cfg = attrs.evolve(cfg, max_latency_ms=budget)
    constraint = budget_for(cfg, r.to_full, latency=table.predict)
    assert constraint.name.endswith(f"latency<={budget} ms)")
    # the fitness prefers slow architectures: an unconstrained search would leave the budget
    result = run(make_policy(cfg, constraint), r.sub, lambda archs: [table.predict(r.to_full(a)) for a in archs],
                 seed=0, progress=False)
    assert len(result.history) > 0
    assert all(table.predict(r.to_full(a)) <= budget for a, _ in result.history)
    assert table.predict(r.to_full(result.best)) <= budget


def test_without_a_latency_budget_the_constraint_name_is_unchanged():
    cfg = SearchConfig(max_macs=1e6)
    b = budget_for(cfg, lambda a: a, count=lambda a: (1, 1))
    assert b.name == "budget(params<=None, macs<=1000000.0)"  # journals written before still resume
    assert budget_for(SearchConfig(), lambda a: a) is None


def test_a_budget_without_its_counter_or_table_is_refused():
    with pytest.raises(ConfigError, match="latency table"):
        budget_for(SearchConfig(max_latency_ms=10), lambda a: a)
    with pytest.raises(ConfigError, match="cost counter"):
        budget_for(SearchConfig(max_params=10, max_latency_ms=10), lambda a: a, latency=lambda a: 1.0)


def test_latency_and_cost_budgets_combine():
    table = synthetic_table(SPACE)
    arch = SPACE.sample(0)
    ms = table.predict(arch)
    both = CostBudget(lambda a: (100, 1000), lambda a: a, max_params=150, latency=table.predict, max_latency_ms=ms)
    assert both(arch)
    assert not CostBudget(lambda a: (100, 1000), lambda a: a, max_params=50, latency=table.predict, max_latency_ms=ms)(arch)
    assert not CostBudget(lambda a: (100, 1000), lambda a: a, latency=table.predict, max_latency_ms=ms - 0.01)(arch)


def test_a_latency_margin_tightens_the_budget_by_its_fraction():
    table = synthetic_table(SPACE)
    arch = SPACE.sample(0)
    ms = table.predict(arch)
    at = lambda margin, budget: CostBudget(None, lambda a: a, latency=table.predict, max_latency_ms=budget,  # noqa: E731
                                           latency_margin=margin)
    assert at(0.0, ms)(arch) and not at(0.05, ms)(arch)
    assert at(0.05, ms * 1.05 + 1e-9)(arch) and not at(0.05, ms * 1.05 - 1e-6)(arch)
    assert at(0.05, ms).name.endswith(f"latency x 1.05<={ms} ms)")
    assert at(0.0, ms).name.endswith(f", latency<={ms} ms)")  # as before margins: older journals resume
    cfg = SearchConfig(max_latency_ms=ms, latency_margin=0.05)
    assert not budget_for(cfg, lambda a: a, latency=table.predict)(arch)


def test_the_check_names_the_margin_that_keeps_its_networks_within_a_budget():
    from autopanoptic.nn.latency import LatencyCheck

    res = LatencyCheck(((0,), (1,), (2,)), (10.0, 20.0, 30.0), (10.5, 19.0, 30.3))
    assert res.worst_under == pytest.approx(0.05)
    assert all(m <= p * (1 + res.worst_under) + 1e-12 for p, m in zip(res.predicted_ms, res.measured_ms))
    assert "search.latency_margin=0.050" in res.summary()
    assert LatencyCheck(((0,),), (10.0,), (9.0,)).worst_under == 0.0


@pytest.mark.parametrize("override,message", [
    ("search.objectives=[latency, fitness]", "must start with fitness"),
    ("search.objectives=[fitness, speed]", "distinct names among latency, macs, params"),
    ("search.objectives=[fitness, macs, macs]", "distinct"),
    ("search.max_latency_ms=0", "must be > 0"),
])
def test_bad_objectives_and_budgets_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_objectives_accept_a_list_or_a_comma_separated_string():
    assert load_config("tiny", ["search.objectives=fitness,latency"]).search.objectives == ("fitness", "latency")
    assert load_config("tiny", ["search.objectives=[fitness, params, macs]"]).search.objectives == ("fitness", "params", "macs")
    assert load_config("tiny").search.objectives == ("fitness",)


class _Model:
    def __init__(self, config, space):
        self.config, self.search_space = config, space


def test_the_search_table_must_fit_the_searched_network(tmp_path):
    from autopanoptic.nn.supernet import make_config

    net = make_config("tiny", 2, 3, stage_blocks=(1, 1, 1, 1))
    model = _Model(net, net.search_space())
    path = synthetic_table(SPACE, device="cuda: target").save(tmp_path / "t.json")
    cfg = load_config("tiny", [f"search.latency_table={path}", "search.max_latency_ms=12"])
    table = search_latency_table(cfg, model)  # another device is fine: the table names the target
    assert table is not None and table.key.device == "cuda: target"
    assert search_latency_table(load_config("tiny"), model) is None
    with pytest.raises(ConfigError, match="need search.latency_table"):
        search_latency_table(load_config("tiny", ["search.max_latency_ms=12"]), model)
    with pytest.raises(ConfigError, match="need search.latency_table"):
        search_latency_table(load_config("tiny", ["search.objectives=[fitness, latency]"]), model)
    wider = make_config("tiny", 2, 3, stage_blocks=(1, 1, 1, 1), widths=(8, 16, 24, 32, 48))
    with pytest.raises(ConfigError, match=r"search.latency_table .*widths"):
        search_latency_table(cfg, _Model(wider, wider.search_space()))


def test_the_dry_run_shows_the_budget_and_refuses_a_missing_table(tmp_path):
    from click.testing import CliRunner

    from autopanoptic_cli.main import main

    path = synthetic_table(SPACE).save(tmp_path / "t.json")
    args = ["search", "--dry-run", "--out", str(tmp_path / "run"), "--set", "search.max_latency_ms=20",
            "--set", "search.objectives=[fitness, latency]"]
    res = CliRunner().invoke(main, [*args, "--set", f"search.latency_table={path}"])
    assert res.exit_code == 0, res.output
    assert "latency table of cpu: x" in res.output and "predicted latency <= 20.0 ms" in res.output
    assert "Pareto set of fitness, latency" in res.output and not (tmp_path / "run").exists()
    res = CliRunner().invoke(main, [*args, "--set", f"search.latency_table={tmp_path / 'none.json'}"])
    assert res.exit_code == 2 and "latency table not found" in res.output
