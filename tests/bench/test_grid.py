"""Grid expansion, cache keys and the shard partition."""

from __future__ import annotations

import pytest

from hashbench.bench.grid import expand_grid, parse_shard, shard_cells
from hashbench.bench.spec import parse_spec

RAW = {
    "title": "t",
    "protocol": "fashion-mnist",
    "bits": [12, 24, 48],
    "methods": ["DPSH", "NotAMethod"],
    "metric": "mAP@all",
    "seeds": [0, 1],
    "backbone": "compact_cnn",
}


def _cells(**over):
    with pytest.warns(UserWarning, match="NotAMethod"):
        return expand_grid(parse_spec({**RAW, **over}, name="g"))


def test_grid_is_methods_by_bits_by_seeds_and_skips_unregistered() -> None:
    cells, missing = _cells()
    assert missing == ["NotAMethod"]
    assert [(c.method, c.n_bits, c.seed) for c in cells] == [("DPSH", b, s) for b in (12, 24, 48) for s in (0, 1)]
    assert len({c.key for c in cells}) == len(cells)
    cfg = cells[0].config
    assert cfg["profile"]["max_epochs"] == 10 and cfg["method_kwargs"] == {"backbone": "compact_cnn"}
    assert cfg["backbone"] == "compact_cnn" and cfg["protocol"] == "fashion-mnist"


def test_restricting_methods_bits_and_seeds() -> None:
    spec = parse_spec({**RAW, "methods": ["DPSH"]}, name="g")
    cells, _ = expand_grid(spec, seeds=[5], bits=[24])
    assert [(c.n_bits, c.seed) for c in cells] == [(24, 5)]
    with pytest.raises(ValueError, match="--bits"):
        expand_grid(spec, bits=[16])
    with pytest.raises(ValueError, match="--methods"):
        expand_grid(spec, methods=["DSHX"])


def test_key_changes_with_config_and_code_but_not_with_table_name() -> None:
    base, _ = _cells()
    renamed, _ = _cells(name="other")
    assert [c.key for c in base] == [c.key for c in renamed]
    lr, _ = _cells(profiles={"quick": {"lr": 0.01}})
    assert not {c.key for c in base} & {c.key for c in lr}
    kw, _ = _cells(method_kwargs={"DPSH": {"eta": 1.0}})
    assert not {c.key for c in base} & {c.key for c in kw}
    cell = base[0]
    cell.code = {**cell.code, "method_source": "edited"}
    assert cell.config_hash == renamed[0].config_hash and cell.key != renamed[0].key
    strict = dict(renamed[0].code, strict=True, git={"commit": "abc", "dirty": False})
    renamed[0].code = strict
    assert renamed[0].key != base[1].key


def test_code_version_records_git_and_method_source() -> None:
    cells, _ = _cells()
    code = cells[0].code
    assert len(code["method_source"]) == 64 and len(code["shared_code"]) == 64
    assert "commit" in code["git"]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 13])
def test_shards_partition_every_cell_exactly_once(count: int) -> None:
    cells, _ = _cells(seeds=[0, 1, 2, 3])
    shards = [shard_cells(cells, i, count) for i in range(count)]
    keys = [c.key for shard in shards for c in shard]
    assert sorted(keys) == sorted(c.key for c in cells)  # covered, no duplicates
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    # Deterministic: another machine (another list order) computes the same shards.
    again = [shard_cells(list(reversed(cells)), i, count) for i in range(count)]
    assert [[c.key for c in s] for s in again] == [[c.key for c in s] for s in shards]


def test_parse_shard() -> None:
    assert parse_shard(None) == (0, 1)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "1/0", "x", "1/2/3"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_method_hash_covers_the_files_its_class_hierarchy_comes_from() -> None:
    from hashbench.bench.grid import method_source_files
    from hashbench.registry import get_method

    names = lambda m: sorted(p.name for p in method_source_files(get_method(m)))  # noqa: E731
    assert names("DPSH") == ["dpsh.py"]  # base.py is shared code, hashed for every cell
    assert names("DCMH") == ["_crossmodal.py", "dcmh.py"]
    assert names("SSDH") == ["_semantic.py", "ssdh.py"]
    assert "_shallow.py" in names("ITQ")


# ----------------------------------------------------------------------------------------------------- variants
VARIANTS = {
    "title": "ablation",
    "protocol": "fashion-mnist",
    "bits": [12, 48],
    "methods": ["DFEH", "DFEH-w0.1"],
    "metric": "mAP@all",
    "seeds": [0],
    "backbone": "compact_cnn",
    "method_kwargs": {"DFEH": {"margin": 10.0, "alpha": 0.5}},
    "variants": {"DFEH-w0.1": {"method": "DFEH", "kwargs": {"alpha": 0.1, "beta": 0.1}}},
}


def test_plain_cells_keep_their_configuration_exactly() -> None:
    """Cached cells are keyed by the config hash: a spec without variants must expand as before variants existed."""
    from hashbench.bench.grid import config_hash
    from hashbench.bench.run import PROFILES

    cells, _ = _cells()
    literal = {
        "method": "DPSH",
        "method_kwargs": {"backbone": "compact_cnn"},
        "protocol": "fashion-mnist",
        "data_kwargs": {},
        "datamodule": None,
        "profile": dict(PROFILES["quick"]),
        "n_bits": 12,
        "seed": 0,
        "backbone": "compact_cnn",
    }
    assert cells[0].config == literal
    assert cells[0].config_hash == config_hash(literal)
    # Defining a variant (of another method) and listing it changes nothing for the plain rows.
    raw = {**RAW, "methods": [*RAW["methods"], "DSH-a1"], "variants": {"DSH-a1": {"method": "DSH", "kwargs": {}}}}
    with pytest.warns(UserWarning, match="NotAMethod"):
        with_variants, _ = expand_grid(parse_spec(raw, name="g"))
    dpsh = [c for c in with_variants if c.method == "DPSH"]
    assert [c.key for c in dpsh] == [c.key for c in cells]
    assert [c.config for c in dpsh] == [c.config for c in cells]


