"""The `vse` command line: a thin layer that parses options and calls library functions."""

from __future__ import annotations

import click

from vse import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vse")
def main() -> None:
    """Explain single neurons of vision models in plain sentences, and score the explanations.

    Every LLM call goes through one thin client and is recorded to vcrpy cassettes, so
    `vse reproduce` rebuilds the results offline, byte for byte.
    """


# Sub-command groups live next to the code they drive; each module only imports heavy
# libraries (torch, transformers) inside its commands, so `vse --help` stays fast.
# --- registered command groups (one line each) ---
from vse.llm.cli import llm as _llm; main.add_command(_llm)  # noqa: E402
from vse.vision.cli import register as _reg_vision; _reg_vision(main)  # noqa: E402
