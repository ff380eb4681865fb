"""Compare two results/ trees number by number: last-bit noise or a changed result?

`make reproduce` promises the committed bytes, and keeps it wherever the platform's libm and the
locked packages are those of the recording (vse's own sums are exact, see vse.core.exact). Where
bytes cannot match (another C library, ARM, macOS), a reviewer still needs to know whether a
difference is rounding or a result that moved. This module answers that, file by file:

* JSON and JSONL: parsed and walked; every number compared within a relative tolerance, every
  other value compared exactly; a difference is named by file, record (line) and field path.
* CSV, Markdown, HTML and other text: split into numbers and the text between them; the text
  must match exactly; a printed number may differ by one unit in its last printed digit (a last-
  bit difference that flipped a rounding) and is then counted as rounding, not as a change.
* Images (PNG): bytes only. They are drawn from the numbers above, so they are listed, not judged.

`compare_trees` is pure (bytes in, a `Comparison` out); `read_tree` reads a folder.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

__all__ = ["Comparison", "Difference", "Verdict", "compare_trees", "read_tree"]

#: Default relative tolerance for full-precision numbers: far above last-bit noise (~1e-16 per
#: operation, ~1e-13 after the longest chains here), far below any change a table would show.
REL_TOL = 1e-9
#: Numbers this small count as equal to zero (a centred sum that cancels to 1e-17 or to 0).
ABS_TOL = 1e-12

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class Verdict(StrEnum):
    IDENTICAL = "identical"
    WITHIN_TOLERANCE = "within tolerance"
    DIFFERENT = "different"


@dataclass(frozen=True)
class Difference:
    """One number or value that differs beyond tolerance, or a file missing on one side."""

    file: str
    where: str  # "record 3 .details[0].score", "line 12, number 4", "(missing)"
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: expected {self.expected}, got {self.got}"


@dataclass
class Comparison:
    files: int = 0
    identical_files: int = 0
    numbers_compared: int = 0
    numbers_within_tolerance: int = 0  # full-precision numbers that differ, but within rel_tol
    largest_rel_difference: float = 0.0
    rounding_flips: int = 0  # printed numbers one unit apart in their last digit
    images_differ: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    rel_tol: float = REL_TOL

    @property
    def verdict(self) -> Verdict:
        if self.differences:
            return Verdict.DIFFERENT
        if self.identical_files == self.files:
            return Verdict.IDENTICAL
        return Verdict.WITHIN_TOLERANCE

    def summary(self, limit: int = 20) -> str:
        """The lines `vse reproduce --check` prints."""
        if self.verdict is Verdict.IDENTICAL:
            return f"identical: {self.files} files, byte for byte"
        lines = [
            f"{self.verdict}: {self.identical_files} of {self.files} files byte-identical; "
            f"{self.numbers_compared} numbers compared in the others"
        ]
        if self.numbers_within_tolerance or self.rounding_flips:
            lines.append(
                f"  {self.numbers_within_tolerance} numbers differ within relative tolerance {self.rel_tol:g} "
                f"(largest relative difference {self.largest_rel_difference:.3g}); "
                f"{self.rounding_flips} printed numbers differ by one unit in their last digit"
            )
        if self.images_differ:
            lines.append(
                f"  {len(self.images_differ)} images differ in bytes (drawn from the numbers above; not judged): "
                + ", ".join(self.images_differ[:5])
                + (" ..." if len(self.images_differ) > 5 else "")
            )
        lines += [f"  {d}" for d in self.differences[:limit]]
        if len(self.differences) > limit:
            lines.append(f"  ... and {len(self.differences) - limit} more differences")
        return "\n".join(lines)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as ``{relative posix path: bytes}`` (empty when ``root`` is missing)."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def compare_trees(expected: dict[str, bytes], got: dict[str, bytes], rel_tol: float = REL_TOL) -> Comparison:
    """Compare every file of two trees (see the module docstring for how each kind is compared)."""
    out = Comparison(rel_tol=rel_tol)
    for name in sorted(expected.keys() | got.keys()):
        out.files += 1
        if name not in got or name not in expected:
            side = "missing" if name not in got else "not expected"
            out.differences.append(Difference(name, "(file)", "present" if name in expected else "-", side))
        elif expected[name] == got[name]:
            out.identical_files += 1
        elif name.endswith(IMAGE_SUFFIXES):
            out.images_differ.append(name)
        else:
            _compare_file(name, expected[name], got[name], out)
    return out


def _compare_file(name: str, a: bytes, b: bytes, out: Comparison) -> None:
    try:
        ta, tb = a.decode("utf-8"), b.decode("utf-8")
    except UnicodeDecodeError:
        out.differences.append(Difference(name, "(binary)", f"{len(a)} bytes", f"{len(b)} bytes"))
        return
    if name.endswith(".jsonl"):
        la, lb = ta.splitlines(), tb.splitlines()
        if len(la) != len(lb):
            out.differences.append(Difference(name, "(records)", str(len(la)), str(len(lb))))
            return
        for i, (ra, rb) in enumerate(zip(la, lb, strict=True)):
            _compare_json(name, f"record {i + 1} ", ra, rb, out)
    elif name.endswith(".json"):
        _compare_json(name, "", ta, tb, out)
    elif name.endswith(".csv"):
        _compare_csv(name, ta, tb, out)
    else:
        _compare_text(name, ta, tb, out)


def _compare_json(name: str, prefix: str, a: str, b: str, out: Comparison) -> None:
    try:
        va, vb = json.loads(a), json.loads(b)
    except ValueError:
        _compare_text(name, a, b, out)
        return
    _walk(name, prefix.rstrip() or "", va, vb, out)


def _walk(name: str, path: str, a: object, b: object, out: Comparison) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            sub = f"{path}.{k}" if path else k
            if k not in a or k not in b:
                out.differences.append(
                    Difference(name, sub, "present" if k in a else "-", "-" if k in a else "present")
                )
            else:
                _walk(name, sub, a[k], b[k], out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.differences.append(Difference(name, f"{path} (length)", str(len(a)), str(len(b))))
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(name, f"{path}[{i}]", x, y, out)
    elif _is_number(a) and _is_number(b):
        _printed(name, path, json.dumps(a), json.dumps(b), out)
    elif a != b:
        out.differences.append(Difference(name, path, json.dumps(a)[:80], json.dumps(b)[:80]))


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _compare_csv(name: str, a: str, b: str, out: Comparison) -> None:
    ra, rb = list(csv.reader(io.StringIO(a))), list(csv.reader(io.StringIO(b)))
    if len(ra) != len(rb):
        out.differences.append(Difference(name, "(rows)", str(len(ra)), str(len(rb))))
        return
    header = ra[0] if ra else []
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        if len(x) != len(y):
            out.differences.append(Difference(name, f"row {i + 1} (cells)", str(len(x)), str(len(y))))
            continue
        for j, (cx, cy) in enumerate(zip(x, y, strict=True)):
            col = header[j] if j < len(header) else str(j + 1)
            _compare_text(name, cx, cy, out, where=f"row {i + 1}, column {col!r}")


def _compare_text(name: str, a: str, b: str, out: Comparison, where: str = "") -> None:
    """Text around numbers must match; each printed number is compared at its printed precision."""
    la, lb = a.splitlines(), b.splitlines()
    if len(la) != len(lb):
        out.differences.append(Difference(name, where or "(lines)", f"{len(la)} lines", f"{len(lb)} lines"))
        return
    for i, (x, y) in enumerate(zip(la, lb, strict=True)):
        na, nb = _NUMBER.findall(x), _NUMBER.findall(y)
        at = where or f"line {i + 1}"
        if x != y and _NUMBER.split(x) != _NUMBER.split(y):
            out.differences.append(Difference(name, at, x.strip()[:100], y.strip()[:100]))
            continue
        for k, (p, q) in enumerate(zip(na, nb, strict=True)):
            _printed(name, f"{at}, number {k + 1}", p, q, out)


def _printed(name: str, where: str, a: str, b: str, out: Comparison) -> None:
    """Two numbers as written. At full precision (12 or more decimals, the repr of an unrounded float)
    they are equal within the relative tolerance; written with fewer decimals (rounded first), one
    unit of the last decimal apart is a rounding flip; integers must match."""
    out.numbers_compared += 1
    da, db = Decimal(a), Decimal(b)
    if da == db or a == b:
        return
    if not (da.is_finite() and db.is_finite()):
        out.differences.append(Difference(name, where, a, b))
        return
    places = max(-da.as_tuple().exponent, -db.as_tuple().exponent, 0)
    fa, fb = float(a), float(b)
    scale = max(abs(fa), abs(fb))
    rel = abs(fa - fb) / scale if scale > 0 else 0.0
    if places >= 12 and (abs(fa - fb) <= ABS_TOL or rel <= out.rel_tol):
        out.numbers_within_tolerance += 1
        out.largest_rel_difference = max(out.largest_rel_difference, rel)
    elif 1 <= places < 12 and abs(da - db) <= Decimal(1).scaleb(-places):
        out.rounding_flips += 1
    else:
        out.differences.append(Difference(name, where, a, b))
