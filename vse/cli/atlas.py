"""``vse atlas LABELS.jsonl... --out DIR``: a static site of every labelled unit (see `vse.outputs.atlas`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vse.outputs.atlas import build_atlas


@click.command("atlas")
@click.argument("labels", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder of the site (open OUT/index.html).",
)
@click.option(
    "--probe",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The folder of captioned images the units were labelled from (`vse label --probe`): its images are shown. "
    "Default: the committed fixtures' probe images, where they cover the layer.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Where activations are computed when the cache (.vse-cache/) lacks them.",
)
@click.option("--title", default=None, help="Page title (default: the layers shown).")
@click.option(
    "--max-tokens",
    type=int,
    default=60,
    show_default=True,
    help="The explanation budget of records that do not say whether they were cut "
    "(a record that used all of it in one call is marked).",
)
def atlas_cmd(labels, out, probe, device, title, max_tokens):
    """Build a browsable atlas of labelled units: DIR/index.html (sortable, searchable index) and one card per neuron.

    LABELS are JSONL files written by `vse label` (or `vse explain` / `vse score --out`), or experiment folders
    under results/ (their explanations and scores). The site is static:
    open it from disk, no server, no network.
    """
    summary = build_atlas(
        list(labels), out, probe=probe, device=device, title=title, max_tokens=max_tokens, progress=sys.stderr.isatty()
    )
    click.echo(str(summary))
