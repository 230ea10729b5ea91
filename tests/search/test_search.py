"""hashbench.search: faiss indexes and hashbench's MIH of trained codes agree with hashbench's Hamming ranking; bad
files are refused.

Tie rule under test: exact searches (flat, mih, the exact kernel) return the first k rows of the database ranked
by (Hamming distance, row), the evaluator's ``ties="index"`` order (a stable sort of the distances).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from hashbench.cli import main  # noqa: E402
from hashbench.metrics.functional import hamming_distance  # noqa: E402
from hashbench.search import (  # noqa: E402
    CheckpointError,
    CodeIndex,
    IndexFileError,
    MIHIndex,
    exact_topk,
    export_index,
    find_checkpoint,
    load_index,
    meta_path,
    to_words,
)
from hashbench.search import mih as mih_module  # noqa: E402
from hashbench.search.exact import bytes_to_words, hamming_topk_reference, to_faiss_bytes  # noqa: E402
from hashbench.testing import SyntheticHashingDataModule, quiet_trainer  # noqa: E402

N_BITS = 16
DM_ARGS = {"num_train": 64, "num_query": 12, "num_database": 80, "batch_size": 16}
DM_PATH = "hashbench.testing.SyntheticHashingDataModule"


def _clustered(n: int, bits: int, seed: int, centres: int = 5, flip: float = 0.08) -> torch.Tensor:
    """{-1, +1} codes around a few centres: many small distances and many exact ties (duplicates)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 2, (centres, bits), generator=gen) * 2 - 1
    codes = base[torch.randint(0, centres, (n,), generator=gen)]
    flips = torch.rand(n, bits, generator=gen) < flip
    return torch.where(flips, -codes, codes).to(torch.int8)


def _sorted_pairs(dist: np.ndarray, rows: np.ndarray) -> list[list[tuple[int, int]]]:
    return [sorted(zip(d.tolist(), r.tolist(), strict=True)) for d, r in zip(dist, rows, strict=True)]


# ------------------------------------------------------------------------------------------ exact kernel
@pytest.mark.parametrize("bits", [1, 12, 64, 65, 128, 200])
@pytest.mark.parametrize("k", [1, 7, 300])
def test_exact_topk_is_the_stable_hamming_ranking(bits: int, k: int) -> None:
    """Distances, rows and their order equal a stable sort of hamming_distance (ties: ascending row); k > N pads."""
    q, d = _clustered(130, bits, seed=bits), _clustered(257, bits, seed=bits + 1)
    d[5] = d[200] = q[0]  # exact duplicates of a query, far apart in the database
    dist, rows = exact_topk(to_words(q), to_words(d), k, bits, threads=2)
    ref_d, ref_r = hamming_topk_reference(q, d, k)
    np.testing.assert_array_equal(dist, ref_d)
    np.testing.assert_array_equal(rows, ref_r)
    if k > len(d):
        assert (rows[:, len(d) :] == -1).all() and (dist[:, len(d) :] == -1).all()


def test_exact_topk_small_buffers_and_block_edges() -> None:
    """Many candidate-buffer compactions (a database sorted by descending distance) and a zero-distance stop."""
    bits = 64
    q = _clustered(9, bits, seed=3)
    d = _clustered(3000, bits, seed=4)
    order = torch.argsort(hamming_distance(q[:1], d)[0], descending=True, stable=True)
    d = d[order]  # for query 0 every row is closer than all before it: each row is accepted
    d[-3:] = q[0]
    for k in (1, 2, 50):
        dist, rows = exact_topk(to_words(q), to_words(d), k, bits, threads=1)
        ref_d, ref_r = hamming_topk_reference(q, d, k)
        np.testing.assert_array_equal(dist, ref_d)
        np.testing.assert_array_equal(rows, ref_r)


