"""hashbench binarises with sign(0) = +1 everywhere (:func:`hashbench.nn.losses.sign_with_zero_positive`).

A static check that no code in hashbench/ calls a sign function that maps 0 to 0 (``torch.sign``, ``Tensor.sign``,
``np.sign``, ``sgn``), and behavioural checks that the quantisation terms which used ``torch.sign`` treat an exact 0
as +1.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import hashbench
from hashbench.methods.dhih import dhih_loss
from hashbench.methods.dmnsh import dmnsh_loss, sample_positives

PACKAGE = Path(hashbench.__file__).parent
SIGN_NAMES = {"sign", "sign_", "sgn", "sgn_"}  # torch.sign(x), x.sign(), x.sign_(), np.sign(x), torch.sgn(x) ...
#: (file relative to hashbench/, enclosing function) -> why a 0-preserving sign is allowed there
ALLOWED: dict[tuple[str, str], str] = {}


def _sign_uses(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, enclosing function, what) of every sign attribute or imported sign name in a module's syntax tree."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.Attribute) and node.attr in SIGN_NAMES:
            found.append((node.lineno, function, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom):
            imported = [a.name for a in node.names if a.name in SIGN_NAMES]
            found.extend((node.lineno, function, f"from {node.module} import {name}") for name in imported)
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "<module>")
    return found


def test_no_sign_that_keeps_zero_anywhere_in_hashbench() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20  # the walk sees the package
    offenders = []
    for path in files:
        rel = path.relative_to(PACKAGE).as_posix()
        for line, function, what in _sign_uses(ast.parse(path.read_text(), filename=str(path))):
            if function != "sign_with_zero_positive" and (rel, function) not in ALLOWED:
                offenders.append(f"hashbench/{rel}:{line} in {function}(): {what}")
    assert not offenders, (
        "sign(0) must be +1: use hashbench.nn.losses.sign_with_zero_positive instead of\n" + "\n".join(offenders)
    )


def test_the_static_check_catches_the_forms_it_looks_for() -> None:
    source = (
        "import torch\ndef f(u):\n    return u - torch.sign(u), u.sign(), u.detach().sign_()\nfrom numpy import sign\n"
    )
    assert [(line, what) for line, _, what in _sign_uses(ast.parse(source))] == [
        (3, "torch.sign"),
        (3, "u.sign"),
        (3, "u.detach().sign_"),
        (4, "from numpy import sign"),
    ]


def _codes_with_zeros() -> torch.Tensor:
    u = torch.tanh(torch.randn(6, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    u[0] = 0.0  # a whole row of exact zeros
    u[1, :3] = 0.0
    u[2, 5] = -0.0
    return u


def _quantization_with_zero_positive(u: torch.Tensor) -> torch.Tensor:
    """mean_i ||u_i − b_i||² / K with b = +1 where u >= 0 (so at 0 and −0), −1 elsewhere: the hashbench rule."""
    b = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
    return (u - b).pow(2).sum(1).mean() / u.shape[1]


@pytest.mark.parametrize("loss", ["dmnsh", "dhih"])
def test_quantization_terms_take_sign_of_zero_as_plus_one(loss: str) -> None:
    u = _codes_with_zeros().requires_grad_()
    labels = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 3).double()
    lam = 0.5
    if loss == "dmnsh":
        terms = dmnsh_loss(u, labels, sample_positives(labels, torch.Generator().manual_seed(0)), lam=lam)
    else:
        weight = torch.randn(3, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        terms = dhih_loss(u, labels, weight, lam=lam)
    want = lam * _quantization_with_zero_positive(u.detach())
    torch.testing.assert_close(terms["quantization"], want, rtol=1e-12, atol=0.0)
    # With sign(0) = 0 an exact 0 would already sit on its code and get no pull; with +1 it is pulled towards +1.
    (grad,) = torch.autograd.grad(terms["quantization"], (u,))
    assert bool((grad[0] < 0).all()) and bool((grad[1, :3] < 0).all()) and float(grad[2, 5]) < 0
