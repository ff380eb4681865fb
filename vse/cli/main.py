"""The `vse` command line: a thin layer that parses options and calls library functions."""

from __future__ import annotations

import click

from vse import __version__
from vse.cli.errors import VseGroup, debug_option, warn_no_effect


@click.group(cls=VseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vse")
@debug_option
def main() -> None:
    """Explain single neurons of vision models in plain sentences, and score the explanations.

    Every LLM call goes through one thin client and is recorded to vcrpy cassettes, so
    `vse reproduce` rebuilds the results offline, byte for byte.
    """


@main.command()
@click.option(
    "--record", is_flag=True, help="Call the LLM server for requests the cassettes lack, and append them (resumable)."
)
@click.option("--experiment", "names", multiple=True, help="Run only this experiment (repeatable); default: all.")
@click.option(
    "--port",
    type=int,
    default=None,
    help="Port for the local server that --record starts when no --base-url / VSE_BASE_URL is given (default: any free port).",
)
@click.option(
    "--base-url",
    default=None,
    help="OpenAI-compatible base URL for recording (default: VSE_BASE_URL / OPENAI_BASE_URL).",
)
@click.option(
    "--model", default=None, help="Model name sent to the server when recording (default: VSE_MODEL or 'local')."
)
@click.option(
    "--in-flight",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="One-item predictions sent at once when recording (the local server's slots; results do not depend on it).",
)
def reproduce(
    record: bool, names: tuple[str, ...], port: int | None, base_url: str | None, model: str | None, in_flight: int
) -> None:
    """Replay the recorded cassettes offline and rebuild every results table (results/).

    With --record, requests missing from the cassettes go to the LLM server and are appended.
    """
    import contextlib
    import os
    import sys

    from vse.llm.client import ClientConfig
    from vse.studies.registry import EXPERIMENTS, get_experiment
    from vse.studies.runner import run_experiment

    if not record:
        warn_no_effect(
            {"--base-url": base_url, "--model": model, "--port": port}, "without --record (a replay calls no server)"
        )
    with contextlib.ExitStack() as stack:
        config = None
        if record:
            from vse.cli.preflight import check_local_server
            from vse.llm.server import endpoint_or_local

            if base_url is None and not os.environ.get("VSE_BASE_URL") and not os.environ.get("OPENAI_BASE_URL"):
                check_local_server()  # a machine that cannot build llama-server learns it before the model download
            base_url = endpoint_or_local(stack, base_url, port)
            config = ClientConfig.from_env(base_url=base_url, model=model or "local")
        for name in names or tuple(EXPERIMENTS):
            # Progress bars only on a terminal: piped, tqdm's nested bars garble the log.
            table = run_experiment(
                get_experiment(name),
                record=record,
                client_config=config,
                progress=sys.stderr.isatty(),
                in_flight=in_flight,
            )
            click.echo(f"## {name}\n\n{table}")
        # The HTML report and the top-image grids, derived from every results folder.
        from vse.atomic import write_atomic
        from vse.outputs.report import report_files
        from vse.studies.runner import Paths

        results = Paths().results
        for rel, data in report_files(results).items():
            write_atomic(results / rel, data)
        click.echo(f"report: {results / 'report.html'}", err=True)


# Sub-command groups live next to the code they drive; each module only imports heavy
# libraries (torch, transformers) inside its commands, so `vse --help` stays fast.
# --- registered command groups (one line each) ---
from vse.cli.llm import llm as _llm

main.add_command(_llm)  # noqa: E402
from vse.cli.vision import register as _reg_vision

_reg_vision(main)  # noqa: E402
from vse.cli.commands import register as _reg_commands

_reg_commands(main)  # noqa: E402
from vse.cli.label import label_cmd as _label

main.add_command(_label)  # noqa: E402
from vse.cli.atlas import atlas_cmd as _atlas

main.add_command(_atlas)  # noqa: E402
