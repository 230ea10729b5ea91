"""The protocol table: dataset + split + relevance rule + default mAP cut-off, as data.

Every entry is a protocol as hashbench specifies it. A protocol names its *family* (which datamodule class
reads it), its sizes, the directory below the data root where its files live, and the rules from which its
split is drawn. Relevance is always "shares at least one label" (for single-label data: same class).

Example:
    >>> from hashbench.data.protocols import get_protocol
    >>> get_protocol("fashion-mnist").num_classes
    10
"""

from __future__ import annotations

from dataclasses import dataclass

# ImageNet statistics (torchvision's pretrained models) and CLIP's (open_clip OPENAI_DATASET_MEAN/STD).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Protocol:
    """One retrieval protocol.

    Attributes:
        name: key in :data:`PROTOCOLS` (what ``--data`` takes).
        family: reader family: ``fashion-mnist``, ``cifar10``, ``svhn``, ``listfile``, ``crossmodal-mat``
            or ``crossmodal-clip``; it selects the datamodule class.
        num_classes: width of the multi-hot label vector.
        multi_label: whether an item can carry several labels.
        map_k: default mAP cut-off (``None`` = the whole database).
        query: query-set size, as described in the spec.
        train: training-set size, as described in the spec.
        database: database (retrieval set) size, as described in the spec.
        image_size: native side length in pixels for small from-scratch networks.
        modality: ``"image"`` or ``"image-text"``.
        description: one line for ``hashbench data list``.
        source: where the data comes from and how to obtain it.
        data_dir: sub-directory of the data root holding this protocol's files.
        channels: channels of the native images (1 for Fashion-MNIST).
        default_transform: what ``transform="auto"`` resolves to (``native``, ``imagenet`` or ``clip``).
        mean: per-channel normalisation mean for the native transform.
        std: per-channel normalisation std for the native transform.
        query_per_class: per-class query count for per-class splits (single-label pools), else 0.
        train_per_class: per-class training count for per-class splits, else 0.
        num_query: query count for random (multi-label) splits drawn by hashbench, else 0.
        num_train: training count for random splits drawn by hashbench, else 0.
        database_rule: which items form the database: ``rest`` (all but query and train),
            ``all_but_query`` (train included), ``train`` (database = training set) or ``listfile``.
        split_seed: seed of the PCG64 generator the split is drawn with.
        text_dim: dimension of the bag-of-words text vector (DCMH format), else 0.
    """

    name: str
    family: str
    num_classes: int
    multi_label: bool
    map_k: int | None
    query: str
    train: str
    database: str
    image_size: int
    modality: str
    description: str
    source: str
    data_dir: str
    channels: int = 3
    default_transform: str = "native"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    query_per_class: int = 0
    train_per_class: int = 0
    num_query: int = 0
    num_train: int = 0
    database_rule: str = "rest"
    split_seed: int = 0
    text_dim: int = 0


_CIFAR_SOURCE = (
    "CIFAR-10 python version (cifar-10-python.tar.gz, https://www.cs.toronto.edu/~kriz/cifar.html); "
    "`hashbench data prepare cifar10` downloads it with torchvision into $HASHBENCH_DATA/cifar10/"
)
# Per-channel statistics of the training images (widely published values), so that native inputs are roughly
# zero-mean / unit-variance.
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)
_LISTFILE_HELP = (
    "list files train.txt, test.txt (queries), database.txt in $HASHBENCH_DATA/{dir}/ "
    "(format of DeepHash-pytorch / HashNet: `relative/path l1 ... lC`); images below the same directory "
    "or below --data.image_root. {where}"
)

