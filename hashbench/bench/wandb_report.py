"""What a table puts into W&B: per cell run curves, tables, images and code statistics; per table a summary run.

Per cell (one W&B run, group = the table, logged by :func:`log_cell` right after the test of the selected
checkpoint, before the run closes):

- ``curves/pr``: precision-recall over Hamming radii (the leaderboard figure's curve) as a W&B line plot;
  ``curves/precision_at_n``: P@N against N. Cross-modal cells have one line per direction.
- ``metrics``: the final test metrics as a ``wandb.Table`` (the run summary holds them too, as ``test/<metric>``).
- ``examples/top10``: one image per example query, the query (blue frame) and its top-10 database items (green =
  relevant, red = not); ``examples/table``: the same as a table with the query position, labels and precision@10.
  Cross-modal cells log ``examples/i2t`` (query image, retrieved text snippets marked ✓/✗) and ``examples/t2i``.
- ``codes/bit_balance`` and ``codes/weight_histogram``: bar charts of the database codes' fraction of +1 per bit
  and of their Hamming weights; ``codes/distinct``, ``codes/largest_bucket``, ``codes/balance_deviation`` in the
  summary.
- the run's config: the whole resolved cell configuration, ``cell_key``, ``code_hash`` and ``code`` (hashbench
  version, git commit, source hashes).

Per table (:func:`publish_table`, the end of ``hashbench table``): a run named ``<table>/leaderboard``
(``job_type=leaderboard``, same group) with ``leaderboard`` (the rendered leaderboard as a ``wandb.Table``:
reported, reproduced mean ± std, Δ, rank range, seeds, the cells' run ids), ``leaderboard/figure`` and
``leaderboard/examples`` (the PNGs) and an artifact ``leaderboard-<table>`` holding the ``.md``, ``.csv`` and
PNGs. Online, :func:`build_workspace` saves a workspace for the group (needs the optional ``wandb-workspaces``
package, ``pip install 'hashbench[wandb]'``) and its URL is printed; without it, the summary run's URL is.
Offline, everything is written under ``<results>/wandb/`` and ``hashbench wandb sync SPEC`` uploads it later.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "LEADERBOARD_COLUMNS",
    "build_workspace",
    "cell_hook",
    "finish_table",
    "leaderboard_pointer",
    "log_cell",
    "publish_table",
    "run_url",
]

#: columns of the ``leaderboard`` table of a table's summary run (from the rendered CSV)
LEADERBOARD_COLUMNS = (
    "method",
    "status",
    "n_bits",
    "metric",
    "reported",
    "reproduced_mean",
    "reproduced_std",
    "n_seeds",
    "delta",
    "rank",
    "rank_low",
    "rank_high",
    "seeds",
    "values",
)


def _project() -> str:
    return os.environ.get("WANDB_PROJECT", "hashbench")


# ------------------------------------------------------------------------------------------------- per cell
def log_cell(run: Any, test_report: Mapping[str, Any], report: Mapping[str, Any], datamodule: Any) -> None:
    """Log one tested cell's curves, metrics table, retrieval examples and code statistics to ``run``.

    Args:
        run: the live ``wandb`` run of the cell.
        test_report: the model's ``test_report`` (scalar tensors and the PR-curve vectors).
        report: what :func:`hashbench.bench.examples.cell_report` returned.
        datamodule: the tested datamodule (images and texts of the examples are read from its test datasets).
    """
    import torch
    import wandb

    payload: dict[str, Any] = {}
    scalars = {k: float(v) for k, v in test_report.items() if isinstance(v, torch.Tensor) and v.numel() == 1} | {
        k: float(v) for k, v in test_report.items() if isinstance(v, (int, float))
    }
    payload["metrics"] = wandb.Table(columns=["metric", "value"], data=[[k, v] for k, v in scalars.items()])
    pr_rows = []
    for key, value in test_report.items():
        if not key.startswith("pr_precision"):
            continue
        direction = key[len("pr_precision") :].strip() or "I→I"
        recall = test_report.get("pr_recall" + key[len("pr_precision") :])
        if recall is None:
            continue
        for radius, (p, r) in enumerate(
            zip(torch.as_tensor(value).tolist(), torch.as_tensor(recall).tolist(), strict=True)
        ):
            if p == p and r == r:  # NaN: no item within that radius for any query
                pr_rows.append([direction, radius, r, p])
    if pr_rows:
        table = wandb.Table(columns=["direction", "radius", "recall", "precision"], data=pr_rows)
        payload["curves/pr"] = wandb.plot.line(
            table, "recall", "precision", stroke="direction", title="Precision-recall over Hamming radii"
        )
    pan_rows = [
        [direction, n, p, r]
        for direction, curve in (report.get("precision_at_n") or {}).items()
        for n, p, r in zip(curve["n"], curve["precision"], curve["recall"], strict=True)
    ]
    if pan_rows:
        table = wandb.Table(columns=["direction", "N", "precision", "recall"], data=pan_rows)
        payload["curves/precision_at_n"] = wandb.plot.line(
            table, "N", "precision", stroke="direction", title="Precision@N (expected over Hamming ties)"
        )
    payload.update(_example_media(report.get("retrieval_examples") or {}, datamodule))
    for modality, stats in (report.get("code_stats") or {}).items():
        suffix = "" if modality == "image" else f"_{modality}"
        balance = wandb.Table(
            columns=["bit", "fraction of +1"], data=[[i, v] for i, v in enumerate(stats["bit_balance"])]
        )
        payload[f"codes/bit_balance{suffix}"] = wandb.plot.bar(
            balance, "bit", "fraction of +1", title=f"Bit balance of the {modality} database codes"
        )
        weights = wandb.Table(
            columns=["bits at +1", "items"], data=[[i, v] for i, v in enumerate(stats["weight_histogram"])]
        )
        payload[f"codes/weight_histogram{suffix}"] = wandb.plot.bar(
            weights, "bits at +1", "items", title=f"Hamming weights of the {modality} database codes"
        )
        for key in ("distinct_codes", "largest_bucket", "balance_deviation"):
            run.summary[f"codes/{key}{suffix}"] = stats[key]
    run.log(payload)


def _example_media(examples: Mapping[str, Any], datamodule: Any) -> dict[str, Any]:
    import wandb

    from hashbench.bench.examples import item_image, item_text, strip, vocabulary_of

    out: dict[str, Any] = {}
    directions = examples.get("directions") or {}
    if not directions:
        return out
    q_set, d_set = (loader.dataset for loader in datamodule.test_dataloader())
    vocab = vocabulary_of(datamodule)

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    for name, ex in directions.items():
        qm, dm = ex["query_modality"], ex["database_modality"]
        if dm == "image":  # images are retrieved: one strip per query
            images, rows = [], []
            for q in ex["queries"]:
                query_img = item_image(q_set, q["position"]) if qm == "image" else None
                caption = f"query #{q['position']} labels {q['labels']}"
                if qm == "text":
                    caption += f": “{item_text(q_set, q['position'], vocab)}”"
                hits = sum(q["relevant"])
                caption += f"; {hits}/{len(q['relevant'])} relevant"
                picture = strip(query_img, [item_image(d_set, p) for p in q["retrieved"]], q["relevant"])
                images.append(wandb.Image(picture, caption=caption))
                rows.append([q["position"], str(q["labels"]), wandb.Image(picture), hits / len(q["relevant"])])
            key, table_key = (
                ("examples/top10", "examples/table") if name == "I→I" else ("examples/t2i", "examples/t2i_table")
            )
            out[key] = images
            out[table_key] = wandb.Table(
                columns=["query position", "query labels", f"query and top-{examples.get('k')}", "precision"],
                data=rows,
            )
        else:  # texts are retrieved (I→T): a table of snippets
            rows = []
            for q in ex["queries"]:
                snippets = [
                    f"{mark(r)} {item_text(d_set, p, vocab)}"
                    for p, r in zip(q["retrieved"], q["relevant"], strict=True)
                ]
                rows.append(
                    [
                        q["position"],
                        str(q["labels"]),
                        wandb.Image(item_image(q_set, q["position"])),
                        "\n".join(snippets),
                        sum(q["relevant"]) / len(q["relevant"]),
                    ]
                )
            out["examples/i2t"] = wandb.Table(
                columns=["query position", "query labels", "query image", "retrieved texts", "precision"], data=rows
            )
    return out


# ------------------------------------------------------------------------------------------------ per table
def leaderboard_pointer(store_root: Path, table: str) -> Path:
    """Where :func:`publish_table` records the table's summary run (``{mode, id, dir, url, workspace}``)."""
    return Path(store_root) / "leaderboards" / f"{table}.wandb.json"


