"""TBH: Auto-Encoding Twin-Bottleneck Hashing.

Yuming Shen, Jie Qin, Jiaxin Chen, Mengyang Yu, Li Liu, Fan Zhu, Fumin Shen, Ling Shao. "Auto-Encoding
Twin-Bottleneck Hashing". CVPR 2020. https://arxiv.org/abs/2002.11930 — official code (TensorFlow 2, a cleaned
re-implementation by the first author): https://github.com/ymcidence/TBH

Idea: an auto-encoder with two bottlenecks. The binary bottleneck b ∈ {0, 1}^K of a batch defines a graph, the
adjacency A_ij = (1 − d_H(b_i, b_j)/K)^1.4; a one-layer graph convolution σ(D^−½ A D^−½ · FC(z)) propagates the
continuous bottleneck z over that graph, and the decoder reconstructs the image features from the result. So the
codes are trained by how well they route information between neighbours rather than by a pairwise target. Two
discriminators regularise the bottlenecks adversarially: the codes against uniform random bits, the graph
output against uniform noise in [0, 1].

Deviations from the paper:
- Written from the official code (``model/tbh.py``, ``layer/*.py``, ``train/tbh_train.py``); the paper's text was
  not read here. The code's binary neuron thresholds σ(h) at ε = 0.5 (its stochastic ε ~ U(0, 1) is commented out;
  ``stochastic=True`` restores it) with the gradient σ(h)(1 − σ(h)) to h.
- Reconstruction target: the global features of a fixed feature network (``feature_source``: the paper uses VGG-16
  fc7; ``auto`` = ImageNet VGG-16 when its weights are cached, else the raw pixels), computed per batch and not
  normalised. The encoder is hashbench's backbone (``compact_cnn`` trained end to end offline) with the hash head
  for b and a linear + sigmoid head for z; the official encoder is a 1024-unit ReLU layer on frozen features.
- The decoder's output layer is linear (the official one ends in a ReLU, matching non-negative fc7 features; pixel
  targets can be negative).
- One loss per step: the actor (encoder, graph layer, decoder) and the critic (the two discriminators) are updated
  by the same optimiser from one backward pass of ``actor + critic``, where the actor terms read the
  discriminators with their parameters detached and the critic terms read detached codes, so each player gets
  exactly its official gradient. The official code runs two Adam optimisers (lr 1e-4 each); hashbench's optimiser
  settings apply to both players here.
- Optimiser: hashbench's shared profile; the official recipe (Adam lr 1e-4, batch 400, 100,000 iterations) is
  recorded in ``paper_training``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.pseudo_similarity import FeatureSource
from hashbench.nn.weights import WeightsNeed
from hashbench.registry import register_method

__all__ = ["hamming_adjacency", "TwinBottleneck", "tbh_loss", "TBH"]


def hamming_adjacency(codes: Tensor, power: float = 1.4) -> Tensor:
    """Self-connected graph of a batch of {0, 1} codes: A_ij = (1 − d_H(b_i, b_j)/K)^power (official code).

    d_H = b_i·(1 − b_j) + (1 − b_i)·b_j is differentiable in relaxed codes, so gradients reach the codes.
    """
    k = codes.shape[1]
    dist = (codes @ (1 - codes).T + (1 - codes) @ codes.T) / k
    return (1 - dist).clamp_min(0).pow(power)


class TwinBottleneck(nn.Module):
    """The graph layer: σ(D^−½ A D^−½ · FC(z)) with A = :func:`hamming_adjacency` of the binary bottleneck.

    Args:
        cont_dim: width of the continuous bottleneck z (and of the output).
        power: exponent of the adjacency.
    """

    def __init__(self, cont_dim: int, power: float = 1.4) -> None:
        super().__init__()
        self.fc = nn.Linear(cont_dim, cont_dim)
        self.power = power

    def forward(self, codes: Tensor, cont: Tensor) -> Tensor:
        adj = hamming_adjacency(codes, self.power)
        d_inv_sqrt = (adj.sum(dim=1) + 1e-8).pow(-0.5)  # the official OVERFLOW_MARGIN
        laplacian = d_inv_sqrt[:, None] * adj * d_inv_sqrt[None, :]
        return torch.sigmoid(laplacian @ self.fc(cont))


def _adversarial(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The official ``adv_loss``: BCE(real → 1) + BCE(fake → 0), each averaged over the batch."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def tbh_loss(
    reconstruction: Tensor,
    target: Tensor,
    actor_fake_binary: Tensor,
    actor_fake_cont: Tensor,
    real_binary: Tensor,
    fake_binary: Tensor,
    real_cont: Tensor,
    fake_cont: Tensor,
) -> dict[str, Tensor]:
    """TBH's actor and critic losses (official ``train_step``), as one total for a single backward pass.

    Discriminator inputs are logits. ``actor_fake_*``: the discriminators (parameters detached) on the live codes
    b and graph output; ``fake_*``: the discriminators (live parameters) on the detached ones; ``real_*``: on the
    prior samples (uniform random bits; uniform noise in [0, 1]).

    Returns:
        ``reconstruction`` = ½·Σ (x̂ − x)² over the batch and dimensions (``tf.nn.l2_loss``);
        ``adversarial_binary`` / ``adversarial_cont`` = the actor's view of each discriminator's loss,
        BCE(real → 1) + BCE(fake → 0); ``actor`` = reconstruction − adversarial_binary − adversarial_cont;
        ``critic`` = the same two discriminator losses on the detached codes; ``loss`` = actor + critic.
    """
    recon = 0.5 * (reconstruction - target).pow(2).sum()
    adv_b = _adversarial(real_binary.detach(), actor_fake_binary)
    adv_c = _adversarial(real_cont.detach(), actor_fake_cont)
    actor = recon - adv_b - adv_c
    critic = _adversarial(real_binary, fake_binary) + _adversarial(real_cont, fake_cont)
    return {
        "reconstruction": recon,
        "adversarial_binary": adv_b,
        "adversarial_cont": adv_c,
        "actor": actor,
        "critic": critic,
        "loss": actor + critic,
    }


_SOURCES = ("auto", "pixels")


@register_method
class TBH(HashingMethod):
    """Auto-encoding twin-bottleneck hashing (Shen et al., CVPR 2020): codes build the graph the decoder reads.

    Under DDP with n processes and a global batch B, the Hamming graph (and so the graph convolution) is built over
    each process's rows: the effective in-batch size of the graph is B/n (the one-process objective needs
    ``devices=1``); the reconstruction and adversarial terms are per-sample.
    """

    paper = Paper(
        title="Auto-Encoding Twin-Bottleneck Hashing",
        authors="Yuming Shen, Jie Qin, Jiaxin Chen, Mengyang Yu, Li Liu, Fan Zhu, Fumin Shen, Ling Shao",
        venue="CVPR",
        year=2020,
        url="https://arxiv.org/abs/2002.11930",
        code="https://github.com/ymcidence/TBH",
    )
    supervision = "unsupervised"
    ddp_batch = "per-process"  # see the class docstring
    loss_function = staticmethod(tbh_loss)
    # Official train/tbh_train.py: Adam lr 1e-4 (actor and critic), batch 400, 100,000 iterations (max_epochs is
    # only a cap large enough for the step count to end training).
    paper_training = {
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 0.0,
        "batch_size": 400,
        "max_steps": 100_000,
        "max_epochs": 100_000,
    }

    @classmethod
    def weights_needed(cls, kwargs: Mapping[str, Any]) -> list[WeightsNeed]:
        """The backbone's weights plus the feature network's: VGG-16 for ``auto`` (optional: else pixels) and the
        named backbone for ``pretrained:<name>``."""
        needs = super().weights_needed(kwargs)
        source = str(cls.init_arg(kwargs, "feature_source"))
        if source == "auto":
            needs.append(WeightsNeed("vgg16", required=False, why="the 'auto' reconstruction target (else pixels)"))
        elif source.startswith("pretrained:"):
            needs.append(WeightsNeed(source.split(":", 1)[1], why=f"feature_source={source!r}"))
        return needs

    def __init__(
        self,
        n_bits: int = 32,
        cont_dim: int = 512,  # continuous bottleneck width (official train('cifar10', 32, 512, 400))
        middle_dim: int = 1024,  # decoder hidden width (official middle_dim)
        adjacency_power: float = 1.4,  # exponent of the Hamming adjacency (official build_adjacency_hamming)
        stochastic: bool = False,  # official code: eps = 0.5; True: eps ~ U(0, 1) (stochastic binary neuron)
        feature_source: str = "auto",  # paper: VGG-16 fc7 features
        **kwargs: Any,
    ) -> None:
        if feature_source not in _SOURCES and not feature_source.startswith("pretrained:"):
            raise ValueError(
                f"unknown feature_source {feature_source!r}; expected auto, pixels or pretrained:<backbone>"
            )
        super().__init__(n_bits=n_bits, **kwargs)
        self.stochastic = stochastic

    def on_data_configured(self) -> None:
        hp = self.hparams
        self._target = FeatureSource(hp.feature_source, in_channels=hp.in_channels or 3, image_size=hp.image_size or 32)
        if self._target.resolved == "pixels":
            target_dim = (hp.in_channels or 3) * (hp.image_size or 32) ** 2
        else:
            target_dim = self._target.network.feature_dim
        self.cont_layer = nn.Linear(self.backbone.feature_dim, hp.cont_dim)
        self.twin_bottleneck = TwinBottleneck(hp.cont_dim, hp.adjacency_power)
        self.decoder = nn.Sequential(
            nn.Linear(hp.cont_dim, hp.middle_dim), nn.ReLU(), nn.Linear(hp.middle_dim, target_dim)
        )
        self.critic_binary = nn.Linear(hp.n_bits, 1)
        self.critic_cont = nn.Linear(hp.cont_dim, 1)

    def _binary_codes(self, logits: Tensor) -> Tensor:
        """{0, 1} codes: 1[σ(h) ≥ ε] forward, gradient σ(h)(1 − σ(h)) to h (official ``binary_activation``)."""
        prob = torch.sigmoid(logits)
        eps = torch.rand_like(prob) if self.stochastic else torch.full_like(prob, 0.5)
        return prob + ((prob >= eps).to(prob.dtype) - prob).detach()

    @staticmethod
    def _frozen(layer: nn.Linear, x: Tensor) -> Tensor:
        return F.linear(x, layer.weight.detach(), layer.bias.detach())

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        x = batch.image
        features = self.extract_features(x)
        codes = self._binary_codes(self.hash_layer(features))
        cont = torch.sigmoid(self.cont_layer(features))
        graph = self.twin_bottleneck(codes, cont)
        with torch.no_grad():
            target = self._target.to(x.device)(x)[0].flatten(1).float()
        prior_bits = (torch.rand_like(codes) >= 0.5).to(codes.dtype)
        prior_cont = torch.rand_like(graph)
        return self.loss_function(
            self.decoder(graph),
            target,
            self._frozen(self.critic_binary, codes),
            self._frozen(self.critic_cont, graph),
            self.critic_binary(prior_bits),
            self.critic_binary(codes.detach()),
            self.critic_cont(prior_cont),
            self.critic_cont(graph.detach()),
        )
