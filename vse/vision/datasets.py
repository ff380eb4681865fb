"""Probe image sets: a folder of images with optional captions, and Debian's Tux Paint stamps.

A :class:`ProbeSet` is a list of :class:`ProbeItem` (id = path relative to the set's root, file path,
caption or None) plus the bookkeeping a run record needs: ``skipped`` (files that could not be read,
with the reason), ``excluded`` (files left out on purpose, with the reason) and ``uncaptioned`` ids.
Nothing is dropped silently: every file found is either an item or listed with a reason.

Captions for a generic folder come from a sidecar file at the root: ``captions.tsv``
(``id<TAB>caption`` per line) or ``captions.json`` (``{id: caption}`` or ``[{"id", "caption"}]``),
or else from a ``<stem>.txt`` next to each image (its first line). Transparent images are composited
on a plain background (white by default).

Tux Paint (``tuxpaint-stamps-default``): PNG stamps under ``/usr/share/tuxpaint/stamps``, caption =
first line of the stamp's ``.txt``; ``symbols/`` (letters, digits, coins) is skipped, as are the
``*_mirror.png`` pre-mirrored duplicates. SVG-only stamps are rendered with ``cairosvg`` when
``include_svg=True`` (a stamp with both a PNG and an SVG is read from the PNG). Stamps are padded to
a square so the model's centre crop does not cut the object.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vse.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TUXPAINT_ROOT = Path("/usr/share/tuxpaint/stamps")
WHITE = (255, 255, 255)


class UnreadableImage(ValueError):
    """An image file that could not be decoded."""


@dataclass
class ProbeItem:
    id: str
    path: Path
    caption: str | None = None


@dataclass
class ProbeSet:
    """Images to probe a model with. See the module docstring for the fields' meaning."""

    name: str
    root: Path
    items: list[ProbeItem]
    skipped: list[dict] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)
    background: tuple[int, int, int] = WHITE
    pad_square: bool = False
    svg_size: int = 512

    @property
    def uncaptioned(self) -> list[str]:
        return [it.id for it in self.items if not it.caption]

    def open(self, item: ProbeItem):
        """The item as an RGB PIL image; raises :class:`UnreadableImage` on any decode failure."""
        return open_image(item.path, self.background, self.pad_square, self.svg_size)

    def verify(self, progress: bool = False) -> ProbeSet:
        """Decode every image once; move the unreadable ones to ``skipped`` (with the reason)."""
        from tqdm import tqdm

        good = []
        for it in tqdm(self.items, desc=f"checking {self.name}", unit="img", disable=not progress):
            try:
                self.open(it)
                good.append(it)
            except UnreadableImage as exc:
                self.skipped.append({"id": it.id, "reason": str(exc)})
        self.items = good
        return self

    def only_captioned(self) -> ProbeSet:
        """Keep captioned items; the others move to ``excluded`` with reason ``no caption``."""
        self.excluded.extend({"id": it.id, "reason": "no caption"} for it in self.items if not it.caption)
        self.items = [it for it in self.items if it.caption]
        return self

    def record(self) -> dict:
        """What a run record keeps about the probe set."""
        return {
            "name": self.name,
            "root": str(self.root),
            "n_images": len(self.items),
            "n_captioned": sum(1 for it in self.items if it.caption),
            "uncaptioned": self.uncaptioned,
            "skipped": list(self.skipped),
            "excluded": list(self.excluded),
            "background": list(self.background),
            "pad_square": self.pad_square,
        }


