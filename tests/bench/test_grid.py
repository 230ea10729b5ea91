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
    assert names("SSDH") == ["ssdh.py", "udmsh.py"]
    assert "_shallow.py" in names("ITQ")