def run_url(link: Mapping[str, Any] | None) -> str | None:
    """The URL of a stored W&B link, when the run was online (or has been synced)."""
    return (link or {}).get("url") or None


def _leaderboard_rows(csv_path: Path, runs: Mapping[tuple[str, int], list[str]]) -> tuple[list[str], list[list]]:
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))

    def num(text: str) -> float | None:
        return float(text) if text not in ("", None) else None

    numeric = {"reported", "reproduced_mean", "reproduced_std", "delta"}
    integer = {"n_bits", "n_seeds", "rank", "rank_low", "rank_high"}
    columns = [*LEADERBOARD_COLUMNS, "runs"]
    data = []
    for row in rows:
        values: list[Any] = []
        for col in LEADERBOARD_COLUMNS:
            text = row.get(col, "")
            if col in numeric:
                values.append(num(text))
            elif col in integer:
                values.append(int(text) if text not in ("", None) else None)
            else:
                values.append(text)
        values.append(" ".join(runs.get((row["method"], int(row["n_bits"])), [])))
        data.append(values)
    return columns, data


def publish_table(
    spec: Any,
    store: Any,
    paths: Mapping[str, Path],
    mode: str,
    profile: str | None = None,
    seeds: list[int] | None = None,
    workspace: bool = True,
) -> dict[str, Any]:
    """Write the table's W&B summary run (see the module docstring) and, online, its workspace.

    The run id is derived from the table name and the rendered CSV, so publishing an unchanged leaderboard again
    reuses the run (online: resumed and overwritten; offline: the existing run folder is kept).

    Returns:
        The link stored in :func:`leaderboard_pointer`: ``mode``, ``id``, ``dir`` (the run folder, relative to the
        store), ``url`` (online), ``workspace`` (online, with ``wandb-workspaces``), ``open`` (the one address to
        open: the workspace, else the run URL, else the run folder).
    """
    import wandb

    from hashbench.bench.render import collect_rows

    # wandb's own banner and run summary would bury the one closing line (the cells' runs are silenced too)
    os.environ.setdefault("WANDB_SILENT", "true")
    csv_path = Path(paths["csv"])
    digest = hashlib.sha256(spec.name.encode() + b"\0" + csv_path.read_bytes()).hexdigest()[:16]
    run_id = f"lb-{digest}"
    save_dir = Path(store.root) / "wandb"
    save_dir.mkdir(parents=True, exist_ok=True)
    pointer = leaderboard_pointer(store.root, spec.name)
    if mode == "offline":
        existing = sorted((save_dir / "wandb").glob(f"offline-run-*-{run_id}"))
        if existing:
            link = {"mode": mode, "id": run_id, "dir": str(existing[-1].relative_to(store.root)), "url": None}
            link["open"] = str(existing[-1])
            _write_pointer(pointer, link)
            return link
    rows, _ = collect_rows(spec, store, profile, seeds)
    runs: dict[tuple[str, int], list[str]] = {}
    for row in rows:
        for bits, entry in row.entries.items():
            for rec in entry.records:
                wb = rec.get("wandb") or {}
                ref = wb.get("url") or wb.get("id")
                if ref:
                    runs.setdefault((row.method, bits), []).append(str(ref))
    columns, data = _leaderboard_rows(csv_path, runs)
    run = wandb.init(
        project=_project(),
        group=spec.name,
        job_type="leaderboard",
        name=f"{spec.name}/leaderboard",
        id=run_id,
        resume="allow" if mode == "online" else None,
        dir=str(save_dir),
        mode=mode,
        tags=["leaderboard", spec.name, spec.protocol],
        config={
            "table": spec.name,
            "title": spec.title,
            "protocol": spec.protocol,
            "metric": spec.metric,
            "bits": list(spec.bits),
            "profile": profile or spec.profile,
            "seeds": list(seeds) if seeds is not None else list(spec.seeds),
            "code": _code_versions(rows),
        },
    )
    try:
        payload: dict[str, Any] = {"leaderboard": wandb.Table(columns=columns, data=data)}
        if paths.get("png") and Path(paths["png"]).is_file():
            payload["leaderboard/figure"] = wandb.Image(str(paths["png"]), caption=spec.title)
        if paths.get("examples") and Path(paths["examples"]).is_file():
            payload["leaderboard/examples"] = wandb.Image(str(paths["examples"]), caption="retrieval examples")
        run.log(payload)
        run.summary["cells_finished"] = sum(len(e.records) for r in rows for e in r.entries.values())
        artifact = wandb.Artifact(f"leaderboard-{spec.name}", type="leaderboard", description=spec.title)
        for kind in ("md", "csv", "png", "examples"):
            if paths.get(kind) and Path(paths[kind]).is_file():
                artifact.add_file(str(paths[kind]))
        run.log_artifact(artifact)
        link: dict[str, Any] = {"mode": mode, "id": run.id, "project": run.project}
        link["url"] = run.url if mode == "online" else None
        run_dir = Path(run.dir).parent
        try:
            link["dir"] = str(run_dir.resolve().relative_to(Path(store.root).resolve()))
        except ValueError:
            link["dir"] = str(run_dir)
        entity = getattr(run, "entity", None)
    finally:
        run.finish()
    link["open"] = link["url"] or str(run_dir)
    if mode == "online" and workspace:
        try:
            saved = build_workspace(spec, entity, link["project"]).save()
            link["workspace"] = saved.url
            link["open"] = saved.url
        except ImportError:
            link["workspace"] = None  # the optional package is missing: the run URL is what to open
    _write_pointer(pointer, link)
    return link


