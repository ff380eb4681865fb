"""Markdown tables: one renderer, each caller naming its columns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """One column: its heading and how a row's cell is written."""

    head: str
    cell: Callable[[Any], str]


def markdown_table(columns: Sequence[Column], rows: Iterable[Any]) -> str:
    """A GitHub Markdown table: the heading row, the rule, one line per row (each line ends in a newline)."""
    head = "| " + " | ".join(c.head for c in columns) + " |\n" + "|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(c.cell(r) for c in columns) + " |\n" for r in rows)
