"""From a checkpoint to an index: rebuild the model, encode a split of the protocol, write the index.

Checkpoints are Lightning checkpoints of a :class:`~hashbench.methods.base.HashingMethod`. The model is rebuilt
from the checkpoint's ``hyper_parameters`` (every constructor argument, plus the data facts the model was
configured with) and its ``state_dict``. Checkpoints written by ``hashbench fit`` (Lightning's CLI) record the
method class (``_class_path``); those of a plain ``Trainer`` (and of :func:`~hashbench.bench.run.run_cell` with a
``root_dir``) do not, and need the method's name (``model="DPSH"``, ``--model DPSH``). Pretrained-weights options
are switched off when rebuilding: the checkpoint holds every weight, so no weights file has to be on disk.

A *run* folder (what ``hashbench fit`` writes below ``runs/``) stands for one of its checkpoints: the newest
``best-*.ckpt`` (the best validation epoch), else the newest ``last.ckpt``, else the newest ``*.ckpt``.

Codes are those of the evaluator: :meth:`HashingMethod.encode_eval_batch` on the protocol's test loaders
(``[query, database]``), i.e. ``sign(u)`` with ``sign(0) = +1``; cross-modal methods encode images or texts
(``modality``). Each index row keeps its item's ``index`` field (the position in the split) as its id, and, for
hashbench's datamodules, the item's position in the pooled dataset.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.search.index import CodeIndex, _encode_ids

__all__ = [
    "CheckpointError",
    "build_datamodule",
    "checkpoint_sha256",
    "encode_split",
    "export_index",
    "find_checkpoint",
    "load_checkpoint_model",
    "load_image",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the method / data it is used with."""


def checkpoint_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a file; for a run folder, the checkpoint it stands for (module docstring)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run folder")
    found = [p for p in path.rglob("*.ckpt") if p.is_file()]
    if not found:
        raise CheckpointError(f"{path}: no *.ckpt file below this folder")
    for pick in (lambda p: p.name.startswith("best"), lambda p: p.name == "last.ckpt", lambda p: True):
        chosen = [p for p in found if pick(p)]
        if chosen:
            return max(chosen, key=lambda p: (p.stat().st_mtime, str(p)))
    raise AssertionError("unreachable")  # pragma: no cover


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_checkpoint_model(
    checkpoint: str | Path, model: str | None = None, device: str = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """Rebuild the method a checkpoint was saved from; returns ``(model in eval mode, checkpoint facts)``.

    Args:
        checkpoint: a ``.ckpt`` file or a run folder.
        model: the method's registry name or import path; needed when the checkpoint does not record its class,
            and checked against it when it does.
        device: where the model is put.

    Raises:
        CheckpointError: unreadable file, not a hashbench method's checkpoint, no class recorded and no
            ``model``, a ``model`` other than the recorded class, or weights that do not fit the class.
    """
    import torch

    from hashbench.registry import canonical_method_name, resolve_method

    path = find_checkpoint(checkpoint)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # any unpickling / zip error: the file is not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(err)})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{path}: not a Lightning checkpoint of a hashbench method (it has no state_dict / hyper_parameters)"
        )
    hparams = dict(ckpt["hyper_parameters"])
    recorded = hparams.get("_class_path")

    def resolve(name: str, what: str) -> type:
        try:
            return resolve_method(name)
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{what}: {err.args[0]}") from None

    if model is not None:
        cls = resolve(model, "--model")
        if recorded is not None:
            rec_cls = resolve(recorded, f"{path} records the class {recorded!r}")
            if rec_cls is not cls:
                raise CheckpointError(
                    f"{path} is a checkpoint of {canonical_method_name(rec_cls)}, not of {canonical_method_name(cls)}"
                )
    elif recorded is not None:
        cls = resolve(recorded, f"{path} records the class {recorded!r}")
    else:
        raise CheckpointError(
            f"{path} does not record its method class (checkpoints of a plain Trainer or of run_cell hold only the "
            "constructor arguments); pass --model NAME, the method it was trained with"
        )
    name = canonical_method_name(cls)
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}
    # The checkpoint holds every weight: do not look for pretrained files that only initialise the network.
    for key, off in (("pretrained", False), ("weights", None)):
        if key in kwargs:
            kwargs[key] = off
    try:
        net = cls(**kwargs)
    except TypeError as err:
        raise CheckpointError(f"{path}: its hyperparameters do not fit {name} ({err}); is the method right?") from None
    try:
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: its weights do not fit {name} ({_first_line(err)}); is the method right?"
        ) from None
    net.eval().to(device)
    dm_hparams = ckpt.get("datamodule_hyper_parameters") or {}
    info = {
        "path": str(path.resolve()),
        "sha256": checkpoint_sha256(path),
        "method": name,
        "method_class": f"{cls.__module__}.{cls.__qualname__}",
        "n_bits": int(net.n_bits),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "protocol": dm_hparams.get("protocol") if isinstance(dm_hparams.get("protocol"), str) else None,
    }
    return net, info


