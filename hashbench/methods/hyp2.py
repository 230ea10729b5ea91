"""HyP²: Hybrid Proxy-Pair Loss for multi-label image retrieval.

Chengyin Xu, Zenghao Chai, Zhengzhuo Xu, Chun Yuan, Yanbo Fan, Jue Wang. "HyP² Loss: Beyond Hypersphere Metric
Space for Multi-label Image Retrieval". ACM Multimedia (MM) 2022. https://arxiv.org/abs/2208.06866 — official
code (PyTorch): https://github.com/JerryXu0129/HyP2-Loss.

Every class c has a learnable proxy p_c ∈ R^K. With cos(·, ·) the cosine similarity and z_i the (raw) hash-layer
output of image i, the *proxy loss* pulls each output towards the proxies of its labels and pushes it away from
the others until their cosine is below a threshold ζ:

    L_proxy = 1/|P⁺| Σ_{(i,c): y_ic = 1} (1 − cos(z_i, p_c)) + 1/|P⁻| Σ_{(i,c): y_ic = 0} [cos(z_i, p_c) − ζ]₊,

where P⁺ / P⁻ are the (image, class) pairs of the batch with y_ic = 1 / 0. A proxy loss alone lets two images
with disjoint label sets meet half-way between their proxies (the "conflict" of the hypersphere space the paper
describes), so the *irrelevant-pair loss* pushes such pairs apart directly:

    L_neg_pair = 1/|N| Σ_{(i,j) ∈ N} [cos(z_i, z_j) − ζ]₊,   N = {(i, j) : i, j multi-label, y_iᵀy_j = 0},

over the ordered pairs of the batch whose images both carry more than one label and share none. The total is
L = L_proxy + β·L_neg_pair (β = 0.5). The codes are sign(z).

The threshold ζ depends only on K and C: ζ = 1 − 2·d*(K, k)/K with k = ⌈log₂ C⌉, where d*(K, k) is the
largest minimum Hamming distance of a binary linear [K, k] code (2^k ≥ C codewords): the cosine of the two closest
codewords of the best such code, so negatives are asked to be no closer than C well-separated binary codes can
be. The official code reads it from its ``codetable.xlsx`` (``threshold = sheet.row(K)[ceil(log2 C)]``);
``_LINEAR_CODE_DISTANCE`` holds that table's d* for K ≤ 128 and k ≤ 8 (C ≤ 256). They agree with the known optimal
codes we checked ([7, 4, 3] Hamming, [16, 5, 8] Reed–Muller, [24, 12, 8] Golay). Examples: K = 48, C = 10:
d* = 24, ζ = 0; K = 12, C = 4: d* = 8, ζ = −1/3. Other (K, C) need an explicit ``zeta``.

On single-label data no image has more than one label, so L_neg_pair is empty and HyP² is its proxy loss alone
(as in the official code); ``pairs="all"`` applies the pair term to every in-batch pair with disjoint labels
(fashion-mnist, Adam 1e-3, batch 128, compact CNN, 48 bits, 3 epochs, seed 0: mAP@all 0.716 without it, 0.709 with
it, a difference within one seed's noise).

Deviations from the paper:
- Hash layer: hashbench's shared head (with BatchNorm1d, ``hash_bn=True``) on hashbench's backbones; the code puts
  a plain linear layer on GoogLeNet / ResNet-50 / AlexNet. The loss reads the raw outputs z, as the code does
  (``activation = "identity"``; the cosines do not depend on the scale of z).
- Empty sets: when a batch has no (image, class) pair with y_ic = 1 (or 0) that term is 0 instead of the code's
  0/0 (images with no label at all have no positive term).
- ζ for more than 128 bits or more than 256 classes is not tabulated here and has to be passed as ``zeta``.
- The proxies are drawn from a seeded generator (``proxy_seed``) with the code's Kaiming-normal (fan-out) scale
  √(2/C), instead of re-seeding the global random generator as the code does.

Paper and official code:
- Not checked against the paper's text: only its abstract and introduction were reachable from here. The loss,
  ζ, β = 0.5 and the recipe follow the official code (``model.py``, ``config.py``, ``retrieval.py``); the
  abstract's description (learnable proxies plus a constraint on irrelevant pairs) agrees with it. That the pair
  term only covers images with more than one label is the code's choice (``batch_y.sum(dim=1) > 1``);
  ``pairs="all"`` is the alternative.
- Recipe (``retrieval.py`` / ``config.py``): SGD, momentum 0.9, weight decay 5e-4, lr 0.01 for the whole AlexNet
  including its hash layer (0.02 for GoogLeNet), lr 0.02 for the proxies (``--rate``), lr ×0.5 every 10 epochs,
  100 epochs, batch 100. The paper's Flickr-25K / NUS-WIDE tables use AlexNet, so ``paper_training`` records the
  AlexNet values, with the proxies' own learning rate as ``proxy_lr``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hashbench.methods.base import HashingMethod, Paper
from hashbench.registry import register_method

__all__ = ["hyp2_loss", "hyp2_threshold", "HyP2"]

#: d*(K, k), the largest minimum distance of a binary linear [K, k] code, for K = 1..128 (row "K:") and
#: k = 1..min(K, 8) (columns): the values of the official code's ``codetable.xlsx`` (ζ = 1 − 2·d*/K there).
_LINEAR_CODE_DISTANCE_TABLE = """
  1:   1
  2:   2   1
  3:   3   2   1
  4:   4   2   2   1
  5:   5   3   2   2   1
  6:   6   4   3   2   2   1
  7:   7   4   4   3   2   2   1
  8:   8   5   4   4   2   2   2   1
  9:   9   6   4   4   3   2   2   2
 10:  10   6   5   4   4   3   2   2
 11:  11   7   6   5   4   4   3   2
 12:  12   8   6   6   4   4   4   3
 13:  13   8   7   6   5   4   4   4
 14:  14   9   8   7   6   5   4   4
 15:  15  10   8   8   7   6   5   4
 16:  16  10   8   8   8   6   6   5
 17:  17  11   9   8   8   7   6   6
 18:  18  12  10   8   8   8   7   6
 19:  19  12  10   9   8   8   8   7
 20:  20  13  11  10   9   8   8   8
 21:  21  14  12  10  10   8   8   8
 22:  22  14  12  11  10   9   8   8
 23:  23  15  12  12  11  10   9   8
 24:  24  16  13  12  12  10  10   8
 25:  25  16  14  12  12  11  10   9
 26:  26  17  14  13  12  12  11  10
 27:  27  18  15  14  13  12  12  10
 28:  28  18  16  14  14  12  12  11
 29:  29  19  16  15  14  13  12  12
 30:  30  20  16  16  15  14  12  12
 31:  31  20  17  16  16  15  13  12
 32:  32  21  18  16  16  16  14  13
 33:  33  22  18  16  16  16  14  14
 34:  34  22  19  17  16  16  15  14
 35:  35  23  20  18  16  16  16  15
 36:  36  24  20  18  17  16  16  16
 37:  37  24  20  19  18  17  16  16
 38:  38  25  21  20  18  18  16  16
 39:  39  26  22  20  19  18  17  16
 40:  40  26  22  20  20  18  18  16
 41:  41  27  23  21  20  19  18  17
 42:  42  28  24  22  20  20  19  18
 43:  43  28  24  22  21  20  20  18
 44:  44  29  24  23  22  21  20  19
 45:  45  30  25  24  22  22  20  20
 46:  46  30  26  24  23  22  21  20
 47:  47  31  26  24  24  23  22  21
 48:  48  32  27  24  24  24  22  22
 49:  49  32  28  25  24  24  23  22
 50:  50  33  28  26  24  24  24  23
 51:  51  34  28  26  25  24  24  24
 52:  52  34  29  27  26  25  24  24
 53:  53  35  30  28  26  26  24  24
 54:  54  36  30  28  27  26  24  24
 55:  55  36  31  28  28  27  25  24
 56:  56  37  32  29  28  28  26  24
 57:  57  38  32  30  28  28  26  25
 58:  58  38  32  30  29  28  27  26
 59:  59  39  33  31  30  29  28  26
 60:  60  40  34  32  30  30  28  27
 61:  61  40  34  32  31  30  29  28
 62:  62  41  35  32  32  31  30  28
 63:  63  42  36  32  32  32  31  28
 64:  64  42  36  33  32  32  32  29
 65:  65  43  36  34  32  32  32  30
 66:  66  44  37  34  32  32  32  30
 67:  67  44  38  35  33  32  32  31
 68:  68  45  38  36  34  32  32  32
 69:  69  46  39  36  34  33  32  32
 70:  70  46  40  36  35  34  33  32
 71:  71  47  40  37  36  34  34  32
 72:  72  48  40  38  36  35  34  32
 73:  73  48  41  38  36  36  34  33
 74:  74  49  42  39  37  36  35  34
 75:  75  50  42  40  38  36  36  34
 76:  76  50  43  40  38  37  36  35
 77:  77  51  44  40  39  38  36  36
 78:  78  52  44  40  40  38  37  36
 79:  79  52  44  41  40  39  38  36
 80:  80  53  45  42  40  40  38  37
 81:  81  54  46  42  40  40  39  38
 82:  82  54  46  43  41  40  40  38
 83:  83  55  47  44  42  40  40  39
 84:  84  56  48  44  42  41  40  40
 85:  85  56  48  44  43  42  40  40
 86:  86  57  48  45  44  42  41  40
 87:  87  58  49  46  44  43  42  40
 88:  88  58  50  46  44  44  42  41
 89:  89  59  50  47  45  44  43  42
 90:  90  60  51  48  46  44  44  42
 91:  91  60  52  48  46  45  44  43
 92:  92  61  52  48  47  46  45  44
 93:  93  62  52  48  48  46  46  44
 94:  94  62  53  49  48  47  46  44
 95:  95  63  54  50  48  48  47  45
 96:  96  64  54  50  48  48  48  46
 97:  97  64  55  51  48  48  48  46
 98:  98  65  56  52  49  48  48  47
 99:  99  66  56  52  50  48  48  48
