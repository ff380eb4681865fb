"""Every `vse` command and option that README.md and docs/**/*.md name exists; README stays a page a
newcomer reads (at most 250 lines); every relative link in them, and every study page the report links,
resolves to a file and, where it names one, a heading.

The markdown's code (fenced blocks and inline code spans) is searched for ``vse CMD [SUB] ... --opt``;
each command must be in the click tree and each option on that command. An option named on its own
(`` `--probe` ``) must belong to a command named in the same sentence or table row, or, where none is
named, to some command.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from vse.cli.main import main

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
README_MAX_LINES = 250
GROUP_OPTIONS = {"--help", "-h", "--version", "--debug"}

FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
SPAN = re.compile(r"`([^`\n]+)`")
CALL = re.compile(r"(?<![\w./$-])vse[ \t]+(.*)")
OPTION = re.compile(r"^--[a-z][a-z0-9-]*$")
PY_IMPORT = re.compile(r"\s*(from|import)\s+vse\b")


def _options(cmd: click.Command) -> set[str]:
    names = set(GROUP_OPTIONS)
    for p in cmd.params:
        if isinstance(p, click.Option):
            names |= set(p.opts) | set(p.secondary_opts)
    return names


def _all_commands() -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}

    def walk(group: click.Group, prefix: str) -> None:
        for name, cmd in group.commands.items():
            path = f"{prefix} {name}".strip()
            found[path] = cmd
            if isinstance(cmd, click.Group):
                walk(cmd, path)

    walk(main, "")
    return found


COMMANDS = _all_commands()


def _resolve(words: list[str]) -> tuple[str, click.Command, list[str]] | str:
    """(command path, command, remaining words) of ``vse WORDS``; a string says what is wrong."""
    group: click.Command = main
    path = ""
    rest = list(words)
    while isinstance(group, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name not in group.commands:
            return f"`vse {(path + ' ' + name).strip()}`: no such command"
        group = group.commands[name]
        path = f"{path} {name}".strip()
    return path, group, rest


def _calls(code: str) -> list[list[str]]:
    """The word lists after each `vse` in a piece of code (shell continuations joined, comments cut)."""
    code = code.replace("\\\n", " ")
    out = []
    for line in code.splitlines():
        line = line.split(" #", 1)[0]
        if PY_IMPORT.match(line):  # `from vse import LLM` is Python, not a command
            continue
        for m in CALL.finditer(line):
            segment = re.split(r"[|;&)]|\s>\s", m.group(1))[0]
            words = [w.strip("[]()'\",") for w in segment.split()]
            out.append([w.split("=", 1)[0] for w in words if w])
    return out


def _sentences(text: str) -> list[str]:
    """Table rows and prose sentences, outside fenced blocks."""
    text = FENCE.sub("", text)
    pieces = []
    for para in re.split(r"\n\s*\n", text):
        if para.lstrip().startswith("|"):
            pieces += para.splitlines()
        else:
            pieces += re.split(r"(?<=[.:;!?])\s+(?=[A-Z`(*])", " ".join(para.split()))
    return pieces


def problems_in(text: str) -> list[str]:
    problems = []
    codes = FENCE.findall(text) + SPAN.findall(FENCE.sub("", text))
    for code in codes:
        for words in _calls(code):
            resolved = _resolve(words)
            if isinstance(resolved, str):
                problems.append(resolved)
                continue
            path, cmd, rest = resolved
            known = _options(cmd)
            for w in rest:
                if OPTION.match(w) and w not in known:
                    problems.append(f"`vse {path}` has no option {w}")
    for sentence in _sentences(text):
        spans = SPAN.findall(sentence)
        # Which commands the sentence's lone options belong to: a table row's first cell, or, for the
        # options before "on", the commands after it ("`--model NAME` on `vse explain`, `vse score`");
        # else (any other option of the sentence) some command.
        claimed = spans
        if sentence.lstrip().startswith("|"):
            owner = sentence.strip().strip("|").split("|")[0]
        elif " on `vse " in sentence:
            before, after = sentence.split(" on `vse ", 1)
            owner, claimed = "`vse " + after, SPAN.findall(before)
        else:
            owner = ""
        named = [r for s in SPAN.findall(owner) for words in _calls(s) if not isinstance(r := _resolve(words), str)]
        for s in spans:
            if not OPTION.match(s.split()[0] if s.split() else "") or CALL.search(s):
                continue
            for w in [x for x in s.split() if OPTION.match(x)]:
                if named and s in claimed:  # "on `vse a`, `vse b`": an option of each
                    lacking = [p for p, cmd, _r in named if w not in _options(cmd)]
                    if lacking:
                        where = ", ".join(f"`vse {p}`" for p in lacking)
                        problems.append(f"{w} is not an option of {where} (in: {sentence[:100]}...)")
                elif not any(w in _options(cmd) for cmd in COMMANDS.values()):
                    problems.append(f"{w} is not an option of any command (in: {sentence[:100]}...)")
    return sorted(set(problems))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_and_option_the_docs_name_exists(doc):
    assert problems_in(doc.read_text(encoding="utf-8")) == []


def test_the_check_catches_what_does_not_exist():
    text = """Run `vse label M/L --method weight-label --frobnicate 3` or `vse nosuch`.

