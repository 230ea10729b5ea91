"""Training profiles: one module, one resolver for built-in and table profiles, and ``run_cell`` goes through it."""

from __future__ import annotations

import copy

import pytest

from hashbench.bench import profiles, run, spec
from hashbench.bench.profiles import PROFILES, resolve_profile
from hashbench.bench.spec import SpecError, parse_spec
from hashbench.registry import resolve_method

TABLE = {
    "title": "t",
    "protocol": "fashion-mnist",
    "bits": [12],
    "methods": ["DPSH", "DFEH", "DFEH-w0"],
    "metric": "mAP@all",
    "variants": {"DFEH-w0": {"method": "DFEH", "kwargs": {"alpha": 0.0, "beta": 0.0}}},
    "profiles": {
        "quick": {"lr": 0.1},  # a built-in's name: the built-in is its base
        "demo": {"base": "quick", "max_epochs": 2, "data": {"image_size": 64, "augment": True}},
        "bare": {"max_epochs": 3},  # neither a built-in's name nor a base: only its own settings
        "paper": {
            "base": "paper",
            "lr": 0.5,
            "data": {"transform": "imagenet", "image_size": 64},
            "per_method": {
                "dfeh": {"lr": 0.25, "backbone": "dsh_cnn", "data": {"image_size": 32}},
                "DFEH-w0": {"lr": 0.125, "data": {"augment": False}},
            },
        },
    },
}


def test_one_profiles_module_and_its_re_exports() -> None:
    assert set(PROFILES) == {"smoke", "quick", "converged", "paper"}
    assert profiles.BUILTIN_PROFILES == ("smoke", "quick", "converged", "paper")
    assert run.PROFILES is PROFILES  # benchmarks import it from hashbench.bench.run
    assert spec.resolve_profile is resolve_profile  # one function, importable from the spec module too
    assert PROFILES["quick"] == {"max_epochs": 10, "batch_size": 128, "optimizer": "adam", "lr": 1e-3}
    assert PROFILES["smoke"]["max_epochs"] == 1 and PROFILES["smoke"]["train_limit"] == 256
    # converged: quick's optimiser settings, early stopping on validation mAP with a stated patience and cap
    assert PROFILES["converged"] == {**PROFILES["quick"], "max_epochs": 15, "patience": 3}


def test_builtin_profiles_resolve_to_copies() -> None:
    for name in ("smoke", "quick"):
        settings = resolve_profile(None, name)
        assert settings == PROFILES[name] and settings is not PROFILES[name]
        settings["lr"] = 99.0
        assert PROFILES[name]["lr"] == 1e-3
    assert resolve_profile(None, "quick", resolve_method("DPSH")) == PROFILES["quick"]  # a class changes nothing
    with pytest.raises(ValueError, match=r"unknown profile 'nope' \(known: smoke, quick, converged, paper\)"):
        resolve_profile(None, "nope")


def test_paper_is_the_methods_own_recipe() -> None:
    for name in ("DPSH", "DFEH"):
        cls = resolve_method(name)
        settings = resolve_profile(None, "paper", cls)
        assert settings == cls.paper_training and settings is not cls.paper_training
    assert resolve_profile(None, "paper") == {}  # no method, no recipe


def test_resolved_settings_pass_through_as_a_copy() -> None:
    settings = {"max_epochs": 2, "batch_size": 8, "data": {"image_size": 32}}
    out = resolve_profile(None, settings)
    assert out == settings and out is not settings
    assert resolve_profile(parse_spec(copy.deepcopy(TABLE)), settings, resolve_method("DPSH")) == settings


def test_table_profile_precedence() -> None:
    table = parse_spec(copy.deepcopy(TABLE), name="prec")
    dpsh, dfeh = resolve_method("DPSH"), resolve_method("DFEH")
    # base (the built-in of the same name) -> the table's overrides
    assert resolve_profile(table, "quick") == {**PROFILES["quick"], "lr": 0.1}
    assert resolve_profile(table, "demo", dpsh) == {
        **PROFILES["quick"],
        "max_epochs": 2,
        "data": {"image_size": 64, "augment": True},
    }
    assert resolve_profile(table, "bare", dpsh) == {"max_epochs": 3}
    # a built-in the table does not redefine
    assert resolve_profile(table, "smoke") == PROFILES["smoke"]
    # paper: the method's recipe -> the table's settings -> per_method for the base method -> for the row
    assert resolve_profile(table, "paper", dpsh) == {
        **dpsh.paper_training,
        "lr": 0.5,
        "data": {"transform": "imagenet", "image_size": 64},
    }
    plain = resolve_profile(table, "paper", dfeh)
    assert plain == {
        **dfeh.paper_training,
        "lr": 0.25,
        "backbone": "dsh_cnn",
        "data": {"transform": "imagenet", "image_size": 32},  # a per_method ``data`` updates the profile's
    }
    row = resolve_profile(table, "paper", dfeh, "dfeh_w0")
    assert row == {**plain, "lr": 0.125, "data": {"transform": "imagenet", "image_size": 32, "augment": False}}
    assert table.profiles == parse_spec(copy.deepcopy(TABLE), name="prec").profiles  # resolving changes nothing
    with pytest.raises(SpecError, match=r"table 'prec': unknown profile 'nope' \(known: bare, converged, demo"):
        resolve_profile(table, "nope", dpsh)


