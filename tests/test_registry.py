"""Registry behaviour, and the promise that adding a method is adding one file."""

from __future__ import annotations

import importlib
import sys
import textwrap

import lightning as L
import pytest

from hashbench import registry
from hashbench.testing import SyntheticHashingDataModule


def test_lookup_is_case_and_separator_insensitive() -> None:
    assert registry.get_method("dpsh") is registry.get_method("DPSH")
    assert "DPSH" in registry.list_methods("dp*")
    assert registry.list_methods("nothing-matches-*") == []


def test_unknown_method_lists_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="DPSH"):
        registry.get_method("no-such-method")


def test_duplicate_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @registry.register_method(name="dpsh")
        class Other:  # noqa: F841
            pass


def test_method_in_a_new_module_registers_and_trains(tmp_path, monkeypatch) -> None:
    """A method defined in a brand-new module file is picked up by the registry and trains."""
    (tmp_path / "my_toy_hash.py").write_text(
        textwrap.dedent(
            '''
            """ToyHash: a toy method for the registry test.

            Deviations from the paper: none (there is no paper).
            """
            from typing import Any

            from hashbench.methods.base import HashingMethod, Paper
            from hashbench.registry import register_method


            def toy_hash_loss(u, labels):
                target = labels @ labels.T > 0
                sim = u @ u.T / u.shape[1]
                loss = ((sim - (2.0 * target.float() - 1.0)) ** 2).mean()
                return {"loss": loss}


            @register_method
            class ToyHash(HashingMethod):
                paper = Paper(title="ToyHash", authors="nobody", venue="none", year=2026)
                supervision = "pairwise"

                def __init__(self, n_bits: int = 16, **kwargs: Any) -> None:
                    super().__init__(n_bits=n_bits, **kwargs)

                def compute_loss(self, batch):
                    return toy_hash_loss(self(batch.image), batch.labels)
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("my_toy_hash")
        assert "ToyHash" in registry.list_methods()
        model = registry.create_method("toy-hash", n_bits=8)
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        trainer.fit(model, datamodule=SyntheticHashingDataModule(num_train=32, batch_size=8))
        assert trainer.global_step == 4
    finally:
        registry._REGISTRY.pop("ToyHash", None)
        sys.modules.pop("my_toy_hash", None)


# ------------------------------------------------------------------------------------------------ the resolver
def test_resolve_method_finds_registered_names_in_any_spelling() -> None:
    dpsh = registry.resolve_method("DPSH")
    assert dpsh.method_name == "DPSH" and dpsh.__module__ == "hashbench.methods.dpsh"
    for spelling in ("dpsh", "D-P_S H", "dPsH"):
        assert registry.resolve_method(spelling) is dpsh
    assert registry.resolve_method("dmsh_ln") is registry.resolve_method("DMsH-LN")
    assert registry.get_method is registry.resolve_method  # the old name is the same function
    assert registry.canonical_method_name("d-p-s-h") == "DPSH"
    assert registry.canonical_method_name(dpsh) == "DPSH"


def test_resolve_method_takes_the_import_path_of_an_out_of_tree_class() -> None:
    from hashbench.bench.testing import PointwiseTestHash

    path = "hashbench.bench.testing.PointwiseTestHash"
    assert registry.resolve_method(path) is PointwiseTestHash
    # An out-of-tree class is named by its import path (a row name, a cell's config["method"], a cache key).
    assert registry.canonical_method_name(path) == path
    assert registry.canonical_method_name(PointwiseTestHash) == path
    # The import path of a registered class resolves to that class; the row keeps the path as written.
    assert registry.resolve_method("hashbench.methods.dpsh.DPSH") is registry.resolve_method("DPSH")
    assert registry.canonical_method_name("hashbench.methods.dpsh.DPSH") == "hashbench.methods.dpsh.DPSH"


def test_unknown_names_and_paths_are_clear_errors() -> None:
    with pytest.raises(KeyError, match=r"unknown method 'no-such-method' \(known: .*DPSH"):
        registry.resolve_method("no-such-method")
    with pytest.raises(KeyError, match="neither a registered method nor an importable class"):
        registry.resolve_method("no_such_package.module.MyHash")
    with pytest.raises(KeyError, match="neither a registered method nor an importable class"):
        registry.resolve_method("hashbench.methods.dpsh.NoSuchClass")
    with pytest.raises(TypeError, match="collections.OrderedDict.*not a HashingMethod subclass"):
        registry.resolve_method("collections.OrderedDict")
    with pytest.raises(TypeError, match="not a HashingMethod subclass"):
        registry.resolve_method("os.path.join")  # a function, not a class
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        registry.canonical_method_name("nope")


def test_aliases_resolve_to_the_registered_class() -> None:
    @registry.register_method(name="AliasHash", aliases=["Paper-Spelling"])
    class AliasHash:
        supervision = "pairwise"

    try:
        assert registry.resolve_method("paper_spelling") is AliasHash
        assert registry.canonical_method_name("PAPER SPELLING") == "AliasHash"  # tables use the registered name
        assert registry.resolve_methods(["paper-spelling", "aliashash"]) == (["AliasHash"], [])
        with pytest.raises(ValueError, match="already registered"):

            @registry.register_method(name="Other", aliases=["paperspelling"])
            class Other:  # noqa: F841
                pass

        with pytest.raises(ValueError, match="already registered"):
            registry.register_method(type("X", (), {}), aliases=["dpsh"])
    finally:
        registry._REGISTRY.pop("AliasHash", None)
        registry._ALIASES.pop("Paper-Spelling", None)
    assert "Other" not in registry._REGISTRY and "X" not in registry._REGISTRY


def test_resolve_methods_handles_all_duplicates_unknown_names_and_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    everything = [m for m in registry.list_methods() if registry.resolve_method(m).supervision != "cross-modal"]
    assert registry.resolve_methods("all") == (everything, [])
    assert registry.resolve_methods(["all"]) == (everything, [])
    assert "DCMH" in registry.list_methods() and "DCMH" not in everything
    assert registry.resolve_methods("all", exclude_supervision=())[0] == registry.list_methods()

    path = "hashbench.bench.testing.PointwiseTestHash"
    found, missing = registry.resolve_methods(["dpsh", "DSHX", "DPSH", path, "my-row", "nope.Nothing"], rows=["My_Row"])
    assert found == ["DPSH", path, "My_Row"]  # canonical names, in order, duplicates removed; rows as spelled
    assert missing == ["DSHX", "nope.Nothing"]
    with pytest.raises(KeyError, match=r"unknown method 'DSHX'; did you mean 'DSH'"):
        registry.resolve_methods(["DPSH", "DSHX"], strict=True)

    class FakeCross(registry.resolve_method("DPSH")):  # type: ignore[misc, valid-type]
        supervision = "cross-modal"

    monkeypatch.setitem(registry._REGISTRY, "FakeCross", FakeCross)
    assert "FakeCross" not in registry.resolve_methods("all")[0]  # resolved from the registry at call time
    assert registry.resolve_methods(["fake-cross"]) == (["FakeCross"], [])
