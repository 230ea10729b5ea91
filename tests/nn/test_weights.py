"""Pretrained weights from local files: lookup order, checksums, the backbone loading path and ``hashbench weights``."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

from hashbench.cli_weights import main as weights_main
from hashbench.nn import weights as W
from hashbench.nn.backbones import PretrainedWeightsUnavailable, create_backbone


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv(W.ENV_VAR, str(folder))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HASHBENCH_ALLOW_DOWNLOAD", raising=False)
    return folder


def _accept(monkeypatch, name: str, path: Path) -> str:
    """Record ``path``'s sha256 as the published one of ``name`` (a test's random-init file stands in for it)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(W.WEIGHTS, name, dataclasses.replace(W.WEIGHTS[name], sha256=digest))
    return digest


def test_registry_entries_match_torchvision_urls() -> None:
    import torchvision.models as tvm

    for name, enum in (("alexnet", "AlexNet_Weights"), ("vgg16", "VGG16_Weights"), ("resnet50", "ResNet50_Weights")):
        url = getattr(tvm, enum).DEFAULT.url
        source = W.get_source(name)
        assert source.url == url and source.filename == Path(url).name
        # torchvision's file names carry the sha256 prefix that torch.hub checks
        assert source.filename.rsplit("-", 1)[1].startswith(source.sha256)
    with pytest.raises(KeyError, match="known: alexnet"):
        W.get_source("alexnett")


def test_missing_weights_name_every_place_and_how(weights_dir) -> None:
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        create_backbone("alexnet", pretrained=True)
    text = str(info.value)
    assert str(weights_dir / "alexnet.pth") in text and "alexnet-owt-7be5be79.pth" in text
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in text
    assert "hashbench weights prepare alexnet" in text


def test_weights_folder_file_is_checked_then_loaded(weights_dir, monkeypatch) -> None:
    reference = torchvision.models.alexnet()
    path = weights_dir / "alexnet.pth"
    torch.save(reference.state_dict(), path)
    # A random-init file does not match the published checksum: refused with its path and the expected digest.
    with pytest.raises(W.WeightsChecksumError) as info:
        create_backbone("alexnet", pretrained=True)
    assert str(path) in str(info.value) and "7be5be79" in str(info.value)
    digest = _accept(monkeypatch, "alexnet", path)
    backbone = create_backbone("alexnet", pretrained=True)
    assert backbone.weights_file == str(path) and backbone.weights_sha256 == digest
    torch.testing.assert_close(backbone.body[0].weight, reference.features[0].weight)
    torch.testing.assert_close(backbone.head[3].weight, reference.classifier[1].weight)


def test_canonical_name_and_hub_cache_are_found(weights_dir, tmp_path, monkeypatch) -> None:
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    path = hub / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    _accept(monkeypatch, "resnet18", path)
    assert W.find_weights("resnet18") == path
    (weights_dir / "resnet18-f37072fd.pth").write_bytes(path.read_bytes())
    assert W.find_weights("resnet18") == weights_dir / "resnet18-f37072fd.pth"  # the weights folder comes first


