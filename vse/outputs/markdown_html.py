"""A results folder's ``table.md`` as HTML: the small Markdown subset vse's own tables are written in.

Each study writes its tables as Markdown (``table.md``: read in a terminal, on GitHub, and diffed in
review); the report renders those files rather than the studies' objects, so that a results folder
alone, as committed, builds its page (`vse.outputs.report` never imports a study). The subset: ``| a | b |``
tables with a ``|---|`` separator, ``#`` headings, links and images, inline code, paragraphs.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from vse.outputs.atlas import esc

__all__ = ["CASSETTE_LINE", "href", "markdown_to_html"]

CASSETTE_LINE = "Every number above replays from"  # how a table.md starts its list of cassettes (folded)


def href(*parts: str) -> str:
    """A relative link from path parts, each percent-quoted."""
    return "/".join(quote(p) for p in parts)


# -- a tiny Markdown subset: `| a | b |` tables, `#` headings, links and images, paragraphs ---------------
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str, folder: Path | None, prefix: str, embedded: set) -> str:
    """Escape ``text``; ``[t](href)`` / ``![alt](src)`` become a link / image when the target is a file in
    ``folder`` (so the page never points at a missing file), else they stay as text."""
    out, pos = [], 0
    for m in _LINK.finditer(text):
        out.append(_code(text[pos : m.start()]))
        bang, label, target = m.groups()
        if folder is not None and "/" not in target and (folder / target).is_file():
            if bang:
                embedded.add(target)
                out.append(f'<img class="plot" src="{esc(href(prefix, target))}" alt="{esc(label)}">')
            else:
                out.append(f'<a href="{esc(href(prefix, target))}">{esc(label)}</a>')
        else:
            out.append(_code(m.group(0)))
        pos = m.end()
    out.append(_code(text[pos:]))
    return "".join(out)


def _code(text: str) -> str:
    parts = _CODE.split(text)  # odd items are inside backticks
    return "".join(f"<code>{esc(p)}</code>" if i % 2 else esc(p) for i, p in enumerate(parts))


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def markdown_to_html(
    text: str, folder: Path | None = None, prefix: str = "", embedded: set | None = None, fold_rows: int | None = None
) -> str:
    """The Markdown of a ``table.md``: tables (a ``| a | b |`` header, a ``|---|`` separator, rows) become
    ``<table>``; ``#`` lines headings (two levels down, under the experiment's own heading); other
    lines paragraphs (consecutive lines joined). Everything is escaped. Links and images resolve
    relative to ``folder`` and are written with the path ``prefix`` (see :func:`_inline`). Tables of more than
    ``fold_rows`` rows are folded into a ``<details>``."""
    embedded = set() if embedded is None else embedded
    lines = text.splitlines()
    out, para, i = [], [], 0

    def flush():
        if para:
            text = "<p>" + " ".join(_inline(p, folder, prefix, embedded) for p in para) + "</p>"
            if fold_rows is not None and para[0].startswith(CASSETTE_LINE):  # the long list of cassettes: folded
                text = f"<details><summary>{esc(CASSETTE_LINE.rstrip(': '))}</summary>{text}</details>"
            out.append(text)
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1]):
            flush()
            head = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            th = "".join(f"<th>{_inline(c, folder, prefix, embedded)}</th>" for c in head)
            trs = "".join(
                "<tr>" + "".join(f"<td>{_inline(c, folder, prefix, embedded)}</td>" for c in r) + "</tr>\n"
                for r in rows
            )
            table = f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{trs}</tbody>\n</table>"
            if fold_rows is not None and len(rows) > fold_rows:  # a long table is folded, its size said
                table = f"<details><summary>table of {len(rows)} rows</summary>\n{table}\n</details>"
            out.append(table)
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading and folder is not None and heading.group(2).strip() == folder.name:
            flush()  # the experiment's own name: already the section's heading
        elif heading:
            flush()
            level = min(6, len(heading.group(1)) + 2)
            out.append(f"<h{level}>{_inline(heading.group(2), folder, prefix, embedded)}</h{level}>")
        elif line.strip():
            para.append(line.strip())
        else:
            flush()
        i += 1
    flush()
    return "\n".join(out)