# ------------------------------------------------------------------------------------------ faiss indexes
@pytest.mark.parametrize("bits", [12, 48, 64, 128])
def test_flat_index_equals_hashbench_ranking(bits: int) -> None:
    """faiss IndexBinaryFlat and hashbench's kernel both return the (distance, row) ranking of the evaluator."""
    q, d = _clustered(40, bits, seed=7), _clustered(500, bits, seed=8)
    index = CodeIndex.from_codes(d, "flat")
    for k in (1, 10, 100):
        ref_d, ref_r = hamming_topk_reference(q, d, k)
        flat = index.search(q, k)
        ours = index.search(q, k, backend="hashbench")
        # faiss may order rows of equal distance differently: compare as (distance, row) pairs ...
        assert _sorted_pairs(flat.distances, flat.rows) == _sorted_pairs(ref_d, ref_r)
        # ... and the results come back sorted by (distance, row), so they are equal as arrays too.
        np.testing.assert_array_equal(flat.rows, ref_r)
        np.testing.assert_array_equal(ours.rows, ref_r)
        np.testing.assert_array_equal(ours.distances, ref_d)
        np.testing.assert_array_equal(flat.ids, ref_r)  # no ids given: ids are the rows


@pytest.mark.parametrize("index_type", ["hash", "multihash", "hnsw"])
def test_approximate_indexes_return_true_distances(index_type: str) -> None:
    """Returned distances are the true distances of the returned rows; exact=True gives the exact distances."""
    bits = 32
    q, d = _clustered(30, bits, seed=11), _clustered(600, bits, seed=12)
    params = {"b": 8, "nflip": 1} if index_type == "hash" else {}
    if index_type == "multihash":
        params = {"nhash": 4, "b": 8, "nflip": 0}
    index = CodeIndex.from_codes(d, index_type, params=params)
    true = hamming_distance(q, d).numpy()
    for k in (1, 10):
        res = index.search(q, k)
        found = res.rows >= 0
        assert (res.distances[found] == np.take_along_axis(true, np.where(found, res.rows, 0), 1)[found]).all()
        for hit, dist, row in zip(found, res.distances, res.rows, strict=True):  # by (distance, row), missing last
            n = int(hit.sum())
            assert hit[:n].all() and (row[n:] == -1).all() and (dist[n:] == -1).all()
            assert (np.diff(dist[:n].astype(np.int64) * 10_000 + row[:n]) > 0).all()
        if index_type != "hnsw":
            ref_d, _ = hamming_topk_reference(q, d, k)
            np.testing.assert_array_equal(index.search(q, k, exact=True).distances, ref_d)
    if index_type == "multihash":  # every bucket probed: the same distances as exact search
        ref_d, _ = hamming_topk_reference(q, d, 5)
        np.testing.assert_array_equal(index.search(q, 5, nflip=8).distances, ref_d)
        np.testing.assert_array_equal(index.search(q, 5, backend="hashbench").rows, hamming_topk_reference(q, d, 5)[1])
    with pytest.raises(ValueError, match="bits"):
        index.search(q[:, :16], 3)