100: 100  66  56  52  50  49  48  48
101: 101  67  57  53  51  50  49  48
102: 102  68  58  54  52  50  50  48
103: 103  68  58  54  52  51  50  48
104: 104  69  59  55  52  52  51  49
105: 105  70  60  56  53  52  52  50
106: 106  70  60  56  54  52  52  50
107: 107  71  60  56  54  53  52  51
108: 108  72  61  56  55  54  53  52
109: 109  72  62  57  56  54  54  52
110: 110  73  62  58  56  55  54  52
111: 111  74  63  58  56  56  55  53
112: 112  74  64  59  56  56  56  54
113: 113  75  64  60  57  56  56  54
114: 114  76  64  60  58  56  56  55
115: 115  76  65  60  58  57  56  56
116: 116  77  66  61  59  58  57  56
117: 117  78  66  62  60  58  58  56
118: 118  78  67  62  60  59  58  56
119: 119  79  68  63  60  60  59  57
120: 120  80  68  64  61  60  60  58
121: 121  80  68  64  62  60  60  58
122: 122  81  69  64  62  61  60  58
123: 123  82  70  64  63  62  61  59
124: 124  82  70  65  64  62  62  60
125: 125  83  71  66  64  63  62  61
126: 126  84  72  66  64  64  63  62
127: 127  84  72  67  64  64  64  63
128: 128  85  72  68  64  64  64  64"""
_LINEAR_CODE_DISTANCE: dict[int, tuple[int, ...]] = {
    int(row.split(":")[0]): tuple(int(d) for d in row.split(":")[1].split())
    for row in _LINEAR_CODE_DISTANCE_TABLE.strip().splitlines()
}


def hyp2_threshold(n_bits: int, num_classes: int) -> float:
    """ζ = 1 − 2·d*(K, ⌈log₂ C⌉)/K: the largest cosine between the closest two of C codes of a best linear code.

    Args:
        n_bits: code length K (1 to 128).
        num_classes: number of classes C (1 to 256; C = 1 is treated as C = 2).

    Raises:
        ValueError: (K, C) outside the table (pass ``zeta`` to :class:`HyP2` instead).

    Example:
        >>> hyp2_threshold(48, 10), hyp2_threshold(12, 4)
        (0.0, -0.3333333333333333)
    """
    k = max(1, (num_classes - 1).bit_length())  # ⌈log₂ C⌉, computed exactly
    row = _LINEAR_CODE_DISTANCE.get(n_bits)
    if row is None or k > len(row):
        raise ValueError(
            f"HyP2's threshold ζ is tabulated for K <= 128 bits and 2^k >= C with k <= min(K, 8); got K={n_bits}, "
            f"C={num_classes}. Pass zeta=... explicitly."
        )
    return 1.0 - 2.0 * row[k - 1] / n_bits


def hyp2_loss(
    z: Tensor,
    labels: Tensor,
    proxies: Tensor,
    zeta: float,
    beta: float = 0.5,
    pairs: str = "multi_label",
) -> dict[str, Tensor]:
    """HyP² loss of a batch: the multi-label proxy loss plus β times the irrelevant-pair loss.

    Args:
        z: hash-layer outputs [B, K] (raw; only their directions matter).
        labels: multi-hot labels y [B, C].
        proxies: the learnable proxies p [C, K].
        zeta: the cosine threshold ζ of the negative terms (see :func:`hyp2_threshold`).
        beta: β, weight of the irrelevant-pair loss.
        pairs: which images the pair loss covers: ``"multi_label"`` (images with more than one label, as the
            official code) or ``"all"``.

    Returns:
        ``proxy_pos`` (mean of 1 − cos over the (image, label) pairs), ``proxy_neg`` (mean of [cos − ζ]₊ over the
        (image, other class) pairs), ``neg_pair`` (β times the mean of [cos − ζ]₊ over the irrelevant image pairs;
        0 when there are none) and their sum ``loss``.
    """
    if pairs not in ("multi_label", "all"):
        raise ValueError(f"pairs must be 'multi_label' or 'all', got {pairs!r}")
    y = labels.to(z.dtype)
    zn = F.normalize(z, dim=1)
    cos = zn @ F.normalize(proxies.to(z.dtype), dim=1).T  # [B, C]
    pos, neg = y > 0, y <= 0
    proxy_pos = torch.where(pos, 1.0 - cos, 0.0).sum() / max(int(pos.sum()), 1)
    proxy_neg = torch.where(neg, F.relu(cos - zeta), 0.0).sum() / max(int(neg.sum()), 1)

    keep = y.sum(dim=1) > 1 if pairs == "multi_label" else torch.ones_like(y[:, 0], dtype=torch.bool)
    # i ≠ j: an image without labels shares none with itself, but it is not its own irrelevant pair
    irrelevant = (y @ y.T <= 0) & keep[:, None] & keep[None, :] & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    count = int(irrelevant.sum())
    if count:
        neg_pair = beta * torch.where(irrelevant, F.relu(zn @ zn.T - zeta), 0.0).sum() / count
    else:
        neg_pair = z.sum() * 0.0  # keeps the graph (and the dtype/device) of a real term
    return {
        "proxy_pos": proxy_pos,
        "proxy_neg": proxy_neg,
        "neg_pair": neg_pair,
        "loss": proxy_pos + proxy_neg + neg_pair,
    }


@register_method
class HyP2(HashingMethod):
    """HyP²: learnable class proxies with a cosine threshold plus an irrelevant-pair term (Xu et al., MM 2022).

    The proxies are a parameter of the method; they train at ``proxy_lr`` (``None`` = ``lr``) in their own
    optimiser group ``"proxies"``. The loss is mostly proxy-to-data (pointwise); the pair term only acts on
    multi-label images.
    """

    paper = Paper(
        title="HyP² Loss: Beyond Hypersphere Metric Space for Multi-label Image Retrieval",
        authors="Chengyin Xu, Zenghao Chai, Zhengzhuo Xu, Chun Yuan, Yanbo Fan, Jue Wang",
        venue="ACM MM",
        year=2022,
        url="https://arxiv.org/abs/2208.06866",
        code="https://github.com/JerryXu0129/HyP2-Loss",
    )
    supervision = "pointwise"
    ddp_batch = "global"  # in-batch terms over every process\'s rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(hyp2_loss)
    activation = "identity"  # the loss reads the raw hash-layer outputs; codes are sign(z)
    # Official code, AlexNet setting (retrieval.py, config.py): SGD momentum 0.9, weight decay 5e-4; the network
    # (backbone and hash layer) at lr 0.01, the proxies at lr 0.02 (--rate); StepLR(10, 0.5); 100 epochs; batch 100.
    paper_training = {
        "optimizer": "sgd",
        "lr": 0.01,  # hash layer (feature_rate, AlexNet)
        "backbone_lr": 0.01,  # same group as the hash layer in the code
        "proxy_lr": 0.02,  # criterion_rate (--rate)
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "step",
        "lr_step": 10,
        "lr_gamma": 0.5,
        "max_epochs": 100,
        "batch_size": 100,
    }

    def __init__(
        self,
        n_bits: int = 48,
        beta: float = 0.5,  # β, weight of the irrelevant-pair loss (config.py --beta)
        zeta: float | None = None,  # ζ; None = from the code table for (K, C) (config.py, codetable.xlsx)
        pairs: str = "multi_label",  # images the pair loss covers: "multi_label" (model.py) or "all"
        proxy_lr: float | None = None,  # learning rate of the proxies; None = lr (the code: 0.02, --rate)
        proxy_seed: int = 0,  # seed of the proxies' initialisation (the code seeds with --seed 0)
        **kwargs: Any,
    ) -> None:
        if pairs not in ("multi_label", "all"):
            raise ValueError(f"pairs must be 'multi_label' or 'all', got {pairs!r}")
        super().__init__(n_bits=n_bits, **kwargs)

    @property
    def zeta(self) -> float:
        """The threshold ζ in use: the ``zeta`` argument, else the code table's value for (K, C)."""
        if self.hparams.zeta is not None:
            return float(self.hparams.zeta)
        if self.hparams.num_classes is None:
            raise RuntimeError("HyP2's ζ depends on the number of classes: configure the data first")
        return hyp2_threshold(self.n_bits, self.hparams.num_classes)

    def on_data_configured(self) -> None:
        # Reads hparams only: the base calls this from its __init__ when num_classes/num_train are given.
        c = self.hparams.num_classes
        if self.hparams.zeta is None:
            hyp2_threshold(self.n_bits, c)  # fail here, not at the first step, when (K, C) is outside the table
        g = torch.Generator().manual_seed(self.hparams.proxy_seed)
        # Kaiming normal with fan-out = C for a [C, K] tensor (the code's nn.init.kaiming_normal_(mode="fan_out")).
        init = torch.randn(c, self.n_bits, generator=g) * math.sqrt(2.0 / c)
        self.proxies = nn.Parameter(init.to(self.device))

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The base groups, with the proxies moved to their own group ``"proxies"`` at ``proxy_lr``."""
        groups = super().parameter_groups()
        proxies = getattr(self, "proxies", None)
        if proxies is None:
            return groups
        for group in groups:
            group["params"] = [p for p in group["params"] if p is not proxies]
        lr = self.hparams.lr if self.hparams.proxy_lr is None else self.hparams.proxy_lr
        groups.append({"params": [proxies], "lr": lr, "name": "proxies"})
        return [g for g in groups if g["params"]]

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        hp = self.hparams
        z, labels = self.global_batch(self.hash_logits(batch.image), batch.labels)
        return self.loss_function(z, labels, self.proxies, self.zeta, hp.beta, hp.pairs)
