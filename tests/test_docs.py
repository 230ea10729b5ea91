"""README.md's method table is generated from the registry (``make docs``); these tests keep the two equal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hashbench import registry
from hashbench.cli import main
from hashbench.docs import BEGIN, END, method_table, update_readme
from hashbench.methods.base import HashingMethod, Paper
from hashbench.registry import get_method, list_methods

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BUILTIN = [name for name in list_methods() if get_method(name).__module__.startswith("hashbench.methods.")]


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in table.splitlines()[2:]]


def test_readme_method_table_matches_the_registry():
    assert update_readme(README, check=True), (
        "README.md's method table is out of date with the registry: run `make docs`"
    )


def test_table_rows_come_from_each_method_class():
    rows = _rows(method_table())
    assert [row[0] for row in rows] == [f"`{name}`" for name in BUILTIN]
    for name, (_, paper, venue, supervision, loss) in zip(BUILTIN, rows, strict=True):
        cls = get_method(name)
        assert cls.paper.title in paper and cls.paper.authors in paper
        assert venue == f"{cls.paper.venue}, {cls.paper.year}"
        assert supervision == cls.supervision
        assert ("[R]" in loss) == cls.paper.reconstruction
        if cls.loss_function is None:
            assert loss.startswith("closed-form fit")
        else:
            assert loss.startswith(f"`{cls.loss_function.__name__}`")


def test_seed_method_facts_the_old_hand_written_tables_disagreed_on():
    rows = {row[0].strip("`"): row for row in _rows(method_table())}
    assert rows["DMNSH"][3] == "triplet" and "[R]" in rows["DMNSH"][4]
    assert rows["DMsH-LN"][3] == "cross-modal" and "[R]" not in rows["DMsH-LN"][4]


def test_methods_outside_hashbench_are_left_out(monkeypatch):
    """A plugin (or a test's) method is listed by `hashbench list` but never written into the README."""

    class PluginHash(HashingMethod):
        paper = Paper(title="A plugin", authors="someone", venue="nowhere", year=2026)

    PluginHash.__module__ = "mypkg.pluginhash"
    monkeypatch.setitem(registry._REGISTRY, "PluginHash", PluginHash)
    assert "PluginHash" in list_methods()
    assert "PluginHash" not in method_table()
    assert "PluginHash" in method_table(builtin_only=False)


def test_update_readme_rewrites_only_the_block(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"intro\n{BEGIN}\nstale\n{END}\noutro\n")
    assert update_readme(path, check=True) is False
    assert path.read_text() == f"intro\n{BEGIN}\nstale\n{END}\noutro\n"  # check never writes
    assert update_readme(path) is False
    assert path.read_text() == f"intro\n{BEGIN}\n{method_table()}{END}\noutro\n"
    assert update_readme(path, check=True) is True
    for broken in ("no markers", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n"):
        path.write_text(broken)
        with pytest.raises(ValueError, match="markers"):
            update_readme(path)


def test_list_markdown_prints_the_table(capsys):
    assert main(["list", "--markdown"]) == 0
    assert capsys.readouterr().out == method_table()
    assert main(["list", "--markdown", "d?sh"]) == 0
    assert [row[0] for row in _rows(capsys.readouterr().out)] == ["`DPSH`", "`DTSH`"]


def test_make_docs_rewrites_the_readme():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs:.*\n\t.*update_readme\('README\.md'\)", makefile, re.M)


@pytest.mark.parametrize("doc", ["README.md", "CONTRIBUTING.md"])
def test_docs_never_point_outside_the_repository(doc):
    text = (ROOT / doc).read_text()
    assert not re.search(r"(?<!\.)\.\./", text), f"{doc} points outside the repository (../)"
    assert "shared/" not in text, f"{doc} points to a shared/ folder that is not part of the repository"


@pytest.mark.parametrize("doc", ["README.md", "CONTRIBUTING.md"])
def test_files_the_docs_name_exist(doc):
    """Every repository path a doc names in backticks (benchmarks/, experiments/, tests/, hashbench/) exists."""
    text = (ROOT / doc).read_text()
    paths = set(re.findall(r"`((?:benchmarks|experiments|tests|hashbench)/[\w./-]+\.(?:py|yaml|md|txt|json))", text))
    missing = sorted(p for p in paths if not (ROOT / p).exists() and "toyhash" not in p)
    assert paths and not missing, missing