def _write_pointer(pointer: Path, link: Mapping[str, Any]) -> None:
    from hashbench.bench.store import atomic_write_json

    pointer.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(pointer, dict(link))


def _code_versions(rows: list[Any]) -> dict[str, Any]:
    versions = sorted(
        {str((rec.get("code") or {}).get("hashbench")) for r in rows for e in r.entries.values() for rec in e.records}
    )
    hashes = sorted({str(rec.get("code_hash", ""))[:12] for r in rows for e in r.entries.values() for rec in e.records})
    return {"hashbench": versions, "code_hashes": hashes}


def build_workspace(spec: Any, entity: str | None, project: str | None = None) -> Any:
    """A W&B workspace for the table's group: leaderboard, curves, examples, code statistics, training curves.

    Needs the optional ``wandb-workspaces`` package (``pip install 'hashbench[wandb]'``); the object is built
    offline and saved with ``.save()`` (online only).

    Raises:
        MissingExtraError: ``wandb-workspaces`` is not installed (an ``ImportError``).
    """
    from hashbench.errors import optional_import

    optional_import("wandb_workspaces", "wandb", "a W&B workspace for a table")
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def line_chart(table_key: str, x: str, y: str, title: str) -> Any:
        return wr.CustomChart(
            query={"summaryTable": {"tableKey": table_key}},
            chart_name="wandb/line/v0",
            chart_fields={"x": x, "y": y, "stroke": None},
            chart_strings={"title": title},
        )

    def bar_chart(table_key: str, label: str, value: str, title: str) -> Any:
        return wr.CustomChart(
            query={"summaryTable": {"tableKey": table_key}},
            chart_name="wandb/bar/v0",
            chart_fields={"label": label, "value": value},
            chart_strings={"title": title},
        )

    metric = f"test/{spec.metric}"
    sections = [
        ws.Section(
            name="Leaderboard",
            is_open=True,
            panels=[
                wr.WeavePanelSummaryTable(table_name="leaderboard"),
                wr.MediaBrowser(title="Leaderboard figure", media_keys=["leaderboard/figure"]),
                wr.MediaBrowser(
                    title="Retrieval examples (3 queries, every method)", media_keys=["leaderboard/examples"]
                ),
                wr.BarPlot(title=f"{spec.metric} per run", metrics=[metric]),
            ],
        ),
        ws.Section(
            name="Curves",
            is_open=True,
            panels=[
                line_chart("curves/pr_table", "recall", "precision", "Precision-recall over Hamming radii"),
                line_chart("curves/precision_at_n_table", "N", "precision", "Precision@N"),
            ],
        ),
        ws.Section(
            name="Retrieval examples",
            is_open=True,
            panels=[
                wr.MediaBrowser(title="Query and top-10 (green = relevant)", media_keys=["examples/top10"]),
                wr.WeavePanelSummaryTable(table_name="examples/table"),
            ],
        ),
        ws.Section(
            name="Codes",
            is_open=False,
            panels=[
                bar_chart("codes/bit_balance_table", "bit", "fraction of +1", "Bit balance"),
                bar_chart("codes/weight_histogram_table", "bits at +1", "items", "Hamming weights"),
                wr.ScalarChart(title="Distinct codes", metric="codes/distinct_codes"),
            ],
        ),
        ws.Section(
            name="Training",
            is_open=False,
            panels=[
                wr.LinePlot(title="Training loss", x="trainer/global_step", y=["train/loss"]),
                wr.LinePlot(title="Validation mAP", x="epoch", y=["val/mAP"]),
                wr.WeavePanelSummaryTable(table_name="metrics"),
            ],
        ),
    ]
    return ws.Workspace(
        entity=entity or "",
        project=project or _project(),
        name=f"hashbench: {spec.name}",
        sections=sections,
        runset_settings=ws.RunsetSettings(
            filters=ws.And(ws.Metric("Group") == spec.name),
            pinned_columns=[f"summary:{metric}", "config:method", "config:n_bits", "config:seed"],
        ),
    )


