"""SSDH: Semantic Structure-based Unsupervised Deep Hashing.

Erkun Yang, Cheng Deng, Tongliang Liu, Wei Liu, Dacheng Tao. "Semantic Structure-based Unsupervised Deep Hashing".
IJCAI 2018, pp. 1064–1070. https://www.ijcai.org/proceedings/2018/0148.pdf

Idea: cosine distances between deep features of training images roughly follow a unimodal distribution; fitting a
half-Gaussian to each side of its mode separates confidently similar pairs (left tail) and confidently
dissimilar pairs (right tail) from uncertain ones. Those two levels are the pseudo-labels; the codes' normalised
inner products are regressed onto them and the uncertain pairs are ignored.

In hashbench SSDH is UDMSH with the multi-level switch off: the same base class
(:class:`hashbench.methods._semantic.SemanticStructureHashing`: feature sources, threshold fit, per-batch targets)
and the same loss function (:func:`hashbench.methods._semantic.semantic_structure_loss`, which UDMSH exports as
``udmsh_loss``), with the middle band given weight 0. It is a **reconstruction** in the sense that the threshold
fit and loss are the shared reconstruction documented in :mod:`hashbench.methods.udmsh` and
:mod:`hashbench.nn.pseudo_similarity`.

Deviations from the paper:
- Feature source: the paper uses ImageNet-pretrained VGG-16 fc7 features; hashbench's ``auto`` source uses them
  when the weights are cached and falls back to raw pixels offline (see :mod:`hashbench.nn.pseudo_similarity`);
  the spatial ("FCN") half of UDMSH's fused similarity is used too, so SSDH and UDMSH see the same structure.
- The loss carries UDMSH's quantization term λ·||u − sign(u)||²/K (λ = 0.1) so that SSDH and UDMSH differ only in
  the middle band; the relaxed codes are tanh outputs.
- Thresholds d* ∓ 2σ from a 200,000-pair sample of the distance histogram; features centred before the cosine.
- Only in-batch pairs are used; the hashing network is hashbench's backbone (``compact_cnn`` offline).
"""

from __future__ import annotations

from typing import Any

from hashbench.methods._semantic import SemanticStructureHashing, semantic_structure_loss
from hashbench.methods.base import Paper
from hashbench.registry import register_method

__all__ = ["SSDH"]


@register_method
class SSDH(SemanticStructureHashing):
    """Single-level semantic-structure hashing (Yang et al., IJCAI 2018): UDMSH's machinery, middle band dropped.

    Under DDP with n processes and a global batch B, the pseudo-similarity matrix is formed within each process's
    rows: the effective in-batch size of those terms is B/n (the one-process objective needs ``devices=1``).
    """

    paper = Paper(
        title="Semantic Structure-based Unsupervised Deep Hashing",
        authors="Erkun Yang, Cheng Deng, Tongliang Liu, Wei Liu, Dacheng Tao",
        venue="IJCAI",
        year=2018,
        url="https://www.ijcai.org/proceedings/2018/0148.pdf",
        reconstruction=True,
    )
    supervision = "unsupervised"
    ddp_batch = "per-process"  # under DDP: the pseudo-similarity matrix is formed within each process's rows
    loss_function = staticmethod(semantic_structure_loss)  # UDMSH's loss; the middle band has weight 0 here
    # The spec records SSDH's settings as lr 1e-3, batch 24-64; epochs are hashbench's choice.
    paper_training = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5, "max_epochs": 50, "batch_size": 64}

    def __init__(
        self,
        n_bits: int = 48,
        feature_source: str = "auto",  # paper: ImageNet VGG-16 features
        lam: float = 0.1,  # hashbench: same quantization weight as UDMSH
        sigma_mult: float = 2.0,  # thresholds d* ∓ 2σ (Sec. 3.1)
        num_pairs: int = 200_000,  # pairs sampled for the distance histogram (hashbench)
        center_features: bool = True,  # hashbench: centre features before the cosine
        simclr_epochs: int = 5,  # only for feature_source="simclr"
        feature_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        # Fixed by the method; saved hyperparameters carry them back in when a checkpoint is loaded.
        kwargs.pop("multi_level", None)
        kwargs.pop("mid_weight", None)
        super().__init__(
            n_bits=n_bits,
            feature_source=feature_source,
            multi_level=False,
            mid_weight=0.0,
            lam=lam,
            sigma_mult=sigma_mult,
            num_pairs=num_pairs,
            center_features=center_features,
            simclr_epochs=simclr_epochs,
            feature_seed=feature_seed,
            **kwargs,
        )