def build_datamodule(data: str, data_args: dict[str, Any] | None = None) -> Any:
    """A datamodule from a protocol name (``cifar10-1``) or a datamodule class's import path, set up."""
    args = dict(data_args or {})
    if "." in data:
        from hashbench.bench.run import instantiate_datamodule

        try:
            dm = instantiate_datamodule({"class_path": data, "init_args": args}, batch_size=128, seed=0)
        except TypeError as err:
            raise ValueError(f"datamodule {data}: {err}") from None
    else:
        from hashbench.data import create_datamodule

        try:
            dm = create_datamodule(data, **args)
        except KeyError as err:
            raise ValueError(str(err.args[0])) from None
        except TypeError as err:
            raise ValueError(f"protocol {data}: {err}") from None
    dm.prepare_data()
    dm.setup("test")
    return dm


def _protocol_name(dm: Any, fallback: str | None) -> str | None:
    proto = getattr(dm, "protocol", None)
    return getattr(proto, "name", None) or fallback


def check_model_fits_data(model: Any, dm: Any, what: str = "the checkpoint") -> None:
    """Refuse data whose classes or input shape differ from what the model was trained on."""
    hp = model.hparams
    num_classes = getattr(dm, "num_classes", None)
    if hp.get("num_classes") is not None and num_classes is not None and int(hp.num_classes) != int(num_classes):
        raise CheckpointError(
            f"{what} was trained on {hp.num_classes} classes but {_protocol_name(dm, 'the data')} has {num_classes}"
        )
    shape = getattr(dm, "image_shape", None)
    built = (hp.get("in_channels"), hp.get("image_size"))
    if shape is not None and None not in built and tuple(built) != (int(shape[0]), int(shape[-1])):
        raise CheckpointError(
            f"{what} was trained on {built[0]}-channel {built[1]} px images but {_protocol_name(dm, 'the data')} "
            f"gives {shape[0]}-channel {shape[-1]} px images"
        )


def _is_cross_modal(model: Any) -> bool:
    return hasattr(model, "encode_text")


def encode_split(
    model: Any, dm: Any, split: str = "database", modality: str = "image", device: str = "cpu"
) -> tuple[Any, np.ndarray]:
    """Codes of one split of ``dm``'s test loaders, as the evaluator computes them; returns ``(codes, ids)``.

    Args:
        split: ``database`` or ``query``.
        modality: ``image``; or ``text`` for cross-modal methods.

    Returns:
        ``int8`` tensor ``[n, K]`` in ``{-1, +1}`` and the items' ``index`` fields (``int64 [n]``).
    """
    import torch
    from lightning.fabric.utilities.apply_func import move_data_to_device

    if split not in ("database", "query"):
        raise ValueError(f"split must be 'database' or 'query', got {split!r}")
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    if modality == "text" and not _is_cross_modal(model):
        raise ValueError(f"{type(model).__name__} is not a cross-modal method: it has no text codes")
    loader_idx = 1 if split == "database" else 0
    loader = dm.test_dataloader()[loader_idx]
    model.eval()
    codes, ids = [], []
    with torch.no_grad():
        for batch in loader:
            batch = move_data_to_device(batch, torch.device(device))
            if modality == "text":
                c = model.encode_text(batch.text)
            elif _is_cross_modal(model):
                c = model.encode_image(batch.image)
            else:
                c = model.encode_eval_batch(batch, loader_idx)
            codes.append(c.to("cpu", torch.int8))
            ids.append(batch.index.to("cpu").reshape(-1))
    if not codes:
        return torch.zeros(0, int(model.n_bits), dtype=torch.int8), np.zeros(0, np.int64)
    return torch.cat(codes), torch.cat(ids).numpy().astype(np.int64)


