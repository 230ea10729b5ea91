"""Retrieval examples, precision@N and code statistics of a tested cell; the leaderboard's examples figure.

The table runner passes :func:`cell_report` to :func:`hashbench.bench.run.run_cell` as its ``after_test`` hook: once
the selected checkpoint has been tested, it encodes the protocol's test query set and database again and returns a
small JSON mapping that is stored in the cell's ``result.extra`` (indices and numbers, never images):

- ``retrieval_examples``: for a fixed set of query items, the positions of their top-10 database items, the
  Hamming distances and a relevant / irrelevant mark for each (relevant = shares at least one label, the rule of
  every protocol's metric). Per direction: ``I→I`` for image methods; ``I→T`` and ``T→I`` for cross-modal ones.
- ``precision_at_n``: P@N and R@N per direction for N in :data:`PRECISION_AT` (up to the database size), with the
  leaderboard metric's tie rule: the exact expectation over a random order within each group of equal distance.
- ``code_stats``: per modality, the database codes' bit balance (fraction of +1 per bit), the histogram of their
  Hamming weights (how many bits are +1), the number of distinct codes and the largest bucket (most items sharing
  one code).

**Which queries.** :func:`example_positions`: round robin over the classes of the test query split (the first
query item of each class in class order, then the second ...), so the examples cover the classes and every method
and seed of a table gets the same query items whenever the query split is the same (it is unless ``eval_limit``
subsamples it per seed). The leaderboard figure shows 3 of them, spread over the stored list.

**Top-10 tie rule.** Database items sort by Hamming distance; items at equal distance keep database order (the lower
position first). The P@N numbers use the expected-tie rule instead, like every leaderboard metric, so they do not
depend on the database order.

:func:`write_examples_figure` draws ``leaderboards/<table>-examples.png`` from the stored positions and the
protocol's data (rebuilt from the cell's configuration like :func:`hashbench.bench.run.run_cell` builds it): for 3
queries, each method's top-10 in a grid, green frame = relevant, red = irrelevant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "N_QUERIES",
    "PRECISION_AT",
    "TOP_K",
    "cell_report",
    "code_statistics",
    "example_positions",
    "item_image",
    "item_text",
    "precision_curve",
    "rebuild_datamodule",
    "top_k",
    "write_examples_figure",
]

#: query items per cell (the W&B panels show all of them, the leaderboard figure three, spread over the list)
N_QUERIES = 8
#: retrieved items shown per query
TOP_K = 10
#: list lengths of the precision@N curve (clipped to the database size, which is added as the last point)
PRECISION_AT = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
#: queries of the leaderboard figure
FIGURE_QUERIES = 3
TIE_RULE = "Hamming distance, ties in database order (lower position first)"


def example_positions(labels: Tensor, n: int = N_QUERIES) -> list[int]:
    """Positions of the example queries in a query split with multi-hot ``labels`` ``[Q, C]``.

    Round robin over the classes (an item's class here is its first positive label): the first item of class 0,
    the first of class 1, ..., then the second of each class, until ``n`` are chosen. The choice depends on the
    labels only, so every method and seed that sees the same query split gets the same query items.

    >>> example_positions(torch.eye(3)[[2, 0, 0, 1, 2]], 4)
    [1, 3, 0, 2]
    """
    first = labels.float().argmax(1).tolist()
    by_class: dict[int, list[int]] = {}
    for pos, c in enumerate(first):
        by_class.setdefault(int(c), []).append(pos)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(n, len(first)):
        for c in sorted(by_class):
            if depth < len(by_class[c]) and len(chosen) < n:
                chosen.append(by_class[c][depth])
        depth += 1
    return chosen


def top_k(query_codes: Tensor, db_codes: Tensor, k: int = TOP_K) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest database items of each query by Hamming distance; ties keep database order.

    Returns:
        ``(positions [Q, k'], distances [Q, k'])`` with ``k' = min(k, N)``, both int64.
    """
    from hashbench.metrics.functional import hamming_distance

    dist = hamming_distance(query_codes, db_codes)
    order = torch.sort(dist, dim=1, stable=True).indices[:, : min(k, dist.shape[1])]
    return order, dist.gather(1, order)


def code_statistics(codes: Tensor) -> dict[str, Any]:
    """Bit balance and bucket statistics of ``[N, K]`` codes in {-1, +1}.

    Returns:
        ``bit_balance`` (fraction of +1 per bit, K floats), ``weight_histogram`` (items with w bits at +1, for
        w = 0..K), ``distinct_codes``, ``largest_bucket`` and ``balance_deviation`` (mean |fraction − 0.5|: 0 for
        perfectly balanced bits, 0.5 for constant ones).
    """
    positive = codes > 0
    n_bits = codes.shape[1]
    balance = positive.double().mean(0)
    weights = positive.sum(1)
    _, counts = torch.unique(positive.to(torch.uint8), dim=0, return_counts=True)
    return {
        "bit_balance": [round(float(v), 6) for v in balance],
        "weight_histogram": torch.bincount(weights, minlength=n_bits + 1).tolist(),
        "distinct_codes": int(counts.numel()),
        "largest_bucket": int(counts.max()) if counts.numel() else 0,
        "balance_deviation": round(float((balance - 0.5).abs().mean()), 6),
    }


def precision_curve(
    query_codes: Tensor, db_codes: Tensor, query_labels: Tensor, db_labels: Tensor, ns: Sequence[int] = PRECISION_AT
) -> dict[str, list[float]]:
    """P@N and R@N over the queries for each N of ``ns`` below the database size, and at the database size."""
    from hashbench.metrics.functional import retrieval_report

    size = int(db_codes.shape[0])
    points = sorted({n for n in ns if n < size} | {size})
    report = retrieval_report(query_codes, db_codes, query_labels, db_labels, ks=(), radius=None, ns=points)
    return {
        "n": points,
        "precision": [round(float(report[f"P@{n}"]), 6) for n in points],
        "recall": [round(float(report[f"R@{n}"]), 6) for n in points],
    }


def _label_ids(labels: Tensor) -> list[list[int]]:
    return [torch.nonzero(row > 0).flatten().tolist() for row in labels]


def _encode(model: Any, loader: Any, cross_modal: bool) -> dict[str, Tensor]:
    """Codes (image, and text for cross-modal methods), labels and positions of one evaluation loader, in order."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    out: dict[str, list[Tensor]] = {"image": [], "text": [], "labels": [], "index": []}
    model.eval()
    with torch.no_grad():
        for batch in loader:
            batch = move_data_to_device(batch, model.device)
            if cross_modal:
                out["image"].append(model.encode_image(batch.image).cpu())
                out["text"].append(model.encode_text(batch.text).cpu())
            else:
                out["image"].append(model.encode_eval_batch(batch, 0).cpu())
            out["labels"].append(batch.labels.cpu())
            out["index"].append(batch.index.cpu().reshape(-1))
    return {k: torch.cat(v) for k, v in out.items() if v}


def _direction(
    q_codes: Tensor, d_codes: Tensor, q_labels: Tensor, d_labels: Tensor, q_pos: Tensor, d_pos: Tensor, n: int, k: int
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    chosen = example_positions(q_labels, n)
    sel = torch.as_tensor(chosen, dtype=torch.int64)
    order, dist = top_k(q_codes[sel], d_codes, k)
    relevant = (q_labels[sel].float() @ d_labels.float().T > 0).gather(1, order)
    queries = []
    for row, pos in enumerate(chosen):
        queries.append(
            {
                "position": int(q_pos[pos]),
                "labels": _label_ids(q_labels[pos : pos + 1])[0],
                "retrieved": [int(d_pos[j]) for j in order[row]],
                "distances": dist[row].tolist(),
                "relevant": [bool(r) for r in relevant[row]],
            }
        )
    curve = precision_curve(q_codes, d_codes, q_labels, d_labels)
    return {"queries": queries}, curve


def cell_report(
    model: Any, datamodule: Any, trainer: Any = None, n_queries: int = N_QUERIES, k: int = TOP_K
) -> dict[str, Any]:
    """The ``after_test`` hook of the table runner: retrieval examples, precision@N and code statistics.

    Runs on the global rank zero only (other ranks return ``{}``): it encodes the test query and database
    loaders itself, in order, on the model's device.

    Returns:
        ``{"retrieval_examples": ..., "precision_at_n": ..., "code_stats": ...}`` (see the module docstring).
    """
    if trainer is not None and not getattr(trainer, "is_global_zero", True):
        return {}
    loaders = datamodule.test_dataloader()
    cross = hasattr(model, "encode_text")
    q = _encode(model, loaders[0], cross)
    d = _encode(model, loaders[1], cross)
    pairs = {"I→I": ("image", "image")} if not cross else {"I→T": ("image", "text"), "T→I": ("text", "image")}
    directions: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for name, (qm, dm) in pairs.items():
        directions[name], curves[name] = _direction(
            q[qm], d[dm], q["labels"], d["labels"], q["index"], d["index"], n_queries, k
        )
        directions[name].update(query_modality=qm, database_modality=dm)
    stats = {m: code_statistics(d[m]) for m in (("image", "text") if cross else ("image",))}
    return {
        "retrieval_examples": {"split": "test", "k": k, "tie_rule": TIE_RULE, "directions": directions},
        "precision_at_n": curves,
        "code_stats": stats,
    }


# ---------------------------------------------------------------------------------------------- item display
def item_image(dataset: Any, position: int) -> np.ndarray:
    """Item ``position`` of an evaluation dataset as a displayable ``uint8 [H, W, 3]`` array.

    The dataset yields the network's input (normalised, possibly resized); each image is min-max scaled to
    0..255 for display, so the colours are those of the input up to a per-image contrast stretch.
    """
    item = dataset[int(position)]
    image = torch.as_tensor(item.image if hasattr(item, "image") else item[0]).detach().float().cpu()
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    lo, hi = float(image.min()), float(image.max())
    image = (image - lo) / (hi - lo) if hi > lo else torch.zeros_like(image)
    return (image[:3].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def item_text(dataset: Any, position: int, vocabulary: Sequence[str] | None = None, max_words: int = 8) -> str:
    """A short text snippet of item ``position`` of a cross-modal dataset.

    Raw captions are shortened to ``max_words`` words; a bag-of-words vector lists its words (from ``vocabulary``
    when the datamodule has one, else ``w<index>``); token ids are shown as their count.
    """
    text = dataset[int(position)].text
    if isinstance(text, str):
        words = text.split()
        return " ".join(words[:max_words]) + (" …" if len(words) > max_words else "")
    tensor = torch.as_tensor(text)
    if tensor.dtype in (torch.int64, torch.int32):
        return f"[{int((tensor != 0).sum())} tokens]"
    ids = torch.nonzero(tensor.flatten() > 0).flatten().tolist()
    names = [vocabulary[i] if vocabulary is not None and i < len(vocabulary) else f"w{i}" for i in ids]
    return " ".join(names[:max_words]) + (" …" if len(names) > max_words else "")


def vocabulary_of(datamodule: Any) -> list[str] | None:
    """The bag-of-words vocabulary of a datamodule, when it exposes one (the synthetic-text protocol does)."""
    texts = getattr(datamodule, "texts", None)
    vocab = getattr(texts, "vocabulary", None)
    return list(vocab) if vocab is not None else None


GREEN = (46, 160, 67)
RED = (215, 48, 39)
BLUE = (33, 102, 172)
GRAY = (235, 235, 235)


def tile(image: np.ndarray | None, size: int, frame: tuple[int, int, int] | None = None, border: int = 3) -> np.ndarray:
    """``image`` resized to fit ``size - 2*border`` pixels, centred on a ``size`` square framed in ``frame``."""
    out = np.full((size, size, 3), 255, dtype=np.uint8)
    if frame is not None:
        out[:, :] = frame
    inner = size - 2 * border
    out[border : size - border, border : size - border] = GRAY
    if image is None:
        return out
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().unsqueeze(0)
    scale = inner / max(t.shape[-2:])
    h, w = max(1, round(t.shape[-2] * scale)), max(1, round(t.shape[-1] * scale))
    mode = "nearest" if scale >= 1 else "bilinear"
    kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
    small = torch.nn.functional.interpolate(t, size=(h, w), mode=mode, **kwargs)
    small = small[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    top, left = border + (inner - h) // 2, border + (inner - w) // 2
    out[top : top + h, left : left + w] = small
    return out


def strip(query: np.ndarray | None, retrieved: Sequence[np.ndarray], relevant: Sequence[bool], size: int = 56):
    """One row: the query (blue frame), a gap, then the retrieved items framed green (relevant) or red."""
    gap = np.full((size, size // 3, 3), 255, dtype=np.uint8)
    tiles = [tile(query, size, BLUE), gap]
    tiles += [tile(img, size, GREEN if rel else RED) for img, rel in zip(retrieved, relevant, strict=True)]
    return np.concatenate(tiles, axis=1)


# ------------------------------------------------------------------------------------------ the leaderboard figure
def rebuild_datamodule(config: Mapping[str, Any]) -> Any:
    """The datamodule a stored cell was tested on, rebuilt from its configuration as ``run_cell`` builds it
    (same protocol, data arguments, limits and seed; never downloads), after ``setup``."""
    from hashbench.bench.run import instantiate_datamodule

    prof = dict(config.get("profile") or {})
    seed = int(config.get("seed", 0))
    batch_size = int(prof.get("batch_size", 128))
    protocol = config.get("protocol")
    if isinstance(config.get("datamodule"), Mapping):
        dm = instantiate_datamodule(config["datamodule"], batch_size=batch_size, seed=seed)
    else:
        from hashbench.data import create_datamodule

        opts = {k: prof[k] for k in ("train_limit", "eval_limit") if k in prof}
        opts.update(dict(prof.get("data_kwargs") or {}).get(protocol, {}))
        opts.update(config.get("data_kwargs") or {})
        opts["download"] = False
        dm = create_datamodule(protocol, batch_size=batch_size, seed=seed, **opts)
    dm.prepare_data()
    dm.setup("test")
    return dm


def _data_key(config: Mapping[str, Any]) -> str:
    prof = dict(config.get("profile") or {})
    relevant = {
        "protocol": config.get("protocol"),
        "datamodule": config.get("datamodule"),
        "data_kwargs": config.get("data_kwargs"),
        "seed": config.get("seed"),
        "limits": {k: prof.get(k) for k in ("train_limit", "eval_limit", "data_kwargs", "batch_size")},
    }
    return json.dumps(relevant, sort_keys=True, default=str)


def figure_direction(examples: Mapping[str, Any]) -> str | None:
    """The direction drawn in the figure: ``I→I``, or ``T→I`` for cross-modal cells (images are retrieved)."""
    directions = examples.get("directions") or {}
    for name in ("I→I", "T→I"):
        if name in directions:
            return name
    return next(iter(directions), None)


def write_examples_figure(title: str, entries: Sequence[tuple[str, Mapping[str, Any]]], path: Path) -> list[str]:
    """Draw the retrieval examples of ``entries`` (``(method, stored record)``, one per method) into ``path``.

    The queries are the first :data:`FIGURE_QUERIES` example queries of the first record; each method's row
    shows its top-10 for the same query item. A method whose stored labels do not match the rebuilt data (another
    data configuration) or whose record has no examples is left out.

    Returns:
        Warnings (one line each) about what was left out; ``path`` is not written when no method could be drawn.

    Raises:
        FileNotFoundError / ValueError: the protocol's data cannot be rebuilt here (e.g. not downloaded).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warnings: list[str] = []
    usable = [(m, r) for m, r in entries if (r["result"].get("extra") or {}).get("retrieval_examples")]
    if not usable:
        return ["no stored cell has retrieval examples (cells run before they were recorded)"]
    first = usable[0][1]
    k = int(first["result"]["extra"]["retrieval_examples"].get("k", TOP_K))
    direction = figure_direction(first["result"]["extra"]["retrieval_examples"])
    stored = first["result"]["extra"]["retrieval_examples"]["directions"][direction]["queries"]
    # 3 of the stored queries, spread over the list (over the classes: the list goes round robin over them)
    queries = [
        stored[(2 * i + 1) * len(stored) // (2 * FIGURE_QUERIES)] for i in range(min(FIGURE_QUERIES, len(stored)))
    ]
    datamodules: dict[str, Any] = {}
    size = 44
    blocks: list[list[np.ndarray]] = [[] for _ in queries]
    headers: list[np.ndarray] = []
    header_text: list[str] = []
    names: list[str] = []
    scores: list[list[str]] = []
    dm0 = rebuild_datamodule(first["config"])
    datamodules[_data_key(first["config"])] = dm0
    q_set, d_set = (loader.dataset for loader in dm0.test_dataloader())
    vocab = vocabulary_of(dm0)
    for q in queries:
        if direction == "T→I":
            headers.append(tile(None, size, BLUE))
            header_text.append(f"\n“{item_text(q_set, q['position'], vocab, max_words=5)}”")
        else:
            headers.append(tile(item_image(q_set, q["position"]), size, BLUE))
            header_text.append("")
        header_text[-1] = f"query #{q['position']} (labels {q['labels']}){header_text[-1]}"
    for method, record in usable:
        ex = record["result"]["extra"]["retrieval_examples"]["directions"].get(direction)
        if ex is None:
            warnings.append(f"{method}: no {direction} examples stored")
            continue
        key = _data_key(record["config"])
        if key not in datamodules:
            datamodules[key] = rebuild_datamodule(record["config"])
        db = datamodules[key].test_dataloader()[1].dataset
        by_pos = {e["position"]: e for e in ex["queries"]}
        row_tiles, row_scores = [], []
        for q in queries:
            e = by_pos.get(q["position"])
            if e is None or e["labels"] != q["labels"]:
                row_tiles.append(None)
                row_scores.append("—")
                continue
            pairs = zip(e["retrieved"], e["relevant"], strict=True)
            images = [tile(item_image(db, p), size, GREEN if r else RED) for p, r in pairs]
            images += [tile(None, size)] * (k - len(images))
            row_tiles.append(np.concatenate(images, axis=1))
            row_scores.append(f"{sum(e['relevant'])}/{len(e['relevant'])}")
        if all(t is None for t in row_tiles):
            warnings.append(f"{method}: its example queries differ from the table's (another data configuration)")
            continue
        names.append(method)
        scores.append(row_scores)
        for i, t in enumerate(row_tiles):
            blocks[i].append(t)
    if not names:
        return warnings or ["no method could be drawn"]
    block_w, gap = k * size, size
    width = len(queries) * block_w + (len(queries) - 1) * gap
    height = (len(names) + 1) * size + size // 2
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, head in enumerate(headers):
        x0 = i * (block_w + gap)
        canvas[:size, x0 : x0 + size] = head
        for r, t in enumerate(blocks[i]):
            y0 = size + size // 2 + r * size
            if t is None:
                t = np.concatenate([tile(None, size) for _ in range(k)], axis=1)
            canvas[y0 : y0 + size, x0 : x0 + t.shape[1]] = t
    dpi = 100
    left, top = 1.6, 0.7
    fig = plt.figure(figsize=(width / dpi + left + 0.5, height / dpi + top + 0.1), dpi=dpi)
    ax = fig.add_axes(
        (
            left / fig.get_figwidth(),
            0.1 / fig.get_figheight(),
            width / dpi / fig.get_figwidth(),
            height / dpi / fig.get_figheight(),
        )
    )
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([])
    centres = [size + size // 2 + r * size + size / 2 for r in range(len(names))]
    ax.set_yticks(centres)
    ax.set_yticklabels(names, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for i, text in enumerate(header_text):
        x0 = i * (block_w + gap)
        ax.text(x0 + size + 6, size / 2, text, fontsize=7, va="center", ha="left")
        for r, score in enumerate(scores):
            ax.text(x0 + block_w + 4, centres[r], score[i], fontsize=6, va="center", ha="left", color="0.3")
    fig.suptitle(
        f"{title}: top-{k} by Hamming distance ({direction}, ties in database order), seed "
        f"{first['seed']}; green = relevant (shares a label), red = not",
        fontsize=9,
        x=0.01,
        ha="left",
        y=1 - 0.15 / fig.get_figheight(),
    )
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return warnings
