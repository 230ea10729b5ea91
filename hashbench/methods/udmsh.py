"""UDMSH: Unsupervised Deep Multi-Similarity Hashing With Semantic Structure for Image Retrieval.

Qin, Huang, Wei, Xie, Zhang. "Unsupervised Deep Multi-Similarity Hashing With Semantic Structure for Image
Retrieval". IEEE Transactions on Circuits and Systems for Video Technology 31(7):2852–2865, 2021.
https://doi.org/10.1109/TCSVT.2020.3032402 — no official code found.

Idea: no labels. Deep features of the training images — global CNN features and spatial ("FCN") features of the
last conv map — give a fused cosine similarity whose distance histogram is split by two half-Gaussians around its
mode into similar / uncertain / dissimilar pairs (the semantic structure of SSDH, Yang et al. IJCAI 2018).
Instead of dropping the uncertain pairs, UDMSH keeps them as intermediate similarity levels (multi-similarity),
and fits the codes' normalised inner products to these levels (a Hamming-isometric mapping) with a quantization
penalty.

This is a **reconstruction** (the spec marks the loss [R]; the paper's equations were not available). The
reconstructed choices:
- Features: global = the backbone head output (VGG-16 fc7 in the paper), spatial = the last conv map pooled by
  average and max, concatenated; each part centred over the training set and L2-normalised; C = (C_g + C_s)/2,
  D = 1 − C. See :mod:`hashbench.nn.pseudo_similarity` for the feature sources.
- Thresholds: histogram mode d* of a random sample of 200,000 pairs (100 bins, 3-bin smoothing); each side
  mirrored around d* and fitted by a Gaussian (μ_l = μ_r = d*, σ = RMS deviation from d* on that side); similar
  D < d* − 2σ_l (T = +1), dissimilar D > d* + 2σ_r (T = −1).
- Middle band (the multi-level part): T = 1 − 2·(D − lower)/(upper − lower), the cosine distance rescaled
  linearly onto [+1, −1] between the thresholds, weight w_mid = 0.5 (w = 1 on the ±1 levels).
- Loss: L = Σ_{i≠j} w_ij·(u_i·u_j/K − T_ij)² / (B(B−1)) (mean over the ordered in-batch pairs, the diagonal
  excluded) + λ·Σ_i ||u_i − sign(u_i)||² / (B·K), u = tanh(hash layer), λ = 0.1
  (:func:`hashbench.methods._semantic.semantic_structure_loss`, shared with SSDH; ``udmsh_loss`` here).

The feature extraction, threshold fit and per-batch targets are the semantic-structure family's base class,
:class:`hashbench.methods._semantic.SemanticStructureHashing`, shared with SSDH and GreedyHash-U.

Deviations from the paper:
- The loss is a reconstruction (see above), trained on in-batch pairs only.
- Feature source: the paper uses ImageNet-pretrained VGG-16. ``feature_source="auto"`` uses it when its weights
  are in the local cache; offline it falls back to raw-pixel features (global = pixels, spatial = avg+max pooled
  4×4 patches); ``random_cnn`` and ``simclr`` (a compact CNN trained with a SimCLR-style objective for a few
  epochs) are the other offline options. The source used is printed at fit start and kept in
  ``model.pseudo_report``.
- The hashing network is hashbench's backbone (``compact_cnn`` offline), not VGG-16 initialised from ImageNet.
- Features are centred over the training set before the cosine (raw ReLU features have all-positive cosines).
"""

from __future__ import annotations

from typing import Any

from hashbench.methods._semantic import SemanticStructureHashing, semantic_structure_loss
from hashbench.methods.base import Paper
from hashbench.registry import register_method

__all__ = ["udmsh_loss", "UDMSH"]

#: UDMSH's loss under its method's name: the same function object as SSDH's (see
#: :func:`hashbench.methods._semantic.semantic_structure_loss`); UDMSH passes the multi-level weights.
udmsh_loss = semantic_structure_loss


@register_method
class UDMSH(SemanticStructureHashing):
    """Unsupervised multi-similarity hashing with semantic structure (Qin et al., TCSVT 2021; reconstruction).

    Under DDP with n processes and a global batch B, the pseudo-similarity matrix is formed within each process's
    rows: the effective in-batch size of those terms is B/n (the one-process objective needs ``devices=1``).
    """

    paper = Paper(
        title="Unsupervised Deep Multi-Similarity Hashing With Semantic Structure for Image Retrieval",
        authors="Qin, Huang, Wei, Xie, Zhang",
        venue="IEEE Transactions on Circuits and Systems for Video Technology 31(7)",
        year=2021,
        url="https://doi.org/10.1109/TCSVT.2020.3032402",
        reconstruction=True,
    )
    supervision = "unsupervised"
    ddp_batch = "per-process"  # under DDP: the pseudo-similarity matrix is formed within each process's rows
    loss_function = staticmethod(semantic_structure_loss)  # with the multi-level weights (multi_level=True)
    # The spec gives SSDH's settings (lr 1e-3, batch 24-64); epochs are not stated: 50 is hashbench's choice.
    paper_training = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5, "max_epochs": 50, "batch_size": 64}

    def __init__(
        self,
        n_bits: int = 48,
        feature_source: str = "auto",  # reconstruction; paper: ImageNet VGG-16 CNN + FCN features
        mid_weight: float = 0.5,  # reconstruction (spec [R]): weight of the middle-band levels
        lam: float = 0.1,  # reconstruction (spec [R]): λ of the quantization term
        sigma_mult: float = 2.0,  # thresholds d* ∓ 2σ (SSDH Sec. 3.1, as in the spec)
        num_pairs: int = 200_000,  # pairs sampled for the distance histogram (hashbench)
        center_features: bool = True,  # hashbench: centre features before the cosine
        simclr_epochs: int = 5,  # only for feature_source="simclr"
        feature_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        # Fixed by the method; saved hyperparameters carry them back in when a checkpoint is loaded.
        kwargs.pop("multi_level", None)
        super().__init__(
            n_bits=n_bits,
            feature_source=feature_source,
            multi_level=True,
            mid_weight=mid_weight,
            lam=lam,
            sigma_mult=sigma_mult,
            num_pairs=num_pairs,
            center_features=center_features,
            simclr_epochs=simclr_epochs,
            feature_seed=feature_seed,
            **kwargs,
        )
