"""The ``hashbench`` command: argument rewriting and an end-to-end fit + test through LightningCLI."""

from __future__ import annotations

import pytest

from hashbench.cli import main, rewrite_lightning_args


def test_model_names_become_class_paths() -> None:
    argv, mode = rewrite_lightning_args(["fit", "--model", "dpsh", "--data", "pkg.Data", "--model.n_bits", "8"])
    assert argv == ["fit", "--model", "hashbench.methods.dpsh.DPSH", "--data", "pkg.Data", "--model.n_bits", "8"]
    assert mode == "offline"


def test_wandb_option_is_consumed_and_checked() -> None:
    argv, mode = rewrite_lightning_args(["fit", "--model=DPSH", "--data=pkg.Data", "--wandb", "disabled"])
    assert mode == "disabled" and "--wandb" not in argv
    with pytest.raises(SystemExit, match="offline, online or disabled"):
        rewrite_lightning_args(["fit", "--model", "DPSH", "--wandb", "sometimes"])


def test_unknown_method_is_a_clear_error(capsys) -> None:
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        rewrite_lightning_args(["fit", "--model", "nope", "--data", "pkg.Data"])
    assert main(["fit", "--model", "dpssh", "--data", "pkg.Data"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench fit: error: unknown method 'dpssh'; did you mean 'DPSH'")
    assert "Traceback" not in err


def test_help_and_unknown_command(capsys) -> None:
    assert main(["--help"]) == 0
    assert "fit" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2


def test_list_methods(capsys) -> None:
    assert main(["list"]) == 0
    assert "DPSH" in capsys.readouterr().out


def test_fit_then_test_from_checkpoint(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    common = ["--model", "DPSH", "--data", "hashbench.testing.SyntheticHashingDataModule", "--model.n_bits", "8"]
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--wandb", "disabled"]
    main(["fit", *common, *quiet, "--trainer.max_epochs", "1"])
    ckpts = sorted(tmp_path.glob("runs/csv/version_0/checkpoints/*.ckpt"))
    assert {p.name for p in ckpts} == {"best-epoch=0.ckpt", "last.ckpt"}
    assert (tmp_path / "runs/csv/version_0/metrics.csv").read_text().count("val/mAP") >= 1
    main(["test", *common, *quiet, "--ckpt_path", str(ckpts[0])])


def test_run_resolves_method_and_profile_before_training(monkeypatch, capsys) -> None:
    import types

    import hashbench.bench.run as run_module
    from hashbench.bench.profiles import resolve_profile
    from hashbench.registry import resolve_method

    assert main(["run", "--model", "nope"]) == 2
    assert "hashbench run: error: unknown method 'nope'" in capsys.readouterr().err
    assert main(["run", "--model", "DPSH", "--profile", "nope"]) == 2
    assert "hashbench run: error: unknown profile 'nope'" in capsys.readouterr().err
    calls = []

    def fake_run_cell(method, protocol, **kwargs):
        calls.append((method, kwargs["profile"]))
        return types.SimpleNamespace(
            method=method, protocol=protocol, best_epoch=0, wall_time_s=0.0, metrics={"mAP@all": 0.5}
        )

    monkeypatch.setattr(run_module, "run_cell", fake_run_cell)
    assert main(["run", "--model", "dfeh", "--profile", "paper", "--bits", "12"]) == 0
    assert calls == [("dfeh", resolve_profile(None, "paper", resolve_method("DFEH")))]  # a resolved mapping
    assert "mAP@all=0.5000" in capsys.readouterr().out


def test_list_ddp_says_what_each_loss_sees(capsys) -> None:
    assert main(["list", "--ddp"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["DPSH"][2] == "global" and lines["CSQ"][2] == "per-sample" and lines["ITQ"][2] == "closed-form"
    assert lines["DMNSH"][2] == "per-process"