def test_explicit_file_is_loaded_as_given(tmp_path, weights_dir) -> None:
    path = tmp_path / "finetuned.pth"
    reference = torchvision.models.alexnet()
    torch.save({"state_dict": reference.state_dict()}, path)
    backbone = create_backbone("alexnet", weights=str(path))
    torch.testing.assert_close(backbone.body[3].weight, reference.features[3].weight)
    assert backbone.weights_file == str(path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read weights file .*truncated.pth"):
        create_backbone("alexnet", weights=str(truncated))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_backbone("alexnet", weights=str(tmp_path / "absent.pth"))
    small = tmp_path / "compact.pth"
    torch.save(create_backbone("compact_cnn", in_channels=1).state_dict(), small)
    assert create_backbone("compact_cnn", in_channels=1, weights=str(small)).weights_file == str(small)


def test_method_weights_argument_reaches_the_backbone(tmp_path, weights_dir) -> None:
    from hashbench.registry import get_method

    path = tmp_path / "alexnet-random.pth"
    reference = torchvision.models.alexnet()
    torch.save(reference.state_dict(), path)
    model = get_method("DPSH")(n_bits=12, backbone="alexnet", weights=str(path))
    torch.testing.assert_close(model.backbone.body[0].weight, reference.features[0].weight)
    needs = get_method("DPSH").weights_needed({"backbone": "alexnet", "weights": str(path)})
    assert [(n.name, n.explicit) for n in needs] == [("alexnet", str(path))]
    assert get_method("DPSH").weights_needed({}) == []


def test_cli_verify_corrupted_file_names_file_and_expected_sha(weights_dir, capsys) -> None:
    bad = weights_dir / "alexnet-owt-7be5be79.pth"
    bad.write_bytes(b"not really alexnet")
    assert weights_main(["verify", "alexnet"]) == 4  # checksum mismatch
    err = capsys.readouterr().err
    assert str(bad) in err and "expected sha256 prefix (published in the file name) 7be5be79" in err
    assert weights_main(["verify", "clip-ViT-B-32-openai", "--file", str(bad)]) == 4
    err = capsys.readouterr().err
    assert str(bad) in err and W.WEIGHTS["clip-ViT-B-32-openai"].sha256 in err


def test_cli_list_and_prepare(weights_dir, tmp_path, monkeypatch, capsys) -> None:
    assert weights_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "alexnet-owt-7be5be79.pth" in out and "on disk missing" in out and "ViT-B-32.pt" in out
    # prepare without a file or a download: says where to get it, exits 3 (missing)
    assert weights_main(["prepare", "resnet18"]) == 3
    assert "resnet18-f37072fd.pth" in capsys.readouterr().err
    src = tmp_path / "downloaded-elsewhere.pth"
    torch.save(torchvision.models.resnet18().state_dict(), src)
    assert weights_main(["prepare", "resnet18", "--from", str(src)]) == 4  # wrong checksum: refused, nothing copied
    assert not (weights_dir / "resnet18-f37072fd.pth").exists()
    capsys.readouterr()
    _accept(monkeypatch, "resnet18", src)
    assert weights_main(["prepare", "resnet18", "--from", str(src)]) == 0
    assert (weights_dir / "resnet18-f37072fd.pth").read_bytes() == src.read_bytes()
    assert weights_main(["verify", "resnet18"]) == 0
    assert "ok   resnet18" in capsys.readouterr().out


def test_clip_tag_resolves_to_checked_weights_folder_file(weights_dir, monkeypatch) -> None:
    from hashbench.nn.text import create_clip_towers

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"layers": 1, "width": 16, "head_width": 8, "patch_size": 8, "image_size": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1},
    }
    import open_clip

    from hashbench.nn import text as text_module

    tiny = text_module._clip_model_from_config(cfg)[0]
    path = weights_dir / "clip-ViT-B-32-openai.pth"
    torch.save(tiny.state_dict(), path)
    _accept(monkeypatch, "clip-ViT-B-32-openai", path)
    seen = {}

    def fake_create_model(model, pretrained=None, cache_dir=None):
        seen["pretrained"] = pretrained
        return tiny

    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    monkeypatch.setattr(
        open_clip, "get_model_config", lambda name: {"embed_dim": 16, "text_cfg": {"context_length": 8}}
    )
    image, _ = create_clip_towers("ViT-B-32", pretrained="openai")
    assert seen["pretrained"] == str(path) and image.weights_file == str(path)


def test_refused_pretrained_build_leaves_the_rng_alone(weights_dir) -> None:
    # UDMSH's 'auto' features fall back to pixels when VGG-16 is missing; the refused build must not have drawn a
    # random initialisation, or every later draw of the run (and its numbers) would shift.
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    with pytest.raises(PretrainedWeightsUnavailable):
        create_backbone("alexnet", pretrained=True)
    assert torch.equal(torch.random.get_rng_state(), before)
