"""`vse reproduce`: replay the committed cassettes offline and rebuild results/ (`--record` fills gaps live).

The registry is imported as a module, not its names: tests swap `registry.get_experiment`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from vse.cli.errors import warn_no_effect
from vse.cli.options import endpoint
from vse.llm.client import ClientConfig
from vse.llm.server import DEFAULT_SLOTS
from vse.outputs.compare import REL_TOL, Verdict
from vse.studies import registry
from vse.studies.runner import check_replay, current_paths
from vse.studies.runner import reproduce as run_all


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
    help="One-item predictions sent at once when recording (the local server's slots). Replayed results do "
    "not depend on it; a live server's logits depend on its batch, so live numbers may differ in the last digits.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Replay into a scratch folder and compare every number with results/ (or --against), field by field: "
    "identical, within --rel-tol (exit 0), or which numbers differ (exit 1). results/ is left untouched.",
)
@click.option(
    "--against",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --check: the results folder to compare with (default: ./results).",
)
@click.option(
    "--rel-tol",
    type=click.FloatRange(min=0.0),
    default=REL_TOL,
    show_default=True,
    help="With --check: the relative difference up to which a full-precision number counts as equal.",
)
def reproduce(
    record: bool,
    names: tuple[str, ...],
    port: int | None,
    base_url: str | None,
    model: str | None,
    in_flight: int,
    check: bool,
    against: Path | None,
    rel_tol: float,
) -> None:
    """Replay the recorded cassettes offline and rebuild every results table (results/).

    With --record, requests missing from the cassettes go to the LLM server and are appended.
    With --check, nothing is written: a scratch replay is compared with results/ number by number.
    """
    for name in names:
        registry.get_experiment(name)  # an unknown name fails here, before any replay
    if check:
        if record:
            raise click.UsageError("--check replays only; drop --record")
        folder = against or current_paths().results
        if not folder.is_dir():
            raise click.UsageError(f"--check: no results folder at {folder}")
        comparison = check_replay(names, against=folder, rel_tol=rel_tol)
        click.echo(comparison.summary())
        sys.exit(0 if comparison.verdict is not Verdict.DIFFERENT else 1)
    warn_no_effect({"--against": against}, "without --check")
    if not record:
        warn_no_effect(
            {"--base-url": base_url, "--model": model, "--port": port}, "without --record (a replay calls no server)"
        )
    with contextlib.ExitStack() as stack:
        config = None
        if record:
            config = ClientConfig.from_env(base_url=endpoint(stack, base_url, port), model=model or "local")
        # Progress bars only on a terminal: piped, tqdm's nested bars garble the log.
        for name, table in run_all(
            names, record=record, client_config=config, progress=sys.stderr.isatty(), in_flight=in_flight
        ):
            click.echo(f"## {name}\n\n{table}")
        click.echo(f"report: {current_paths().results / 'report.html'}", err=True)