def test_saved_index_round_trip_and_refusals(tmp_path) -> None:
    d = _clustered(100, 24, seed=1)
    ids = np.arange(1000, 1100)
    index = CodeIndex.from_codes(d, "multihash", ids=ids, method="dpsh", protocol="synthetic")
    path = index.save(tmp_path / "codes.faiss")
    back = load_index(path, method="DPSH", n_bits=24, index_type="multihash")
    res = back.search(d[:3], 2, backend="hashbench")  # exact, lowest rows first (multihash may pick other ties)
    assert res.distances[:, 0].tolist() == [0, 0, 0] and res.ids[:, 0].tolist() == [1000, 1001, 1002]
    np.testing.assert_array_equal(back.search(d[:3], 2).distances, res.distances)
    with pytest.raises(IndexFileError, match="holds dpsh codes, not HashNet codes"):
        load_index(path, method="HashNet")
    with pytest.raises(IndexFileError, match="24-bit codes, not 32-bit"):
        load_index(path, n_bits=32)
    with pytest.raises(IndexFileError, match="not a flat index"):
        load_index(path, index_type="flat")
    meta = json.loads(meta_path(path).read_text())
    meta_path(path).write_text(json.dumps({**meta, "n_bits": 32}))
    with pytest.raises(IndexFileError, match="holds 24-bit codes but the metadata says 32 bits"):
        load_index(path)
    meta_path(path).write_text(json.dumps({**meta, "index_type": "flat", "index_class": "IndexBinaryFlat"}))
    with pytest.raises(IndexFileError, match="faiss IndexBinaryMultiHash, the metadata a IndexBinaryFlat"):
        load_index(path)
    meta_path(path).write_text("{not json")
    with pytest.raises(IndexFileError, match="not readable metadata"):
        load_index(path)
    meta_path(path).unlink()
    with pytest.raises(IndexFileError, match="metadata file codes.faiss.meta.json is missing"):
        load_index(path)
    meta_path(path).write_text(json.dumps(meta))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexFileError, match="corrupted, truncated"):
        load_index(path)
    path.write_bytes(b"garbage")
    import hashlib

    meta["index_file"]["sha256"] = hashlib.sha256(b"garbage").hexdigest()
    meta_path(path).write_text(json.dumps(meta))
    with pytest.raises(IndexFileError, match="faiss cannot read"):
        load_index(path)


