"""Pretrained weights without a hub: which file each backbone needs, where it is looked for, and its checksum.

Every pretrained backbone hashbench builds reads its weights from a local file. For a backbone ``name`` the file is
looked for, in order:

1. an explicit path (the method argument ``weights``, e.g. ``--model.weights /path/alexnet.pth``);
2. the weights folder ``$HASHBENCH_WEIGHTS``: ``<name>.pth`` or the file's canonical name
   (``alexnet-owt-7be5be79.pth``);
3. the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<canonical name>`` (where torchvision puts its downloads); for
   CLIP also open_clip's caches (the Hugging Face cache and ``~/.cache/clip``).

A file found in 2. or 3. is checked against the sha256 recorded here before it is loaded; a wrong or truncated file
is refused with its path and the expected checksum (:class:`WeightsChecksumError`). torchvision publishes the first
8 hex digits of each file's sha256 in its file name (the prefix ``torch.hub`` itself checks), so for those files the
check is on that prefix; OpenAI's CLIP URL carries the full digest. A file given explicitly (1.) is the user's own
(fine-tuned weights, another format) and is loaded as is; its sha256 is recorded with the run.

Downloads happen only when the user allows them: ``HASHBENCH_ALLOW_DOWNLOAD=1`` (or ``hashbench weights prepare
NAME --download``) fetches the canonical URL into the hub cache, checking the hash.

``hashbench weights list | verify | prepare`` (see :mod:`hashbench.cli_weights`) shows the table below, checks what
is on disk, and puts a file where hashbench finds it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "WEIGHTS",
    "WeightsSource",
    "WeightsChecksumError",
    "WeightsNeed",
    "allow_download",
    "cached_sha256",
    "candidate_paths",
    "clip_weights_name",
    "explicit_file",
    "file_sha256",
    "find_weights",
    "get_source",
    "missing_message",
    "missing_parts",
    "verify_file",
]

ENV_VAR = "HASHBENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightsSource:
    """One pretrained weights file.

    Attributes:
        name: what a user writes: the backbone name (``alexnet``) or ``clip-<model>-<tag>`` for CLIP towers.
        filename: the file's canonical name (its name in the torch hub cache).
        url: where it is published.
        sha256: its sha256, full (64 hex digits) or the published prefix.
        description: one line for ``hashbench weights list``.
        size_mb: size as published (MB), for the listing.
    """

    name: str
    filename: str
    url: str
    sha256: str
    description: str
    size_mb: float | None = None

    @property
    def full_digest(self) -> bool:
        return len(self.sha256) == 64


def _torchvision(name: str, file: str, sha: str, what: str, size: float) -> WeightsSource:
    return WeightsSource(name, file, f"https://download.pytorch.org/models/{file}", sha, what, size)


#: The weights hashbench's backbones can load. The torchvision entries are the files of each builder's DEFAULT
#: weights enum (the URL names them; the 8-digit hash prefix is the one in the file name).
WEIGHTS: dict[str, WeightsSource] = {
    s.name: s
    for s in (
        _torchvision("alexnet", "alexnet-owt-7be5be79.pth", "7be5be79", "torchvision AlexNet, ImageNet-1k (V1)", 233.1),
        _torchvision("vgg11", "vgg11-8a719046.pth", "8a719046", "torchvision VGG-11, ImageNet-1k (V1)", 506.8),
        _torchvision("vgg16", "vgg16-397923af.pth", "397923af", "torchvision VGG-16, ImageNet-1k (V1)", 527.8),
        _torchvision("resnet18", "resnet18-f37072fd.pth", "f37072fd", "torchvision ResNet-18, ImageNet-1k (V1)", 44.7),
        _torchvision("resnet50", "resnet50-11ad3fa6.pth", "11ad3fa6", "torchvision ResNet-50, ImageNet-1k (V2)", 97.8),
        WeightsSource(
            "clip-ViT-B-32-openai",
            "ViT-B-32.pt",
            "https://openaipublic.azureedge.net/clip/models/"
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            "OpenAI CLIP ViT-B/32 (both towers; open_clip model ViT-B-32, tag openai)",
            337.6,
        ),
    )
}


@dataclass(frozen=True)
class WeightsNeed:
    """A pretrained weights file a model will read, as a method declares it (see ``HashingMethod.weights_needed``).

    Attributes:
        name: a :data:`WEIGHTS` name (``alexnet``, ``clip-ViT-B-32-openai``) or another backbone name (timm).
        explicit: the path the user gave for it, if any.
        required: ``False`` when the method falls back to something else without it (the preflight warns).
        why: which part of the method reads it, for messages.
    """

    name: str
    explicit: str | None = None
    required: bool = True
    why: str = ""


class WeightsChecksumError(ValueError):
    """A weights file's sha256 does not match the published one (wrong or truncated file)."""