def finish_table(
    spec: Any,
    store: Any,
    paths: Mapping[str, Path],
    mode: str,
    profile: str | None = None,
    seeds: list[int] | None = None,
) -> tuple[str, bool]:
    """The end of ``hashbench table``: :func:`publish_table`, then the one line to print.

    Returns:
        ``(line, ok)``: online ``"W&B: <url>"`` (the workspace, else the summary run); offline where the runs are
        and the command that uploads them; ``ok`` false (a warning line) when the summary run could not be written,
        which leaves the table's cells and leaderboard as they are.
    """
    try:
        link = publish_table(spec, store, paths, mode, profile, seeds)
    except Exception as err:  # noqa: BLE001 - the cells and the leaderboard are done; say what failed
        return f"warning: the table's W&B summary run was not written ({type(err).__name__}: {err})", False
    if mode == "online":
        return f"W&B: {link['open']}", True
    return describe_offline(store.root, spec.name, link), True


def describe_offline(store_root: Path, table: str, link: Mapping[str, Any] | None) -> str:
    """The closing line of an offline ``hashbench table``: where the runs are and the command that uploads them."""
    wandb_dir = Path(store_root) / "wandb" / "wandb"
    n = len(list(wandb_dir.glob("offline-run-*"))) if wandb_dir.is_dir() else 0
    where = f"summary run {link['dir']}, " if link and link.get("dir") else ""
    return (
        f"W&B (offline): {where}{n} offline run(s) under {wandb_dir}; upload them with "
        f"`hashbench wandb sync {table} --results {store_root}` (then this prints the one URL to open)"
    )


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def cell_hook(logger: Any) -> Callable[[Any, Any, Any], dict[str, Any]]:
    """The ``after_test`` hook of a table cell (:func:`hashbench.bench.run.run_cell`).

    It returns :func:`hashbench.bench.examples.cell_report` (stored in the cell's ``extra``) and logs it with
    :func:`log_cell` to the run of ``logger`` (a Lightning ``WandbLogger``, or ``False``). A failure here is
    warned about and recorded as ``extra["report_error"]``: it must not cost a trained cell its numbers.
    """

    def hook(model: Any, datamodule: Any, trainer: Any) -> dict[str, Any]:
        from hashbench.bench.examples import cell_report

        try:
            report = cell_report(model, datamodule, trainer)
        except Exception as err:  # noqa: BLE001 - recorded and warned about, see the docstring
            return _failed("report_error", "retrieval examples of this cell", err)
        if report and logger is not False:
            try:
                log_cell(logger.experiment, model.test_report, report, datamodule)
            except Exception as err:  # noqa: BLE001
                report.update(_failed("wandb_error", "W&B panels of this cell", err))
        return report

    return hook


