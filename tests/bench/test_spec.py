"""Table specs: every shipped spec parses; malformed specs fail with a message naming the key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from hashbench.bench.spec import (
    SpecError,
    Variant,
    list_specs,
    load_spec,
    parse_spec,
    resolve_methods,
    resolve_profile,
)
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
    assert {
        "svhn",
        "dfeh-ablation-cifar10",
        "dfeh-ablation-nuswide21",
        "dfeh-ablation-svhn",
        "dsh-cifar10",
        "dsh-nuswide21",
        "mirflickr25k-dcmh",
        "nuswide21-clip",
    } <= set(names)
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
    found, missing = resolve_methods(parse_spec({**VALID, "methods": ["dpsh", "NoSuchHash", "DPSH"]}))
    assert found == ["DPSH"] and missing == ["NoSuchHash"]


def test_profiles_resolve_builtin_table_and_paper() -> None:
    spec = parse_spec({**VALID, "profiles": {"demo": {"base": "quick", "max_epochs": 2}, "quick": {"lr": 0.1}}})
    assert resolve_profile(spec, "demo")["max_epochs"] == 2
    assert resolve_profile(spec, "demo")["batch_size"] == 128
    assert resolve_profile(spec, "quick")["lr"] == 0.1 and resolve_profile(spec, "quick")["max_epochs"] == 10
    assert resolve_profile(spec, "paper", get_method("DPSH")) == get_method("DPSH").paper_training
    with pytest.raises(SpecError, match="unknown profile 'nope'"):
        resolve_profile(spec, "nope")


# ----------------------------------------------------------------------------------------------------- variants
ABLATION = {
    "title": "ablation",
    "protocol": "fashion-mnist",
    "bits": [48],
    "methods": ["DFEH", "DFEH-w0.1", "dfeh_w0"],
    "metric": "mAP@all",
    "method_kwargs": {"DFEH": {"margin": 10.0}},
    "variants": {
        "DFEH-w0.1": {"method": "dfeh", "kwargs": {"alpha": 0.1, "beta": 0.1}},
        "DFEH-w0": {"method": "DFEH", "kwargs": {"alpha": 0.0, "beta": 0.0}},
    },
    "reported": {"methods": {"DFEH-w0.1": {48: 0.25}}},
}


def test_variants_parse_and_resolve_as_rows() -> None:
    spec = parse_spec(copy.deepcopy(ABLATION), name="ab")
    assert spec.variants["DFEH-w0.1"] == Variant("DFEH-w0.1", "DFEH", {"alpha": 0.1, "beta": 0.1})
    assert spec.variants["DFEH-w0"].method == "DFEH"  # the registered (canonical) name, whatever the spelling
    assert spec.variant_for("dfeh_w0.1") is spec.variants["DFEH-w0.1"] and spec.variant_for("DFEH") is None
    found, missing = resolve_methods(spec)
    # Variant rows count as registered, under their name as spelled in ``variants``; duplicates collapse.
    assert found == ["DFEH", "DFEH-w0.1", "DFEH-w0"] and missing == []
    assert spec.reported_for("dfeh-w0.1") == {48: 0.25}
    assert parse_spec({**VALID, "reported": None}).variants == {}


def test_variant_of_an_out_of_tree_class_keeps_its_import_path() -> None:
    raw = {**VALID, "methods": ["Mine"], "reported": None}
    raw["variants"] = {"Mine": {"method": "hashbench.methods.dpsh.DPSH", "kwargs": {"eta": 1.0}}}
    spec = parse_spec(raw)
    assert spec.variants["Mine"].method == "hashbench.methods.dpsh.DPSH"  # as run_cell resolves an import path
    assert resolve_methods(spec) == (["Mine"], [])
    raw["variants"] = {"Mine": {"method": "hashbench.methods.dpsh.DPSH", "kwargs": {"etaa": 1.0}}}
    with pytest.raises(SpecError, match=re.escape("takes no argument(s) ['etaa']")):
        parse_spec(raw)


def _variant_raw(**patch: object) -> dict:
    raw = copy.deepcopy(ABLATION)
    raw.update(patch)
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_variant_raw(variants=["DFEH-w0.1"]), "'variants' must be a mapping"),
        (_variant_raw(variants={"DFEH-w0.1": "DFEH"}), "variants.DFEH-w0.1 must be a mapping"),
        (_variant_raw(variants={"DFEH-w0.1": {"method": "DFEH", "kwarg": {}}}), "unknown key(s) ['kwarg']"),
        (_variant_raw(variants={"DFEH-w0.1": {"kwargs": {"alpha": 0.1}}}), "variants.DFEH-w0.1.method must be"),
        (_variant_raw(variants={"DFEH-w0.1": {"method": "NoSuchHash"}}), "'NoSuchHash' is not a registered method"),
        (_variant_raw(variants={"DFEH-w0.1": {"method": "DFEH", "kwargs": [0.1]}}), "kwargs must be a mapping"),
        (_variant_raw(variants={"DFEH-w0.1": {"method": "DFEH", "kwargs": None}}), "kwargs must be a mapping"),
        (
            _variant_raw(variants={"DFEH-w0.1": {"method": "DFEH", "kwargs": {"alpah": 0.1}}}),
            "DFEH takes no argument(s) ['alpah']",
        ),
        (_variant_raw(variants={"DFEH-w0.1": {"method": "DFEH", "kwargs": {"n_bits": 8}}}), "'n_bits' comes from"),
        (
            _variant_raw(methods=["DFEH", "dpsh"], variants={"dpsh": {"method": "DFEH"}}),
            "clashes with the registered method 'DPSH'",
        ),
        (
            _variant_raw(methods=["A-1"], variants={"A-1": {"method": "DFEH"}, "a_1": {"method": "DFEH"}}),
            "the same row name as variants.A-1",
        ),
        (
            _variant_raw(methods=["A", "B"], variants={"A": {"method": "B"}, "B": {"method": "DFEH"}}),
            "variants.A.method 'B' is a variant",
        ),
        (_variant_raw(methods=["DFEH", "DFEH-w0.1"]), "variant(s) ['DFEH-w0'] are defined but not listed"),
        (_variant_raw(methods="all", reported=None), "explicit 'methods' list"),
        (
            _variant_raw(method_kwargs={"dfeh-w0": {"alpha": 0.5}}),
            "method_kwargs.dfeh-w0: 'dfeh-w0' is a variant; put its arguments under variants.dfeh-w0.kwargs",
        ),
    ],
)
def test_bad_variants_raise_clear_errors(raw: dict, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(raw, name="bad")


# ----------------------------------------------------------------------------------------- per-method profiles
def _profiles(per_method: object) -> dict:
    return {**VALID, "reported": None, "profiles": {"paper": {"base": "paper", "per_method": per_method}}}


@pytest.mark.parametrize(
    ("per_method", "message"),
    [
        ([1], "profiles.paper.per_method must map method (or variant) names"),
        ({"DPSH": 3}, "profiles.paper.per_method.DPSH must be a mapping"),
        ({"DSH": {"lr": 1.0}}, "profiles.paper.per_method.DSH: not a method or variant of this table"),
        ({"DPSH": {"base": "quick"}}, "['base'] can only be set for the whole profile"),
        ({"DPSH": {"data": 64}}, "profiles.paper.per_method.DPSH.data must be a mapping"),
    ],
)
def test_bad_per_method_profile_entries_raise(per_method: object, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(_profiles(per_method), name="bad")


def test_per_method_profile_settings_apply_to_their_row_only() -> None:
    raw = copy.deepcopy(ABLATION)
    raw["profiles"] = {
        "paper": {
            "base": "paper",
            "lr": 0.5,
            "data": {"transform": "imagenet", "image_size": 64},
            "per_method": {
                "dfeh": {"lr": 0.25, "backbone": "dsh_cnn", "data": {"image_size": 32}},
                "DFEH-w0": {"lr": 0.125, "data": {"augment": False}},
            },
        }
    }
    spec = parse_spec(raw, name="pm")
    dfeh = get_method("DFEH")
    plain = resolve_profile(spec, "paper", dfeh)
    assert plain == {
        **dfeh.paper_training,
        "lr": 0.25,
        "backbone": "dsh_cnn",
        "data": {"transform": "imagenet", "image_size": 32},  # per-method data updates the profile's data
    }
    # A variant row gets the base method's entry, then its own on top.
    row = resolve_profile(spec, "paper", dfeh, "DFEH-w0")
    assert row["lr"] == 0.125 and row["backbone"] == "dsh_cnn"
    assert row["data"] == {"transform": "imagenet", "image_size": 32, "augment": False}
    assert resolve_profile(spec, "paper", dfeh, "DFEH-w0.1") == plain
    # The spec itself is not modified by resolving.
    assert spec.profiles["paper"]["data"] == {"transform": "imagenet", "image_size": 64}
    # Without per_method a table profile resolves exactly as before (plain update of the base).
    before = parse_spec({**VALID, "profiles": {"paper": {"base": "paper", "lr": 0.5}}})
    assert resolve_profile(before, "paper", get_method("DPSH")) == {**get_method("DPSH").paper_training, "lr": 0.5}


# ---------------------------------------------------------------------------------------------- shipped specs
def _spec_profiles() -> list[tuple[str, str]]:
    pairs = []
    for name in list_specs():
        spec = load_spec(name)
        for profile in dict.fromkeys([spec.profile, *spec.profiles, "paper"]):
            pairs.append((name, profile))
    return pairs


@pytest.mark.parametrize(("name", "profile"), _spec_profiles())
def test_every_shipped_spec_expands_for_its_profiles(name: str, profile: str) -> None:
    import warnings

    from hashbench.bench.grid import expand_grid

    spec = load_spec(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported-only / not-yet-registered rows
        cells, missing = expand_grid(spec, profile)
    registered, _ = resolve_methods(spec)
    assert len(cells) == len(registered) * len(spec.bits) * len(spec.seeds) > 0
    assert {c.method for c in cells} == set(registered)
    assert len({c.key for c in cells}) == len(cells)
    for cell in cells:
        assert get_method(cell.config["method"]).method_name == cell.config["method"]  # what run_cell is called with
        assert ("variant" in cell.config) == (spec.variant_for(cell.method) is not None)
