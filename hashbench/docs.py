"""Documentation generated from the registry, so that the README cannot drift from the code.

``hashbench list --markdown`` prints :func:`method_table`; ``make docs`` writes it into README.md between the
markers :data:`BEGIN` and :data:`END`, and ``tests/test_docs.py`` fails when the two differ.

Every cell comes from the method class: its registered name, its :class:`~hashbench.methods.base.Paper` (authors,
title, url, venue, year, ``reconstruction``), ``supervision`` and ``loss_function``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BEGIN", "END", "BUILTIN_PACKAGE", "method_table", "update_readme"]

BEGIN = "<!-- methods-table:start -->"
END = "<!-- methods-table:end -->"
#: the README documents the methods shipped with hashbench, not plugins loaded from ``$HASHBENCH_PLUGINS``
BUILTIN_PACKAGE = "hashbench.methods."
HEADER = "| method | paper | venue | supervision | loss |\n|---|---|---|---|---|\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _row(name: str, cls: type) -> str:
    paper = cls.paper
    title = f"[{_cell(paper.title)}]({paper.url})" if paper.url else _cell(paper.title)
    loss_function = getattr(cls, "loss_function", None)
    loss = f"`{loss_function.__name__}`" if loss_function is not None else "closed-form fit"
    if paper.reconstruction:
        loss += " [R]"
    cells = [
        f"`{name}`",
        f"{_cell(paper.authors)}: {title}",
        f"{_cell(paper.venue)}, {paper.year}",
        cls.supervision,
        loss,
    ]
    return "| " + " | ".join(cells) + " |"


def method_table(pattern: str | None = None, *, builtin_only: bool = True) -> str:
    """The markdown table of the registered methods, one row each, sorted by name.

    Columns: the registry name; authors and title (linked to ``Paper.url``); venue and year; ``supervision``; the
    named loss function (``closed-form fit`` for methods without one), marked ``[R]`` when ``Paper.reconstruction``
    says the loss is hashbench's reconstruction.

    Args:
        pattern: optional glob over method names (as ``hashbench list``).
        builtin_only: keep only the methods defined in :mod:`hashbench.methods` (not plugins or test classes).
    """
    from hashbench.registry import get_method, list_methods

    classes = [(name, get_method(name)) for name in list_methods(pattern)]
    if builtin_only:
        classes = [(name, cls) for name, cls in classes if cls.__module__.startswith(BUILTIN_PACKAGE)]
    return HEADER + "".join(_row(name, cls) + "\n" for name, cls in classes)


def update_readme(path: str | Path, check: bool = False) -> bool:
    """Rewrite the generated block of ``path`` with :func:`method_table`; with ``check``, only compare.

    Returns:
        Whether the file already held the current table.

    Raises:
        ValueError: the markers are missing, or not once each in order.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{path}: needs the markers {BEGIN!r} and {END!r}, once each and in this order")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{method_table()}{END}{tail}"
    if not check and new != text:
        path.write_text(new, encoding="utf-8")
    return new == text
