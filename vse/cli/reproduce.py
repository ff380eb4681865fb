"""`vse reproduce`: replay the committed cassettes offline and rebuild results/ (`--record` fills gaps live).

The registry is imported as a module, not its names: tests swap `registry.get_experiment`.
"""

from __future__ import annotations

import contextlib
import sys

import click

from vse.atomic import write_atomic
from vse.cli.errors import warn_no_effect
from vse.cli.options import endpoint
from vse.llm.client import ClientConfig
from vse.llm.server import DEFAULT_SLOTS
from vse.outputs.report import report_files
from vse.studies import registry
from vse.studies.runner import Paths, run_experiment


@click.command()
@click.option(
    "--record",
    is_flag=True,
    help="Call the LLM server for requests the cassettes lack, and append them (resumable).",
)
@click.option(
    "--experiment",
    "names",
    multiple=True,
    help="Run only this experiment (repeatable); default: all.",
)
@click.option(
    "--port",
    type=int,
    default=None,
    help="Port for the local server that --record starts when no --base-url / VSE_BASE_URL is given "
    "(default: any free port).",
)
@click.option(
    "--base-url",
    default=None,
    help="OpenAI-compatible base URL for recording (default: VSE_BASE_URL / OPENAI_BASE_URL).",
)
@click.option(
    "--model",
    default=None,
    help="Model name sent to the server when recording (default: VSE_MODEL or 'local').",
)
@click.option(
    "--in-flight",
    type=click.IntRange(min=1),
    default=DEFAULT_SLOTS,
    show_default=True,
    help="One-item predictions sent at once when recording (the local server's slots; results do not depend on it).",
)
def reproduce(
    record: bool, names: tuple[str, ...], port: int | None, base_url: str | None, model: str | None, in_flight: int
) -> None:
    """Replay the recorded cassettes offline and rebuild every results table (results/).

    With --record, requests missing from the cassettes go to the LLM server and are appended.
    """
    if not record:
        warn_no_effect(
            {"--base-url": base_url, "--model": model, "--port": port}, "without --record (a replay calls no server)"
        )
    with contextlib.ExitStack() as stack:
        config = None
        if record:
            config = ClientConfig.from_env(base_url=endpoint(stack, base_url, port), model=model or "local")
        for name in names or tuple(registry.EXPERIMENTS):
            # Progress bars only on a terminal: piped, tqdm's nested bars garble the log.
            table = run_experiment(
                registry.get_experiment(name),
                record=record,
                client_config=config,
                progress=sys.stderr.isatty(),
                in_flight=in_flight,
            )
            click.echo(f"## {name}\n\n{table}")
        # The HTML report and the top-image grids, derived from every results folder.
        results = Paths().results
        for rel, data in report_files(results).items():
            write_atomic(results / rel, data)
        click.echo(f"report: {results / 'report.html'}", err=True)
