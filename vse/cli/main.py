"""The `vse` command line: a thin layer that parses options and calls library functions.

Each command lives in its own module (one per command group); this one holds the group and registers
them. Heavy libraries (torch, transformers, matplotlib) are imported inside the commands that need them,
so `vse --help` stays fast.
"""

from __future__ import annotations

import click

from vse import __version__
from vse.cli.atlas import atlas_cmd
from vse.cli.errors import VseGroup, debug_option
from vse.cli.explain import explain
from vse.cli.label import label_cmd
from vse.cli.llm import llm
from vse.cli.reproduce import reproduce
from vse.cli.sae import sae_group
from vse.cli.score import score
from vse.cli.validate import validate
from vse.cli.vision import register as register_vision


@click.group(cls=VseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vse")
@debug_option
def main() -> None:
    """Explain single neurons of vision models in plain sentences, and score the explanations.

    Every LLM call goes through one thin client and is recorded to vcrpy cassettes, so
    `vse reproduce` rebuilds the results offline, byte for byte.
    """


for command in (reproduce, llm, explain, score, validate, label_cmd, atlas_cmd, sae_group):
    main.add_command(command)
register_vision(main)