_ALL: list[Protocol] = [
    Protocol(
        name="fashion-mnist",
        family="fashion-mnist",
        num_classes=10,
        multi_label=False,
        map_k=None,
        query="100/class = 1,000",
        train="500/class = 5,000",
        database="the other 64,000 (train excluded)",
        image_size=28,
        modality="image",
        description="Fashion-MNIST train+test pooled (70k), hashbench's offline default",
        source=(
            "Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) puts the IDX .gz "
            "files in /usr/share/datasets/fashion-mnist; or copy them to $HASHBENCH_DATA/fashion-mnist/; "
            "or `hashbench data prepare fashion-mnist` downloads them with torchvision"
        ),
        data_dir="fashion-mnist",
        channels=1,
        # Mean/std of the 60k training images, measured on the Debian files.
        mean=(0.2860,),
        std=(0.3530,),
        query_per_class=100,
        train_per_class=500,
        database_rule="rest",
    ),
    Protocol(
        name="cifar10",
        family="cifar10",
        num_classes=10,
        multi_label=False,
        map_k=None,
        query="100/class = 1,000",
        train="500/class = 5,000",
        database="the other 54,000 (train excluded)",
        image_size=32,
        modality="image",
        description="CIFAR-10 pooled 60k, DeepHash-pytorch `cifar10` (a.k.a. cifar10-i)",
        source=_CIFAR_SOURCE,
        data_dir="cifar10",
        mean=_CIFAR_MEAN,
        std=_CIFAR_STD,
        query_per_class=100,
        train_per_class=500,
        database_rule="rest",
    ),
    Protocol(
        name="cifar10-1",
        family="cifar10",
        num_classes=10,
        multi_label=False,
        map_k=None,
        query="100/class = 1,000",
        train="500/class = 5,000, drawn from the database",
        database="59,000 (all but queries; train included)",
        image_size=32,
        modality="image",
        description="CIFAR-10 pooled 60k, DPSH protocol (DeepHash-pytorch `cifar10-1`)",
        source=_CIFAR_SOURCE,
        data_dir="cifar10",
        mean=_CIFAR_MEAN,
        std=_CIFAR_STD,
        query_per_class=100,
        train_per_class=500,
        database_rule="all_but_query",
    ),
    Protocol(
        name="cifar10-2",
        family="cifar10",
        num_classes=10,
        multi_label=False,
        map_k=None,
        query="1,000/class = 10,000",
        train="5,000/class = 50,000",
        database="= train (50,000)",
        image_size=32,
        modality="image",
        description="CIFAR-10 pooled 60k, DeepHash-pytorch `cifar10-2`",
        source=_CIFAR_SOURCE,
        data_dir="cifar10",
        mean=_CIFAR_MEAN,
        std=_CIFAR_STD,
        query_per_class=1000,
        train_per_class=5000,
        database_rule="train",
    ),
    Protocol(
        name="svhn",
        family="svhn",
        num_classes=10,
        multi_label=False,
        map_k=None,
        query="100/class = 1,000",
        train="500/class = 5,000",
        database="all non-query images (98,289; train included)",
        image_size=32,
        modality="image",
        description="SVHN train+test pooled (99,289), hashbench's own protocol",
        source=(
            "SVHN cropped digits train_32x32.mat + test_32x32.mat (http://ufldl.stanford.edu/housenumbers/); "
            "`hashbench data prepare svhn` downloads them with torchvision into $HASHBENCH_DATA/svhn/"
        ),
        data_dir="svhn",
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        query_per_class=100,
        train_per_class=500,
        database_rule="all_but_query",
    ),
    Protocol(
        name="nuswide21",
        family="listfile",
        num_classes=21,
        multi_label=True,
        map_k=5000,
        query="2,100 (100/class)",
        train="10,500 (500/class)",
        database="193,734 (all but queries; train included)",
        image_size=64,
        modality="image",
        description="NUS-WIDE, 21 most frequent concepts (list files)",
        source=_LISTFILE_HELP.format(
            dir="nuswide21",
            where="DeepHash-pytorch ships the lists under data/nuswide_21/; images from the NUS-WIDE site "
            "(https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html).",
        ),
        data_dir="nuswide21",
        default_transform="imagenet",
        database_rule="listfile",
    ),
    Protocol(
        name="coco",
        family="listfile",
        num_classes=80,
        multi_label=True,
        map_k=5000,
        query="5,000",
        train="10,000",
        database="~122k (HashNet lists)",
        image_size=64,
        modality="image",
        description="MS-COCO, HashNet split (list files)",
        source=_LISTFILE_HELP.format(
            dir="coco",
            where="HashNet (github.com/thuml/HashNet, data/coco/) and DeepHash-pytorch (data/coco/) ship the "
            "lists; images from https://cocodataset.org (train2014 + val2014).",
        ),
        data_dir="coco",
        default_transform="imagenet",
        database_rule="listfile",
    ),
    Protocol(
        name="imagenet100",
        family="listfile",
        num_classes=100,
        multi_label=False,
        map_k=1000,
        query="5,000",
        train="13,000 (130/class)",
        database="~128k",
        image_size=64,
        modality="image",
        description="ImageNet, 100 classes, HashNet split (list files)",
        source=_LISTFILE_HELP.format(
            dir="imagenet100",
            where="HashNet (data/imagenet/) and DeepHash-pytorch (data/imagenet/) ship the lists; images from "
            "ILSVRC-2012 (https://image-net.org).",
        ),
        data_dir="imagenet100",
        default_transform="imagenet",
        database_rule="listfile",
    ),
    Protocol(
        name="mirflickr",
        family="listfile",
        num_classes=24,
        multi_label=True,
        map_k=None,
        query="1,000",
        train="4,000",
        database="20,000",
        image_size=64,
        modality="image",
        description="MIRFlickr-25K single-modal, 24 labels (list files)",
        source=_LISTFILE_HELP.format(
            dir="mirflickr",
            where="DeepHash-pytorch ships the lists (data/mirflickr/); images from "
            "https://press.liacs.nl/mirflickr/ (mirflickr25k.zip). The 38-label `_r1` variant works as well if "
            "you pass --data.num_classes 38.",
        ),
        data_dir="mirflickr",
        default_transform="imagenet",
        database_rule="listfile",
    ),
    Protocol(
        name="mirflickr25k-dcmh",
        family="crossmodal-mat",
        num_classes=24,
        multi_label=True,
        map_k=None,
        query="2,000",
        train="10,000 (drawn from retrieval)",
        database="18,015 (all but queries)",
        image_size=224,
        modality="image-text",
        description="MIRFlickr-25K, DCMH protocol: 20,015 pairs, 1,386-dim BoW text",
        source=(
            "DCMH's FLICKR-25K.mat (MATLAB v7.3 with `images`, `YAll`, `LAll`; links in "
            "github.com/jiangqy/DCMH-CVPR2017) into $HASHBENCH_DATA/mirflickr25k-dcmh/"
        ),
        data_dir="mirflickr25k-dcmh",
        num_query=2000,
        num_train=10000,
        database_rule="all_but_query",
        text_dim=1386,
    ),
    Protocol(
        name="nuswide10-dcmh",
        family="crossmodal-mat",
        num_classes=10,
        multi_label=True,
        map_k=None,
        query="2,100",
        train="10,500 (drawn from retrieval)",
        database="184,477 (all but queries)",
        image_size=224,
        modality="image-text",
        description="NUS-WIDE top-10 concepts, DCMH protocol: 186,577 pairs, 1,000-dim tags",
        source=(
            "DCMH's NUS-WIDE (top-10 concept) .mat (`images`/`IAll`, `YAll`, `LAll`; links in "
            "github.com/jiangqy/DCMH-CVPR2017) into $HASHBENCH_DATA/nuswide10-dcmh/"
        ),
        data_dir="nuswide10-dcmh",
        num_query=2100,
        num_train=10500,
        database_rule="all_but_query",
        text_dim=1000,
    ),
    Protocol(
        name="mirflickr25k-clip",
        family="crossmodal-clip",
        num_classes=24,
        multi_label=True,
        map_k=None,
        query="5,000",
        train="10,000 (drawn from retrieval)",
        database="17,115 (all but queries)",
        image_size=224,
        modality="image-text",
        description="MIRFlickr-25K, CLIP-based protocol (DCHMT / DMsH-LN): image paths + raw tags",
        source=(
            "DCHMT-style index.mat (`index`: image paths), caption.mat (`caption`), label.mat (`category`) in "
            "$HASHBENCH_DATA/mirflickr25k-clip/, images from https://press.liacs.nl/mirflickr/"
        ),
        data_dir="mirflickr25k-clip",
        default_transform="clip",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        num_query=5000,
        num_train=10000,
        database_rule="all_but_query",
    ),
    Protocol(
        name="nuswide21-clip",
        family="crossmodal-clip",
        num_classes=21,
        multi_label=True,
        map_k=None,
        query="5,000",
        train="10,000 (drawn from retrieval)",
        database="190,421 (all but queries)",
        image_size=224,
        modality="image-text",
        description="NUS-WIDE 21 concepts, CLIP-based protocol (DCHMT / DMsH-LN)",
        source=(
            "DCHMT-style index.mat, caption.mat (or caption.txt), label.mat in $HASHBENCH_DATA/nuswide21-clip/, "
            "images from the NUS-WIDE site"
        ),
        data_dir="nuswide21-clip",
        default_transform="clip",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        num_query=5000,
        num_train=10000,
        database_rule="all_but_query",
    ),
    Protocol(
        name="coco-clip",
        family="crossmodal-clip",
        num_classes=80,
        multi_label=True,
        map_k=None,
        query="5,000",
        train="10,000 (drawn from retrieval)",
        database="117,218 (all but queries)",
        image_size=224,
        modality="image-text",
        description="MS-COCO 2017 train (captions + instances), CLIP-based protocol (DCHMT / DMsH-LN)",
        source=(
            "DCHMT-style index.mat, caption.mat, label.mat in $HASHBENCH_DATA/coco-clip/, images from "
            "https://cocodataset.org (train2017)"
        ),
        data_dir="coco-clip",
        default_transform="clip",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        num_query=5000,
        num_train=10000,
        database_rule="all_but_query",
    ),
    Protocol(
        name="fashion-mnist-text",
        family="fashion-mnist-text",
        num_classes=10,
        multi_label=False,
        map_k=None,
        query="100/class = 1,000 (the fashion-mnist split)",
        train="500/class = 5,000",
        database="the other 64,000 (train excluded)",
        image_size=28,
        modality="image-text",
        description="Fashion-MNIST images + SYNTHETIC class-conditioned bag-of-words texts (offline cross-modal)",
        source="the fashion-mnist files (see fashion-mnist); texts generated by hashbench.data.synthetic_text",
        data_dir="fashion-mnist",
        channels=1,
        mean=(0.2860,),
        std=(0.3530,),
        query_per_class=100,
        train_per_class=500,
        text_dim=200,
    ),
]

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in _ALL}