def test_variant_cells_run_the_base_method_with_merged_kwargs() -> None:
    cells, missing = expand_grid(parse_spec(VARIANTS, name="v"))
    assert missing == []
    assert [(c.method, c.n_bits) for c in cells] == [("DFEH", 12), ("DFEH", 48), ("DFEH-w0.1", 12), ("DFEH-w0.1", 48)]
    plain, variant = cells[0], cells[2]
    assert "variant" not in plain.config
    assert plain.config["method_kwargs"] == {"margin": 10.0, "alpha": 0.5, "backbone": "compact_cnn"}
    # The runner calls run_cell(config["method"], method_kwargs=config["method_kwargs"], ...).
    assert variant.config["method"] == "DFEH" and variant.config["variant"] == "DFEH-w0.1"
    assert variant.config["method_kwargs"] == {"margin": 10.0, "alpha": 0.1, "beta": 0.1, "backbone": "compact_cnn"}
    assert variant.config["backbone"] == "compact_cnn" and variant.profile == "quick"
    # Same code as the base method (its source file), different configuration.
    assert variant.code == plain.code and variant.code_hash == plain.code_hash
    assert variant.config_hash != plain.config_hash
    assert variant.label() == "DFEH-w0.1 12 bits seed 0"


def test_variant_kwargs_win_over_profile_settings_and_backbones() -> None:
    raw = {
        **VARIANTS,
        "variants": {"DFEH-w0.1": {"method": "DFEH", "kwargs": {"alpha": 0.1, "backbone": "dsh_cnn"}}},
        "profiles": {"paper": {"base": "paper", "backbone": "alexnet", "alpha": 0.7}},
    }
    cells, _ = expand_grid(parse_spec(raw, name="v"), profile="paper", bits=[12])
    plain, variant = cells
    assert plain.config["backbone"] == "alexnet" and variant.config["backbone"] == "dsh_cnn"
    assert variant.config["method_kwargs"]["alpha"] == 0.1  # run_cell applies method_kwargs after the profile
    assert variant.config["profile"]["alpha"] == 0.7 and "backbone" not in variant.config["profile"]


def test_methods_filter_accepts_variant_names() -> None:
    spec = parse_spec(VARIANTS, name="v")
    cells, _ = expand_grid(spec, methods=["dfeh_w0.1"])
    assert {c.method for c in cells} == {"DFEH-w0.1"}
    cells, _ = expand_grid(spec, methods=["DFEH"])
    assert {c.method for c in cells} == {"DFEH"}
    with pytest.raises(ValueError, match="DFEH-w0.1"):  # the message lists the table's rows, variants included
        expand_grid(spec, methods=["DFEH-w9"])


def test_per_method_profile_entries_reach_the_cells() -> None:
    raw = {
        **VARIANTS,
        "data": {"image_size": 28},
        "profiles": {
            "paper": {
                "base": "paper",
                "data": {"transform": "imagenet"},
                "per_method": {"DFEH": {"backbone": "alexnet", "pretrained": True}, "DFEH-w0.1": {"data": {"x": 1}}},
            }
        },
    }
    cells, _ = expand_grid(parse_spec(raw, name="v"), profile="paper", bits=[12])
    plain, variant = cells
    assert plain.config["backbone"] == variant.config["backbone"] == "alexnet"
    assert plain.config["profile"]["pretrained"] is True and "per_method" not in plain.config["profile"]
    assert plain.config["data_kwargs"] == {"image_size": 28, "transform": "imagenet"}
    assert variant.config["data_kwargs"] == {"image_size": 28, "transform": "imagenet", "x": 1}


def test_variant_rows_render_one_row_each(tmp_path) -> None:
    from hashbench.bench.render import collect_rows
    from hashbench.bench.runner import RunOptions, run_table
    from hashbench.bench.store import ResultStore

    raw = {**VARIANTS, "bits": [48], "reported": {"methods": {"DFEH-w0.1": {48: 0.25}, "KSH": {48: 0.1}}}}
    spec = parse_spec(raw, name="v")
    seen = []

    def executor(cell, options, root):
        seen.append((cell.method, cell.config["method"], cell.config["method_kwargs"].get("alpha")))
        value = 0.3 if cell.method == "DFEH-w0.1" else 0.6
        return {"result": {"metrics": {"mAP@all": value}, "best_epoch": 1, "train_time_s": 0.1}, "wandb": None}

    run_table(spec, RunOptions(results=tmp_path, wandb="disabled"), executor=executor, log=lambda _: None)
    assert sorted(seen) == [("DFEH", "DFEH", 0.5), ("DFEH-w0.1", "DFEH", 0.1)]
    rows, _ = collect_rows(spec, ResultStore(tmp_path))
    table = {r.method: (r.status, r.entries[48].reported, r.entries[48].values) for r in rows}
    assert table == {
        "DFEH-w0.1": ("reproduced", 0.25, [0.3]),
        "KSH": ("reported only", 0.1, []),
        "DFEH": ("reproduced", None, [0.6]),
    }