# ------------------------------------------------------------------------------------------ hashbench's MIH
def _tied(n: int, bits: int, seed: int) -> torch.Tensor:
    """Clustered codes with heavy ties: few centres, low flip rate, and blocks of exact duplicates."""
    d = _clustered(n, bits, seed=seed, centres=3, flip=0.03)
    d[n // 3 : n // 3 + 40] = d[7]  # 41 copies of row 7, spread over the database
    d[-25:] = d[n // 2]
    return d


@pytest.mark.parametrize(
    ("bits", "nhash"),
    [(16, None), (16, 2), (64, None), (64, 3), (100, None), (100, 7), (128, None), (128, 5)],
)
@pytest.mark.parametrize("kind", ["uniform", "tied"])
def test_mih_equals_exact_search(bits: int, nhash: int | None, kind: str, monkeypatch) -> None:
    """Distances and rows (ties: lowest rows first) equal the exact kernel's, probing only and with the fallback.

    ``nhash`` covers substrings of unequal length (100 bits in 7), sorted-key directories (21- to 26-bit
    substrings of 1,200 codes) and dense ones.
    """
    n, nq = 1200, 40
    if kind == "uniform":
        gen = torch.Generator().manual_seed(bits)
        d = (torch.randint(0, 2, (n, bits), generator=gen) * 2 - 1).to(torch.int8)
        q = (torch.randint(0, 2, (nq, bits), generator=gen) * 2 - 1).to(torch.int8)
    else:
        d, q = _tied(n, bits, seed=bits), _clustered(nq, bits, seed=bits + 1, centres=3, flip=0.03)
    q[0], q[1] = d[7], d[n // 2]  # queries with 41 / 26 duplicates at distance 0
    qw, dw = to_words(q), to_words(d)
    index = MIHIndex(to_faiss_bytes(d), bits, nhash)
    if nhash is not None:
        assert index.lens.sum() == bits and index.lens.max() - index.lens.min() == (bits % nhash > 0)
    # Probing only (long substrings: up to 20 scans' worth per query, else the test takes minutes); then with the
    # fallback to a scan.
    probing = math.inf if index.lens.max() <= 20 else 20.0
    for budget in (probing, mih_module.SCAN_BUDGET):
        monkeypatch.setattr(mih_module, "SCAN_BUDGET", budget)
        for k in (1, 10, 37) if budget == probing else (1, 10, 37, n - 1, n, n + 5):
            stats: dict[str, int] = {}
            dist, rows = index.search(qw, k, threads=2, stats=stats)
            ref_d, ref_r = exact_topk(qw, dw, k, bits, threads=1)
            np.testing.assert_array_equal(dist, ref_d)
            np.testing.assert_array_equal(rows, ref_r)
            if budget == probing:  # the tables were probed; with no budget limit, every query was answered so
                assert stats["probes"] > 0 and (budget < math.inf or stats["scanned"] == 0)
    ref_d, ref_r = hamming_topk_reference(q, d, 10)  # and the evaluator's stable sort, through CodeIndex
    res = CodeIndex.from_codes(d, "mih", params={} if nhash is None else {"nhash": nhash}).search(q, 10)
    np.testing.assert_array_equal(res.distances, ref_d)
    np.testing.assert_array_equal(res.rows, ref_r)
    if kind == "tied":  # query 0 is row 7 (copied to rows n/3 .. n/3 + 39): ten copies, the lowest rows first
        assert (res.distances[0] == 0).all() and res.rows[0, 0] <= 7 and (np.diff(res.rows[0]) > 0).all()


def test_mih_sorted_key_and_dense_directories_agree(monkeypatch) -> None:
    monkeypatch.setattr(mih_module, "SCAN_BUDGET", math.inf)
    d, q = _tied(900, 48, seed=5), _clustered(30, 48, seed=6, centres=3, flip=0.03)
    qw = to_words(q)
    dense = MIHIndex(to_faiss_bytes(d), 48, 4, dense=True)
    sparse = MIHIndex(to_faiss_bytes(d), 48, 4, dense=False)
    assert dense.dense.all() and not sparse.dense.any() and sparse.nbytes() < dense.nbytes()
    for k in (1, 16, 200):
        ref = exact_topk(qw, to_words(d), k, 48)
        for index in (dense, sparse):
            for got, want in zip(index.search(qw, k, threads=1), ref, strict=True):
                np.testing.assert_array_equal(got, want)


def test_mih_fallback_mixes_probed_and_scanned_queries() -> None:
    """Queries near the database are answered by probing, far ones by the scan fallback; all exactly."""
    d = _tied(3000, 64, seed=21)
    gen = torch.Generator().manual_seed(22)
    far = (torch.randint(0, 2, (20, 64), generator=gen) * 2 - 1).to(torch.int8)
    q = torch.cat([d[::150], far])  # 20 database rows (ties at distance 0), 20 uniform codes
    index = MIHIndex(to_faiss_bytes(d), 64)
    for k in (1, 5, 50):
        stats: dict[str, int] = {}
        dist, rows = index.search(to_words(q), k, threads=2, stats=stats)
        assert 0 < stats["scanned"] < len(q)
        ref_d, ref_r = hamming_topk_reference(q, d, k)
        np.testing.assert_array_equal(dist, ref_d)
        np.testing.assert_array_equal(rows, ref_r)


def test_mih_degenerate_cases(monkeypatch) -> None:
    monkeypatch.setattr(mih_module, "SCAN_BUDGET", math.inf)
    same = torch.ones(50, 24, dtype=torch.int8)  # every distance 0: the k lowest rows
    index = CodeIndex.from_codes(same, "mih")
    res = index.search(same[:3], 5)
    assert (res.distances == 0).all() and res.rows.tolist() == [[0, 1, 2, 3, 4]] * 3
    assert index.search(-same[:1], 2).distances.tolist() == [[24, 24]]  # the farthest codes, still lowest rows
    empty = CodeIndex.from_codes(np.zeros((0, 24), np.int8), "mih")
    res = empty.search(same[:2], 3)
    assert len(empty) == 0 and (res.rows == -1).all() and (res.distances == -1).all()
    assert index.search(same[:0], 4).rows.shape == (0, 4)
    one = CodeIndex.from_codes(same[:1], "mih")
    assert one.search(same[:2], 3).rows.tolist() == [[0, -1, -1]] * 2
    bit = torch.tensor([[1], [-1], [1], [-1]], dtype=torch.int8)  # 1-bit codes: one 1-bit substring
    res = CodeIndex.from_codes(bit, "mih").search(bit[:2], 3)
    assert res.rows.tolist() == [[0, 2, 1], [1, 3, 0]] and res.distances.tolist() == [[0, 0, 1], [0, 0, 1]]
    codes = _clustered(60, 12, seed=3)  # padding bits (12 bits in 2 bytes) set by a caller do not count
    dirty = to_faiss_bytes(codes)
    dirty[:, -1] |= 0xF0
    clean = MIHIndex(to_faiss_bytes(codes), 12).search(to_words(codes[:5]), 7)
    for got, want in zip(MIHIndex(dirty, 12).search(bytes_to_words(dirty[:5]), 7), clean, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="mih index has no parameter.s. b; it takes nhash"):
        CodeIndex.from_codes(same, "mih", params={"nhash": 2, "b": 3})
    with pytest.raises(ValueError, match="at most 32"):
        CodeIndex.from_codes(torch.ones(4, 64, dtype=torch.int8), "mih", params={"nhash": 1})
    with pytest.raises(ValueError, match="nhash must lie in 1..24"):
        CodeIndex.from_codes(same, "mih", params={"nhash": 25})
    with pytest.raises(ValueError, match="not a faiss index"):
        index.search(same[:1], 1, backend="faiss")
    with pytest.raises(ValueError, match="exact already"):
        index.search(same[:1], 1, exact=True)
    with pytest.raises(ValueError, match="nflip applies"):
        index.search(same[:1], 1, nflip=1)
    with pytest.raises(ValueError, match="bits"):
        index.search(same[:1, :16], 1)


def test_mih_round_trip(tmp_path) -> None:
    """Saved as its codes (an npz archive) with the metadata; loaded, the tables are rebuilt and search the same."""
    d, q = _tied(400, 100, seed=9), _clustered(20, 100, seed=10, centres=3, flip=0.03)
    ids = np.arange(400)[::-1] * 3
    index = CodeIndex.from_codes(d, "mih", ids=ids, method="DPSH", protocol="synthetic", params={"nhash": 7})
    path = index.save(tmp_path / "codes.mih")
    back = load_index(path, method="dpsh", n_bits=100, index_type="mih")
    assert back.params == {"nhash": 7} and back.meta["engine"] == "hashbench" and len(back) == 400
    np.testing.assert_array_equal(back.database_words(), to_words(d))
    for k in (1, 10, 500):
        want, got = index.search(q, k), back.search(q, k, threads=1)
        np.testing.assert_array_equal(got.rows, want.rows)
        np.testing.assert_array_equal(got.distances, want.distances)
        np.testing.assert_array_equal(got.ids, np.where(want.rows >= 0, ids[want.rows], -1))
        np.testing.assert_array_equal(got.rows, back.search(q, k, backend="hashbench").rows)
    meta = json.loads(meta_path(path).read_text())
    meta_path(path).write_text(json.dumps({**meta, "params": {"nhash": 5}}))
    with pytest.raises(IndexFileError, match="100-bit codes in 7 substrings, the metadata 100 bits in 5"):
        load_index(path)
    meta_path(path).write_text(json.dumps({**meta, "index_type": "flat"}))
    with pytest.raises(IndexFileError, match="faiss cannot read"):
        load_index(path)
    flat = CodeIndex.from_codes(d, "flat").save(tmp_path / "flat.faiss")
    meta = json.loads(meta_path(flat).read_text())
    meta_path(flat).write_text(json.dumps({**meta, "index_type": "mih", "params": {"nhash": 7}}))
    with pytest.raises(IndexFileError, match="not a hashbench mih index file"):
        load_index(flat)


# ------------------------------------------------------------------------------------------ trained model
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DPSH model trained one epoch on the synthetic data, its checkpoint, and a second, different checkpoint."""
    from hashbench.methods.dpsh import DPSH

    root = tmp_path_factory.mktemp("search")
    torch.manual_seed(0)
    dm = SyntheticHashingDataModule(**DM_ARGS)
    model = DPSH(n_bits=N_BITS)
    trainer = quiet_trainer(root, max_epochs=1)
    trainer.fit(model, datamodule=dm)
    ckpt = root / "run" / "checkpoints" / "best-epoch=0.ckpt"
    ckpt.parent.mkdir(parents=True)
    trainer.save_checkpoint(ckpt)
    other = root / "other.ckpt"
    torch.manual_seed(1)
    other_trainer = quiet_trainer(root, max_epochs=1)
    other_trainer.fit(DPSH(n_bits=N_BITS), datamodule=SyntheticHashingDataModule(**DM_ARGS))
    other_trainer.save_checkpoint(other)
    model.eval()
    return {"model": model, "dm": dm, "ckpt": ckpt, "other": other, "root": root}


def _split_codes(model, dm, which: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.encode(batch.image) for batch in dm.test_dataloader()[which]])


def test_export_load_search_round_trip(trained, tmp_path, monkeypatch) -> None:
    model, dm = trained["model"], trained["dm"]
    # hashbench's datamodules record each split's positions in the pooled dataset; the index keeps them as items.
    monkeypatch.setattr(
        dm, "split_indices", {"database": np.arange(DM_ARGS["num_database"])[::-1] + 500}, raising=False
    )
    out = tmp_path / "dpsh.faiss"
    export_index(trained["ckpt"].parent.parent, out, model="DPSH", datamodule=dm, index_type="flat")
    index = load_index(out, method="dpsh", n_bits=N_BITS)
    meta = index.meta
    assert meta["method"] == "DPSH" and meta["protocol"] == "synthetic" and meta["n_bits"] == N_BITS
    assert meta["checkpoint"]["path"] == str(trained["ckpt"].resolve())  # the run folder's best-*.ckpt
    import hashlib

    assert meta["checkpoint"]["sha256"] == hashlib.sha256(trained["ckpt"].read_bytes()).hexdigest()
    assert meta["hashbench_version"] and meta["code_version"]["method_source"]
    q_codes, db_codes = _split_codes(model, dm, 0), _split_codes(model, dm, 1)
    # The index holds exactly the evaluator's database codes, with the items' ids.
    np.testing.assert_array_equal(index.database_words(), to_words(db_codes))
    np.testing.assert_array_equal(index.ids, np.arange(DM_ARGS["num_database"]))
    np.testing.assert_array_equal(index.items, np.arange(DM_ARGS["num_database"])[::-1] + 500)
    for k in (1, 5, 80):
        ref_d, ref_r = hamming_topk_reference(q_codes, db_codes, k)
        for backend in ("index", "faiss", "hashbench"):
            res = index.search(q_codes, k, backend=backend)
            np.testing.assert_array_equal(res.distances, ref_d)
            np.testing.assert_array_equal(res.ids, ref_r)


def test_cli_export_and_search(trained, tmp_path, capsys) -> None:
    out = tmp_path / "idx.faiss"
    base = [str(trained["ckpt"]), str(out), "--data", DM_PATH, "--data-args", json.dumps(DM_ARGS)]
    assert main(["export", *base, "--index", "multihash"]) == 2  # the checkpoint does not record its class
    err = capsys.readouterr().err
    assert "hashbench export: error:" in err and "pass --model NAME" in err and "Traceback" not in err
    assert main(["export", *base, "--index", "multihash", "--model", "DPSH", "--nflip", "2"]) == 0
    assert "IndexBinaryMultiHash" in capsys.readouterr().out
    assert main(["search", str(out), "--query-split", "-k", "4", "--exact", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    model, dm = trained["model"], trained["dm"]
    ref_d, _ = hamming_topk_reference(_split_codes(model, dm, 0), _split_codes(model, dm, 1), 4)
    assert [[h["distance"] for h in q["results"]] for q in shown["queries"]] == ref_d.tolist()
    assert main(["search", str(out), "--query-split", "-k", "2", "--backend", "hashbench", "--limit", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1] == "query\trank\tid\titem\tdistance" and len(table) == 2 + 3 * 2
    # A checkpoint other than the exported one is refused (its codes are not comparable).
    assert main(["search", str(out), "--query-split", "--ckpt", str(trained["other"])]) == 2
    assert "is not the one" in capsys.readouterr().err
    # A corrupted index file is refused with a clear message, not a traceback.
    raw = bytearray(out.read_bytes())
    raw[-1] ^= 0x01
    out.write_bytes(bytes(raw))
    assert main(["search", str(out), "--query-split"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench search: error:") and "corrupted" in err and "Traceback" not in err


def test_cli_export_and_search_mih(trained, tmp_path, capsys) -> None:
    """``--index mih`` writes hashbench's own index; its search is exact under the tie rule (rows as well)."""
    out = tmp_path / "idx.mih"
    base = [str(trained["ckpt"]), str(out), "--data", DM_PATH, "--data-args", json.dumps(DM_ARGS), "--model", "DPSH"]
    assert main(["export", *base, "--index", "mih", "--nhash", "3"]) == 0
    assert "hashbench MIHIndex {'nhash': 3}" in capsys.readouterr().out
    assert main(["search", str(out), "--query-split", "-k", "6", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    q_codes, db_codes = (
        _split_codes(trained["model"], trained["dm"], 0),
        _split_codes(trained["model"], trained["dm"], 1),
    )
    ref_d, ref_r = hamming_topk_reference(q_codes, db_codes, 6)
    assert [[h["distance"] for h in q["results"]] for q in shown["queries"]] == ref_d.tolist()
    assert [[h["id"] for h in q["results"]] for q in shown["queries"]] == ref_r.tolist()
    assert main(["search", str(out), "--query-split", "--backend", "faiss"]) == 2
    assert "not a faiss index" in capsys.readouterr().err


def test_cli_search_image(trained, tmp_path, capsys) -> None:
    """--image goes through the protocol's eval transform (a 1-channel 28 px protocol, as the model reads)."""
    from PIL import Image

    out = tmp_path / "idx.faiss"
    export_index(trained["ckpt"], out, model="DPSH", datamodule=trained["dm"])
    assert main(["search", str(out), "--image", str(tmp_path / "missing.png")]) == 2
    assert "needs an index exported from a registered protocol" in capsys.readouterr().err
    meta = json.loads(meta_path(out).read_text())  # pretend the codes came from Fashion-MNIST (same input shape)
    meta["protocol"] = "fashion-mnist"
    meta["data"]["transform"] = "native"
    meta_path(out).write_text(json.dumps(meta))
    png = tmp_path / "q.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(png)
    assert main(["search", str(out), "--image", str(png), "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert len(lines) == 3 and all(line.startswith(str(png)) for line in lines)
    distances = [int(line.split("\t")[-1]) for line in lines]
    assert distances == sorted(distances)


def test_checkpoint_class_is_checked(trained, tmp_path) -> None:
    """A checkpoint that records its class (as `hashbench fit` writes) needs no --model and refuses another one."""
    ckpt = torch.load(trained["ckpt"], map_location="cpu", weights_only=False)
    ckpt["hyper_parameters"]["_class_path"] = "hashbench.methods.dpsh.DPSH"
    path = tmp_path / "cli.ckpt"
    torch.save(ckpt, path)
    index = export_index(path, tmp_path / "a.faiss", datamodule=trained["dm"], index_type="hash")
    assert index.method == "DPSH" and index.params["b"] <= N_BITS
    with pytest.raises(CheckpointError, match="is a checkpoint of DPSH, not of HashNet"):
        export_index(path, tmp_path / "b.faiss", model="HashNet", datamodule=trained["dm"])
    with pytest.raises(CheckpointError, match="trained on 4 classes but synthetic has 6"):
        export_index(path, tmp_path / "c.faiss", datamodule=SyntheticHashingDataModule(num_classes=6))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        export_index(tmp_path / "junk.ckpt", tmp_path / "d.faiss", model="DPSH", datamodule=trained["dm"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no \\*.ckpt file below"):
        find_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file or run folder"):
        find_checkpoint(tmp_path / "nowhere")