def register_protocol(protocol: Protocol, *, replace: bool = False) -> Protocol:
    """Add a protocol row to the table (what a new dataset family's module calls for each of its protocols).

    Args:
        protocol: the row; its ``family`` names the datamodule class registered with
            :func:`hashbench.data.registry.register_datamodule`.
        replace: allow replacing a row of the same name (re-importing a module in a notebook).

    Raises:
        ValueError: a different row of the same name exists already.
    """
    existing = PROTOCOLS.get(protocol.name)
    if existing is not None and existing != protocol and not replace:
        raise ValueError(
            f"a data protocol named {protocol.name!r} is registered already (family {existing.family!r}); "
            "pick another name or pass replace=True"
        )
    PROTOCOLS[protocol.name] = protocol
    return protocol


def list_protocols(family: str | None = None) -> list[str]:
    """Names of the known protocols (built-in and registered by plugins), optionally only those of one family.

    Args:
        family: keep only protocols of this family (e.g. ``"cifar10"``).

    Returns:
        Protocol names in table order.
    """
    _load_plugins()
    return [p.name for p in PROTOCOLS.values() if family is None or p.family == family]


def get_protocol(name: str) -> Protocol:
    """Look a protocol up by name.

    Args:
        name: protocol name, e.g. ``"cifar10-1"``.

    Returns:
        The :class:`Protocol`.

    Raises:
        KeyError: unknown name; the message lists every known protocol.
    """
    if name not in PROTOCOLS:
        _load_plugins()
    try:
        return PROTOCOLS[name]
    except KeyError:
        from hashbench.errors import UnknownNameError

        raise UnknownNameError("data protocol", name, PROTOCOLS, "see `hashbench data list`") from None


def _load_plugins() -> None:
    from hashbench.plugins import load_plugins

    load_plugins()