def export_index(
    checkpoint: str | Path,
    out: str | Path,
    *,
    data: str | None = None,
    index_type: str = "flat",
    model: str | None = None,
    datamodule: Any = None,
    data_args: dict[str, Any] | None = None,
    params: dict[str, int] | None = None,
    modality: str = "image",
    device: str = "cpu",
) -> CodeIndex:
    """Encode a protocol's database with a trained model and write an index (faiss, or ``mih``) plus its metadata.

    Args:
        checkpoint: a ``.ckpt`` file or a run folder (see :func:`find_checkpoint`).
        out: the index file to write (its metadata goes to ``out.meta.json``).
        data: protocol name or datamodule import path (default: the protocol the checkpoint records, if any).
        index_type: ``flat``, ``hash``, ``multihash``, ``hnsw`` or ``mih`` (hashbench's own exact MIH, not faiss).
        model: the method's name, when the checkpoint does not record its class.
        datamodule: an already-built datamodule instead of ``data`` (tests, custom data).
        data_args: datamodule constructor arguments (``{"eval_limit": 1000}``, ``{"root": ...}``).
        params: index parameters (:func:`hashbench.search.default_params`).
        modality: ``image``, or ``text`` for a cross-modal method's text codes.
        device: where the model encodes.

    Returns:
        The written :class:`~hashbench.search.CodeIndex`.
    """
    from hashbench.bench.grid import code_version
    from hashbench.registry import resolve_method

    net, info = load_checkpoint_model(checkpoint, model, device)
    if datamodule is None:
        data = data or info["protocol"]
        if not data:
            raise ValueError("which data? pass --data PROTOCOL (the checkpoint does not record its protocol)")
        if info["protocol"] and data != info["protocol"] and "." not in data:
            raise CheckpointError(
                f"{info['path']} was trained on protocol {info['protocol']!r}, not {data!r}; its codes would not "
                "describe that database"
            )
        datamodule = build_datamodule(data, data_args)
    else:
        data = data or f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
    check_model_fits_data(net, datamodule, f"checkpoint {info['path']}")
    codes, ids = encode_split(net, datamodule, "database", modality, device)
    protocol = _protocol_name(datamodule, data)
    split_indices = getattr(datamodule, "split_indices", None)
    items = None
    if isinstance(split_indices, dict) and "database" in split_indices:
        pool = np.asarray(split_indices["database"], dtype=np.int64)
        if len(ids) and ids.max() < len(pool):
            items = pool[ids]
    version = code_version(resolve_method(info["method_class"]), protocol=protocol if "." not in data else None)
    version.pop("strict", None)
    meta = {
        "split": "database",
        "modality": modality,
        "checkpoint": {k: info[k] for k in ("path", "sha256", "method_class", "epoch", "global_step")},
        "data": {
            "spec": data,
            "data_args": dict(data_args or {}),
            "image_shape": list(getattr(datamodule, "image_shape", ()) or ()) or None,
            "transform": getattr(datamodule, "transform_name", None),
            "image_size": getattr(datamodule, "image_size", None),
        },
        "code_version": version,
        "items": None if items is None else _encode_ids(items),
    }
    index = CodeIndex.from_codes(
        codes, index_type, ids=ids, method=info["method"], protocol=protocol, params=params, meta=meta
    )
    index.save(out)
    return index


def load_image(path: str | Path, meta: dict[str, Any]) -> Any:
    """One image file as the ``[1, C, H, W]`` tensor the exported model reads (the protocol's eval transform)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision import transforms as T

    from hashbench.data.protocols import get_protocol
    from hashbench.data.transforms import pil_transform

    name = meta.get("protocol")
    try:
        protocol = get_protocol(name) if name else None
    except KeyError:
        protocol = None
    if protocol is None:
        raise ValueError(
            f"--image needs an index exported from a registered protocol, this one is {name!r}; encode the "
            "queries in Python and call hashbench.search.load_index(...).search(codes, k) instead"
        )
    data = meta.get("data") or {}
    transform = data.get("transform") or protocol.default_transform
    image_size = data.get("image_size")
    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: not a readable image ({_first_line(err)})") from None
    if transform == "native" and protocol.channels == 1:
        side = image_size or protocol.image_size
        tf = T.Compose([T.Resize((side, side)), T.ToTensor(), T.Normalize(protocol.mean, protocol.std)])
        x = tf(img.convert("L"))
    else:
        x = pil_transform(transform, protocol, image_size, train=False, flip=False)(img.convert("RGB"))
    shape = data.get("image_shape")
    if shape and list(x.shape) != list(shape):
        raise ValueError(f"{path}: the transform gave shape {list(x.shape)}, the model reads {shape}")
    return x.unsqueeze(0)
