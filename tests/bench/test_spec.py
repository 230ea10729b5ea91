"""Table specs: every shipped spec parses; malformed specs fail with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hashbench.bench.spec import SpecError, list_specs, load_spec, parse_spec, resolve_methods, resolve_profile
from hashbench.registry import _REGISTRY, get_method, list_methods

VALID = {
    "title": "t",
    "protocol": "fashion-mnist",
    "bits": [12, 24],
    "methods": ["DPSH", "KSH"],
    "metric": "mAP@all",
    "seeds": 2,
    "reported": {"source": "paper", "methods": {"DPSH": {12: 0.5}, "KSH": {12: 0.3, 24: 0.4}}},
}


def test_every_shipped_spec_parses() -> None:
    names = list_specs()
    assert {"cifar10", "nuswide21", "dpsh-cifar10", "fashion-mnist", "crossmodal-demo"} <= set(names)
    for name in names:
        spec = load_spec(name)
        assert spec.name == name and spec.title and spec.bits


def test_dfeh_tables_carry_the_papers_numbers() -> None:
    cifar = load_spec("cifar10")
    assert cifar.bits == [12, 24, 36, 48] and cifar.protocol == "cifar10" and cifar.metric == "mAP@all"
    assert cifar.reported_for("DFEH") == {12: 0.6753, 24: 0.7216, 36: 0.7641, 48: 0.7864}
    assert cifar.reported_for("cca-itq")[48] == 0.2176
    nus = load_spec("nuswide21")
    assert nus.metric == "mAP@5000" and nus.reported_for("DPSH")[48] == 0.5881
    dpsh = load_spec("dpsh-cifar10")
    assert dpsh.protocol == "cifar10-1" and dpsh.bits == [12, 24, 32, 48]
    assert dpsh.reported_for("DPSH") == {12: 0.713, 24: 0.727, 32: 0.744, 48: 0.757}


def test_parse_valid_spec_and_seed_count() -> None:
    spec = parse_spec(VALID, name="x")
    assert spec.seeds == [0, 1]
    assert spec.reported == {"DPSH": {12: 0.5}, "KSH": {12: 0.3, 24: 0.4}}
    assert spec.reported_source == "paper"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"bitz": [12]}, "unknown key"),
        ({"bits": []}, "missing required"),
        ({"bits": [12, "24"]}, "'bits' entries must be integers"),
        ({"bits": [12, 12]}, "duplicates"),
        ({"methods": "some"}, "'methods'"),
        ({"metric": "accuracy"}, "'metric'"),
        ({"seeds": 0}, "'seeds'"),
        ({"reported": {"source": "p", "methods": {"DPSH": {16: 0.5}}}}, "16 bits"),
        ({"reported": {"source": "p", "methods": {"DPSH": {12: 1.5}}}}, "in [0, 1]"),
        ({"reported": {"DPSH": {12: 0.5}}}, "'reported' must be a mapping with"),
        ({"profiles": {"demo": 3}}, "profiles.demo"),
        ({"datamodule": {"init_args": {}}}, "class_path"),
    ],
)
def test_bad_spec_raises_clear_error(patch: dict, message: str) -> None:
    raw = copy.deepcopy(VALID)
    raw.update(patch)
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse_spec(raw, name="bad")


def test_missing_spec_lists_available(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="available specs"):
        load_spec("no-such-table")
    broken = tmp_path / "broken.yaml"
    broken.write_text("title: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)
    listy = tmp_path / "listy.yaml"
    listy.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(SpecError, match="mapping"):
        load_spec(listy)


def test_all_resolves_from_registry_without_cross_modal(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeCross(get_method("DPSH")):  # type: ignore[misc, valid-type]
        supervision = "cross-modal"

    monkeypatch.setitem(_REGISTRY, "FakeCross", FakeCross)
    spec = parse_spec({**VALID, "methods": "all", "reported": None}, name="all")
    found, missing = resolve_methods(spec)
    assert "FakeCross" in list_methods() and "FakeCross" not in found
    assert "DPSH" in found and missing == []
    assert found == [m for m in list_methods() if get_method(m).supervision != "cross-modal"]


def test_unregistered_methods_are_reported_missing() -> None:
    found, missing = resolve_methods(parse_spec({**VALID, "methods": ["dpsh", "KSH", "DPSH"]}))
    assert found == ["DPSH"] and missing == ["KSH"]


def test_profiles_resolve_builtin_table_and_paper() -> None:
    spec = parse_spec({**VALID, "profiles": {"demo": {"base": "quick", "max_epochs": 2}, "quick": {"lr": 0.1}}})
    assert resolve_profile(spec, "demo")["max_epochs"] == 2
    assert resolve_profile(spec, "demo")["batch_size"] == 128
    assert resolve_profile(spec, "quick")["lr"] == 0.1 and resolve_profile(spec, "quick")["max_epochs"] == 10
    assert resolve_profile(spec, "paper", get_method("DPSH")) == get_method("DPSH").paper_training
    with pytest.raises(SpecError, match="unknown profile 'nope'"):
        resolve_profile(spec, "nope")