class _Stop(Exception):
    """Raised by the spies below to end a run_cell call before anything trains."""


def _settings_run_cell_uses(monkeypatch: pytest.MonkeyPatch, method: str, profile: object) -> dict:
    """What run_cell resolves ``profile`` to, and the global batch size it hands the datamodule."""
    seen: dict = {}

    def spy_resolve(*args: object, **kwargs: object) -> dict:
        seen["asked"] = args[1]
        seen["settings"] = resolve_profile(*args, **kwargs)
        return copy.deepcopy(seen["settings"])

    def spy_datamodule(spec_: object, batch_size: int, seed: int) -> None:
        seen["batch_size"] = batch_size
        raise _Stop

    monkeypatch.setattr(run, "resolve_profile", spy_resolve)
    monkeypatch.setattr(run, "instantiate_datamodule", spy_datamodule)
    with pytest.raises(_Stop):
        run.run_cell(method, profile=profile, datamodule={"class_path": "hashbench.testing.SyntheticHashingDataModule"})
    return seen


@pytest.mark.parametrize("name", ["smoke", "quick", "converged", "paper"])
@pytest.mark.parametrize("method", ["DPSH", "dfeh", "hashbench.bench.testing.PointwiseTestHash"])
def test_run_cell_resolves_a_name_like_the_mapping_it_stands_for(
    monkeypatch: pytest.MonkeyPatch, name: str, method: str
) -> None:
    by_name = _settings_run_cell_uses(monkeypatch, method, name)
    resolved = resolve_profile(None, name, resolve_method(method))
    by_mapping = _settings_run_cell_uses(monkeypatch, method, resolved)
    assert by_name["asked"] == name and by_mapping["asked"] == resolved  # both go through profiles.resolve_profile
    assert by_name["settings"] == by_mapping["settings"] == resolved
    assert by_name["batch_size"] == by_mapping["batch_size"] == resolved.get("batch_size", 128)


def test_run_cell_rejects_an_unknown_profile_name() -> None:
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        run.run_cell("DPSH", profile="nope", datamodule={"class_path": "hashbench.testing.SyntheticHashingDataModule"})


def test_run_cell_with_a_name_and_with_its_settings_trains_the_same(tmp_path) -> None:
    """End to end on a shallow method (fast): same executed recipe and the same metrics."""
    dm = {"class_path": "hashbench.testing.SyntheticHashingDataModule", "init_args": {"num_train": 64}}
    lsh = resolve_method("LSH")
    by_name = run.run_cell("LSH", n_bits=8, profile="smoke", datamodule=dm, root_dir=tmp_path / "a")
    by_map = run.run_cell(
        "LSH", n_bits=8, profile=resolve_profile(None, "smoke", lsh), datamodule=dm, root_dir=tmp_path / "b"
    )
    assert by_name.recipe == by_map.recipe and by_name.recipe["batch_size"] == PROFILES["smoke"]["batch_size"]
    assert by_name.metrics == by_map.metrics


SYNTH = {"class_path": "hashbench.testing.SyntheticHashingDataModule", "init_args": {"num_train": 64}}


def test_early_stopping_stops_once_validation_map_stops_improving(tmp_path) -> None:
    """Early stopping ends the fit exactly ``patience`` epochs after the best validation epoch, which is the
    checkpoint tested; a cell still improving (or with a patience beyond the cap) runs to ``max_epochs``."""
    method = "hashbench.bench.testing.PointwiseTestHash"
    prof = {"max_epochs": 40, "patience": 2, "batch_size": 16}
    result = run.run_cell(method, n_bits=8, profile=prof, datamodule=SYNTH, root_dir=tmp_path)
    stop = result.recipe["early_stopping"]
    assert stop == {"patience": 2, "min_delta": 0.0, "stopped_early": True, "max_epochs": 40}
    assert result.recipe["epochs"] < 40 and result.recipe["epochs"] - 1 - result.best_epoch == 2
    capped = run.run_cell(method, n_bits=8, profile={**prof, "max_epochs": 3, "patience": 50}, datamodule=SYNTH)
    assert capped.recipe["epochs"] == 3 and capped.recipe["early_stopping"]["stopped_early"] is False
    plain = run.run_cell(method, n_bits=8, profile={"max_epochs": 2, "batch_size": 16}, datamodule=SYNTH)
    assert "early_stopping" not in plain.recipe and plain.recipe["epochs"] == 2


def test_early_stopping_needs_a_validation_split() -> None:
    from hashbench.testing import SyntheticHashingDataModule

    dm = SyntheticHashingDataModule(num_train=64)
    dm.val_dataloader = lambda: []  # what a datamodule with val_fraction=0 returns
    with pytest.raises(ValueError, match="no validation split"):
        run.run_cell("LSH", n_bits=8, profile={"max_epochs": 3, "patience": 2}, datamodule=dm)
    with pytest.raises(ValueError, match="patience must be a positive"):
        run.run_cell("LSH", n_bits=8, profile={"max_epochs": 3, "patience": 0}, datamodule=SYNTH)
