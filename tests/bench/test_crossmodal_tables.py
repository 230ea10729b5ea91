"""The real-protocol cross-modal tables mirflickr25k-clip and nuswide21-clip: rows, profiles and reported numbers.

Their ``reported`` blocks hold the mean of the I→T and T→I mAP that DCHMT's paper prints for its own method (Table
1, row "DCMHT"; reproduced as an image in the authors' README, github.com/kalenforn/DCHMT, data/result.png). The
printed values are copied below, so an accidental edit of a spec fails here, and each spec's notes must list them.
"""

from __future__ import annotations

import warnings

import pytest

from hashbench.bench.grid import expand_grid
from hashbench.bench.spec import load_spec, resolve_methods

#: DCHMT paper, Table 1, row DCMHT: (I→T, T→I) at 16 / 32 / 64 bits
DCHMT_TABLE1 = {
    "mirflickr25k-clip": {16: (0.8263, 0.8116), 32: (0.8272, 0.8137), 64: (0.8441, 0.8281)},
    "nuswide21-clip": {16: (0.6799, 0.6876), 32: (0.6992, 0.7104), 64: (0.7038, 0.7253)},
}
EXPECTED: dict[str, dict[str, dict[int, float]]] = {
    name: {"DCHMT": {bits: round((i2t + t2i) / 2, 5) for bits, (i2t, t2i) in cells.items()}}
    for name, cells in DCHMT_TABLE1.items()
}
ROWS = {"DCHMT", "DMsH-LN", "DCMH", "DJSRH", "JDSH"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reported_numbers_are_the_mean_of_the_papers_two_directions(name: str) -> None:
    spec = load_spec(name)
    assert spec.reported == EXPECTED[name]
    assert spec.metric == "mAP@all" and spec.bits == [16, 32, 64] and spec.protocol == name
    notes = " ".join(spec.notes.split())
    for i2t, t2i in DCHMT_TABLE1[name].values():
        assert f"{i2t:.4f}" in notes and f"{t2i:.4f}" in notes
    assert "5,120" in notes and "10,240" in notes  # the released code's split sizes, stated as a difference


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_row_is_registered_and_reads_captions_with_clip(name: str) -> None:
    spec = load_spec(name)
    registered, missing = resolve_methods(spec)
    assert missing == [] and set(registered) == ROWS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paper, _ = expand_grid(spec, "paper", seeds=[0], bits=[64])
        quick, _ = expand_grid(spec, "quick", seeds=[0], bits=[64])
    for cell in paper + quick:
        assert cell.config["method_kwargs"]["text_encoder"] == "clip", cell.method
    backbones = {c.method: c.config["backbone"] for c in paper}
    assert backbones == {"DCHMT": "clip", "DMsH-LN": "clip", "DCMH": "alexnet", "DJSRH": "alexnet", "JDSH": "alexnet"}
    jdsh = next(c for c in paper if c.method == "JDSH")
    assert jdsh.config["profile"]["freeze_backbone"] is True  # the released code keeps AlexNet fixed
    for cell in quick:
        if cell.method in ("DJSRH", "JDSH"):
            assert cell.config["profile"]["image_features"] == "pixels"
