"""Text encoders: the bag-of-words MLP, CLIP towers from a tiny random config, and the offline failure for real
CLIP weights (no network is touched)."""

from __future__ import annotations

import urllib.request

import pytest
import torch

from hashbench.nn.backbones import PretrainedWeightsUnavailable
from hashbench.nn.text import BagOfWordsMLP, clip_tokenizer, create_clip_towers, create_text_encoder

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"layers": 1, "width": 16, "head_width": 8, "patch_size": 8, "image_size": 16},
    "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def test_bag_of_words_mlp() -> None:
    enc = create_text_encoder("bow", text_dim=30, hidden=8)
    assert isinstance(enc, BagOfWordsMLP) and enc.feature_dim == 8
    out = enc(torch.rand(5, 30))
    assert out.shape == (5, 8) and bool((out >= 0).all())  # ReLU features
    with pytest.raises(ValueError, match=r"\[B, 30\]"):
        enc(torch.rand(5, 31))
    with pytest.raises(ValueError, match="text_dim"):
        create_text_encoder("bow")
    with pytest.raises(ValueError, match="unknown text encoder"):
        create_text_encoder("lstm", text_dim=3)


def test_tiny_clip_towers_from_config() -> None:
    torch.manual_seed(0)
    image, text = create_clip_towers(TINY_CLIP)
    assert image.feature_dim == text.feature_dim == 16 and text.context_length == 12
    tokens = torch.as_tensor(clip_tokenizer(12)(["word001 word002", "word003"]))
    assert tokens.shape == (2, 12) and tokens.dtype == torch.int64
    t = text(tokens)
    i = image(torch.randn(2, 3, 16, 16))
    assert t.shape == (2, 16) and i.shape == (2, 16)
    (t.sum() + i.sum()).backward()
    assert all(p.grad is None for p in image.parameters() if p in set(text.parameters()))
    assert any(p.grad is not None for p in text.parameters())
    assert any(p.grad is not None for p in image.parameters())
    with pytest.raises(ValueError, match="token ids"):
        text(torch.rand(2, 12))


def test_tiny_clip_config_errors() -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        create_clip_towers({"vision_cfg": {}})
    with pytest.raises(ValueError, match="model name"):
        create_clip_towers(TINY_CLIP, pretrained="openai")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        create_clip_towers("ViT-Nope")
    with pytest.raises(ValueError, match="no pretrained tag"):
        create_clip_towers("ViT-B-32", pretrained="no-such-tag")


def test_real_clip_weights_offline_fail_fast_without_network(monkeypatch, tmp_path) -> None:
    # Empty caches, downloads not allowed: the error must come before any network call.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HASHBENCH_ALLOW_DOWNLOAD", raising=False)
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    import open_clip.pretrained

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", no_network)
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        create_clip_towers("ViT-B-32", pretrained="openai")
    message = str(info.value)
    assert "ViT-B-32/openai" in message and "timm/vit_base_patch32_clip_224.openai" in message
    assert "HASHBENCH_ALLOW_DOWNLOAD" in message


def test_method_with_real_clip_weights_offline_fails_at_construction(monkeypatch, tmp_path) -> None:
    from hashbench.registry import get_method

    monkeypatch.setenv("HOME", str(tmp_path))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HASHBENCH_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(PretrainedWeightsUnavailable, match="not in a local cache"):
        get_method("DMsH-LN")(backbone="clip", text_encoder="clip", clip_pretrained="openai")