```
vse explain N --method weight-label \\
    --nope
```

| `vse score NEURON --target T` | scores; `--explanation`, `--bogus` |

Use `--units A:B` on `vse explain`, `vse label`. `--replay` works with `vse explain`; `--nothing` works nowhere.
Pass `--in-flight N` on `vse score`, `vse label` (per worker, on top of `--workers`).
"""
    assert problems_in(text) == [
        "--bogus is not an option of `vse score` "
        "(in: | `vse score NEURON --target T` | scores; `--explanation`, `--bogus` |...)",
        "--nothing is not an option of any command (in: `--nothing` works nowhere....)",
        "--units is not an option of `vse explain` (in: Use `--units A:B` on `vse explain`, `vse label`....)",
        "`vse explain` has no option --nope",
        "`vse label` has no option --frobnicate",
        "`vse nosuch`: no such command",
    ]


# -- links ------------------------------------------------------------------------------------------
LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _prose(text: str) -> str:
    """The text outside fenced blocks and inline code, where a link is a link."""
    return SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links as their text, no code or emphasis marks), lower
    case, every character but letters, digits, `_`, `-` and spaces dropped, spaces as `-`."""
    text = LINK.sub(lambda m: m.group(1), heading).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown page has: its headings' slugs (a repeated one gets -1, -2, ...) and any
    `<a id=...>`."""
    seen: dict[str, int] = {}
    found = set(HTML_ANCHOR.findall(text))
    for line in FENCE.sub("", text).splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(1))
        found.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return found


def link_problems(doc: Path, target: str) -> str | None:
    """Why the relative link ``target`` in ``doc`` does not resolve, or None when it does."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not checked offline
        return None
    path, _, anchor = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    if not dest.exists():
        return f"{target}: no such file"
    if anchor:
        if dest.is_dir() or dest.suffix != ".md":
            return f"{target}: an anchor on something that is not a Markdown page"
        if anchor not in anchors(dest.read_text(encoding="utf-8")):
            return f"{target}: {dest.name} has no heading with the anchor #{anchor}"
    return None


def broken_links(doc: Path) -> list[str]:
    text = _prose(doc.read_text(encoding="utf-8"))
    return sorted({p for _, target in LINK.findall(text) if (p := link_problems(doc, target))})


def test_readme_is_a_page_a_newcomer_reads():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the detail to docs/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc):
    assert broken_links(doc) == []


def test_the_link_check_catches_what_does_not_resolve(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "page.md").write_text(
        "# A page\n\n## Table 2, Corr / Acc (`--probe`)\n\n## Twice\n\n## Twice\n"
    )
    doc = tmp_path / "README.md"
    doc.write_text(
        "# Top\n\n[ok](sub/page.md) [ok](sub/page.md#table-2-corr--acc---probe) [ok](sub/page.md#twice-1) "
        "[ok](#top) [ok](sub/) [web](https://example.org/x.md#nope) `[code](nowhere.md)`\n\n"
        "[gone](sub/nope.md) [anchor](sub/page.md#nope) [here](#nope) [dir](sub/#x)\n\n"
        "```\n[fenced](nowhere.md)\n```\n"
    )
    assert broken_links(doc) == [
        "#nope: README.md has no heading with the anchor #nope",
        "sub/#x: an anchor on something that is not a Markdown page",
        "sub/nope.md: no such file",
        "sub/page.md#nope: page.md has no heading with the anchor #nope",
    ]


def test_the_report_links_each_experiment_to_its_study_page():
    from vse.outputs.experiment_notes import NOTES
    from vse.outputs.report import DOCS_FROM_REPORT

    results = REPO / "results"
    for name, note in NOTES.items():
        assert note.docs, f"{name} has no page under docs/studies/"
        # The report is results/report.html: resolve the link from there, as a browser does.
        assert link_problems(results / "report.html", DOCS_FROM_REPORT + note.docs) is None, name