def open_image(path: Path, background=WHITE, pad_square: bool = False, svg_size: int = 512):
    """Decode ``path`` to RGB: SVG rendered with cairosvg, transparency composited on ``background``."""
    from PIL import Image

    path = Path(path)
    try:
        if path.suffix.lower() == ".svg":
            import cairosvg  # optional dependency, only for SVG stamps

            img = Image.open(io.BytesIO(cairosvg.svg2png(url=str(path), output_width=svg_size)))
        else:
            img = Image.open(path)
        img.load()
    except ImportError as exc:
        raise UnreadableImage(f"{path}: SVG needs the optional package cairosvg ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise UnreadableImage(f"{path}: {type(exc).__name__}: {exc}") from exc
    if img.mode in ("P", "PA") or (img.mode == "L" and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        img = img.convert("RGBA")
        canvas = Image.new("RGB", img.size, tuple(background))
        canvas.paste(img, mask=img.getchannel("A"))
        img = canvas
    else:
        img = img.convert("RGB")
    if pad_square and img.width != img.height:
        side = max(img.size)
        canvas = Image.new("RGB", (side, side), tuple(background))
        canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
        img = canvas
    return img


def read_utf8(path: Path) -> str:
    """A text file's content; invalid UTF-8 is an error naming the file and line, never replaced
    silently (a caption altered by U+FFFD would be fed to the LLM as if it were the caption)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UserError(
            f"{path}:{line}: not valid UTF-8 (byte {column} of the line: {raw[exc.start : exc.start + 1]!r})"
        ) from None


def first_line(path: Path) -> str | None:
    """First line of a text file, stripped; None when the file is missing or empty.
    Invalid UTF-8 raises `UserError` naming the file (see `read_utf8`)."""
    try:
        text = read_utf8(path)
    except FileNotFoundError:
        return None
    lines = text.splitlines()
    line = lines[0].strip() if lines else ""
    return line or None


def read_captions_file(path: Path) -> dict[str, str]:
    """A sidecar captions file: ``.json`` ({id: caption} or [{"id","caption"}]) or ``.tsv`` (id TAB caption)."""
    path = Path(path)
    text = read_utf8(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{path}: not JSON ({exc})") from None
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
        if isinstance(data, list):
            if all(isinstance(d, dict) and "id" in d and "caption" in d for d in data):
                return {str(d["id"]): str(d["caption"]) for d in data}
        raise UserError(f"{path}: expected a JSON object {{id: caption}} or a list of {{id, caption}}")
    out = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter="\t"), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise UserError(f"{path}:{lineno}: expected 'id<TAB>caption'")
        out[row[0]] = row[1].strip()
    return out


def _walk(root: Path, exts: Iterable[str]) -> list[Path]:
    exts = tuple(exts)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def load_folder(
    root: str | Path,
    captions: str | Path | None = None,
    *,
    name: str | None = None,
    background=WHITE,
    pad_square: bool = False,
) -> ProbeSet:
    """Every image under ``root`` (recursively, sorted), captioned from ``captions`` or an
    auto-detected sidecar (``captions.tsv`` / ``captions.json`` at the root, else ``<stem>.txt``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"probe folder {root} does not exist or is not a directory")
    if captions is None:
        for cand in ("captions.tsv", "captions.json"):
            if (root / cand).exists():
                captions = root / cand
                break
    table = read_captions_file(Path(captions)) if captions is not None else None
    items = []
    files = _walk(root, IMAGE_EXTS)
    if not files:
        raise UserError(f"probe folder {root} has no images (looked for {', '.join(IMAGE_EXTS)}, also in subfolders)")
    for p in files:
        rel = p.relative_to(root).as_posix()
        cap = table.get(rel) if table is not None else first_line(p.with_suffix(".txt"))
        items.append(ProbeItem(rel, p, cap))
    if table is not None:
        ids = {it.id for it in items}
        missing = sorted(set(table) - ids)
        excluded = [{"id": m, "reason": "caption given but no image file"} for m in missing]
    else:
        excluded = []
    return ProbeSet(
        name or root.name, root, items, excluded=excluded, background=tuple(background), pad_square=pad_square
    )


def tuxpaint(
    root: str | Path = TUXPAINT_ROOT, *, include_svg: bool = False, background=WHITE, svg_size: int = 512
) -> ProbeSet:
    """The Tux Paint stamps as a captioned probe set (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Tux Paint stamps not found at {root}: install the Debian package tuxpaint-stamps-default "
            "(apt-get install tuxpaint-stamps-default) or pass the stamps folder"
        )
    items, excluded = [], []
    files = _walk(root, (".png", ".svg"))
    pngs = {p.with_suffix("") for p in files if p.suffix.lower() == ".png"}
    for p in files:
        rel = p.relative_to(root).as_posix()
        if rel.split("/", 1)[0] == "symbols":
            continue  # letters, digits, coins: not probe images (not listed: skipped by design)
        if p.stem.endswith("_mirror"):
            excluded.append({"id": rel, "reason": "pre-mirrored duplicate of another stamp"})
            continue
        if p.suffix.lower() == ".svg":
            if p.with_suffix("") in pngs:
                excluded.append({"id": rel, "reason": "SVG with a PNG twin (the PNG is used)"})
                continue
            if not include_svg:
                excluded.append({"id": rel, "reason": "SVG (include_svg=False)"})
                continue
        items.append(ProbeItem(rel, p, first_line(p.with_suffix(".txt"))))
    return ProbeSet(
        "tuxpaint", root, items, excluded=excluded, background=tuple(background), pad_square=True, svg_size=svg_size
    )


def open_probe(spec: str | Path, *, include_svg: bool = True) -> ProbeSet:
    """The probe set a command's ``--probe`` names: ``"tuxpaint"`` (the stamps) or a folder of images."""
    if str(spec) == "tuxpaint":
        return tuxpaint(include_svg=include_svg)
    return load_folder(spec)