def _failed(key: str, what: str, err: Exception) -> dict[str, str]:
    text = f"{type(err).__name__}: {err}"
    warnings.warn(f"{what} failed (its metrics are unaffected): {text}", stacklevel=3)
    return {key: text}


# ------------------------------------------------------------------------------------ reading an offline run
#: the transaction log's framing (LevelDB's log format, as wandb writes ``run-<id>.wandb``): a 7-byte file header
#: (``:W&B``, magic, version), then 32 KiB blocks of records, each with a 7-byte header (crc32, uint16 length,
#: uint8 type: 1 full, 2 first, 3 middle, 4 last); a block tail shorter than a header is padding.
_BLOCK, _HEADER = 32768, 7


def read_run_records(path: str | Path) -> list[Any]:
    """Every record of an offline run's ``.wandb`` file (or of the run folder), decoded with wandb's own protobuf
    ``Record`` message (``wandb.proto.wandb_internal_pb2``), in write order."""
    import struct

    from wandb.proto import wandb_internal_pb2

    path = Path(path)
    if path.is_dir():
        (path,) = sorted(path.glob("run-*.wandb"))
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log (no ':W&B' header)")
    records, pending, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEADER:  # block trailer
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if length == 0 and kind == 0:
            pos += room  # zero padding to the end of the block
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def read_offline_run(path: str | Path) -> dict[str, Any]:
    """An offline run folder read back: ``run`` (id, project, group, name, job type, tags), ``config``,
    ``history`` (one dict per logged step, values JSON-decoded) and ``summary`` (the last summary values)."""
    records = read_run_records(path)
    out: dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {}}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out["run"] = {
                "id": r.run_id,
                "project": r.project,
                "group": r.run_group,
                "name": r.display_name,
                "job_type": r.job_type,
                "tags": list(r.tags),
            }
            for item in r.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                _put(out["config"], item)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, item)
            out["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _put(out["summary"], item)
    return out


def _put(target: dict[str, Any], item: Any) -> None:
    """Set a record item (``key``, or ``nested_key`` = a path of dict keys) to its JSON-decoded value."""
    path = [item.key] if item.key else list(item.nested_key)
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = json.loads(item.value_json)
