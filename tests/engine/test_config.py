"""Configs: presets load, YAML round trip, overrides, and clear errors for bad values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopanoptic.config import PRESETS, Config, apply_overrides, load_config, save_config
from autopanoptic.errors import ConfigError


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_round_trip(name, tmp_path):
    cfg = load_config(name)
    assert load_config(save_config(cfg, tmp_path / "c.yaml")) == cfg


@given(
    steps=st.integers(1, 10**6),
    lr=st.floats(1e-6, 10, allow_nan=False),
    policy=st.sampled_from(["path-priority", "evolution", "random", "guided"]),
    exclude=st.lists(st.sampled_from(["dfconv3x3", "dfconv5x5", "atconv3x3"]), unique=True),
)
def test_overrides_set_values_and_survive_a_round_trip(tmp_path_factory, steps, lr, policy, exclude):
    cfg = apply_overrides(
        Config(),
        [f"train.steps={steps}", f"retrain.lr={lr!r}", f"search.policy={policy}", f"model.exclude_ops=[{', '.join(exclude)}]"],
    )
    assert (cfg.train.steps, cfg.retrain.lr, cfg.search.policy, cfg.model.exclude_ops) == (steps, lr, policy, tuple(exclude))
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    assert load_config(save_config(cfg, path)) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=-1", "train.lr"),
        ("train.lr=abc", "train.lr"),
        ("search.policy=greedy", "search.policy"),
        ("train.lrr=0.1", "unknown config key 'train.lrr'"),
        ("nosection.x=1", "unknown config key"),
        ("train.steps", "section.key=value"),
        ("data.eval_fraction=1.5", "data.eval_fraction"),
        ("eval.batch_size=0", "eval.batch_size"),
    ],
)
def test_bad_values_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config("tiny", [override])


def test_yaml_file_extends_a_preset_and_rejects_typos(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("preset: tiny\ntrain:\n  steps: 7\n")
    cfg = load_config(good)
    assert cfg.train.steps == 7 and cfg.train.lr == load_config("tiny").train.lr
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stpes: 7\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'train\.stpes'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