def allow_download() -> bool:
    """Whether the user allows hashbench to fetch weights (``HASHBENCH_ALLOW_DOWNLOAD=1``)."""
    return os.environ.get("HASHBENCH_ALLOW_DOWNLOAD", "").lower() in {"1", "true", "yes"}


def clip_weights_name(model: str, tag: str) -> str:
    """Registry name of an open_clip model's pretrained weights, e.g. ``clip-ViT-B-32-openai``."""
    return f"clip-{model}-{tag}"


def get_source(name: str) -> WeightsSource:
    """The :class:`WeightsSource` of ``name``.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    try:
        return WEIGHTS[name]
    except KeyError:
        from hashbench.errors import UnknownNameError

        raise UnknownNameError("pretrained weights", name, WEIGHTS, "see `hashbench weights list`") from None


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def candidate_paths(name: str) -> list[Path]:
    """Every place a registry file is looked for (explicit paths aside), in order."""
    source = get_source(name)
    paths: list[Path] = []
    folder = os.environ.get(ENV_VAR)
    if folder:
        base = Path(folder).expanduser()
        paths += [base / f"{name}.pth", base / source.filename]
    paths.append(hub_checkpoint_dir() / source.filename)
    if name.startswith("clip-"):
        paths.append(Path.home() / ".cache" / "clip" / source.filename)
    return list(dict.fromkeys(paths))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """:func:`file_sha256`, remembered per (path, size, mtime): a table's cells hash each weights file once."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def verify_file(name: str, path: str | os.PathLike[str]) -> str:
    """Check ``path`` against the recorded sha256 of ``name``; returns the file's full sha256.

    Raises:
        WeightsChecksumError: the digest (or its published prefix) differs; the message names the file, the
            expected and the actual sha256.
    """
    source = get_source(name)
    digest = cached_sha256(path)
    if not digest.startswith(source.sha256):
        kind = "sha256" if source.full_digest else "sha256 prefix (published in the file name)"
        raise WeightsChecksumError(
            f"{path}: sha256 {digest} does not match the expected {kind} {source.sha256} of {name!r} "
            f"({source.description}); the file is wrong or truncated. Delete it and get {source.url} again "
            f"(`hashbench weights prepare {name}`)."
        )
    return digest


def explicit_file(path: str | os.PathLike[str], owner: str) -> Path:
    """A weights file the user named, which must exist (``owner`` says what it was given for, in the error).

    Raises:
        FileNotFoundError: no such file.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"weights file {file} (given for {owner}) does not exist")
    return file


def find_weights(name: str, explicit: str | os.PathLike[str] | None = None, verify: bool = True) -> Path | None:
    """Path of the local weights file of ``name`` (checked, see the module docstring), or ``None``.

    Args:
        name: a registry name (:data:`WEIGHTS`).
        explicit: a path the user gave; it must exist and is returned unchecked.
        verify: check a found file's sha256 (raises :class:`WeightsChecksumError` on a mismatch).

    Raises:
        FileNotFoundError: ``explicit`` does not exist.
    """
    if explicit is not None:
        return explicit_file(explicit, repr(name))
    for path in candidate_paths(name):
        if path.is_file():
            if verify:
                verify_file(name, path)
            return path
    return None


def missing_parts(name: str) -> tuple[str, str]:
    """(headline, details) of :func:`missing_message`, for callers that list several problems."""
    source = get_source(name)
    looked = "\n".join(f"    - {p}" for p in candidate_paths(name))
    target = Path(os.environ[ENV_VAR]).expanduser() / source.filename if os.environ.get(ENV_VAR) else None
    where = target or hub_checkpoint_dir() / source.filename
    headline = f"pretrained weights {name!r} ({source.description}) not found"
    details = (
        f"Looked in:\n{looked}\n"
        f"  Get {source.url} (sha256 {source.sha256}{'' if source.full_digest else '...'}) on a machine with internet "
        f"and put it at {where} (or anywhere, with ${ENV_VAR} pointing at its folder); "
        f"`hashbench weights prepare {name} --from FILE` checks and places a copied file, "
        f"`hashbench weights prepare {name} --download` (or HASHBENCH_ALLOW_DOWNLOAD=1) fetches it."
    )
    return headline, details


def missing_message(name: str) -> str:
    """What to do when the weights of ``name`` are not on disk: where they were looked for and how to get them."""
    headline, details = missing_parts(name)
    return f"{headline}. {details}"
