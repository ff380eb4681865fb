"""`vse score NEURON --target T`: score explanations of a neuron with Algorithm 1
(`vse.method.pipeline.score_explanation`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vse.cli.options import (
    DEFAULT_CASSETTES,
    TARGET_HELP,
    bullets,
    embeddings_path,
    in_flight_option,
    llm_options,
    open_llm,
    write_jsonl,
)
from vse.cli.preflight import check_endpoint, check_neuron, check_scorable, check_writable
from vse.core.stats import StopRule
from vse.core.target import neuron_stem, parse_neuron_id
from vse.core.vocab import TARGET_KINDS, USER_METHOD, Mode, Polarity, Protocol, choices
from vse.data.loader import Source
from vse.method import defaults
from vse.method.best_of import best_of_n
from vse.method.llm import LLM
from vse.method.pipeline import score_explanation
from vse.method.records import ExplanationRecord
from vse.method.score import ScoreConfig


def _embedding_llm(cassette: Path, replay: bool, api: str):
    """An `LLM` for the embedding simulator: no server, no calls; the embeddings are recorded next
    to the cassette (``*.embeddings.npz``) and replayed from there."""
    path = embeddings_path(cassette)
    if replay and not path.exists():
        raise click.ClickException(
            f"embedding store {path} does not exist: run the same command without --replay first"
        )
    return LLM.open_embeddings(path, record=not replay, api=api)


def _explanations(explanation: str | None, from_file: Path | None, neuron: str) -> list[ExplanationRecord] | None:
    """Each record of a `vse explain` JSONL file (all of this neuron), or None for --explanation TEXT."""
    if (explanation is None) == (from_file is None):
        raise click.UsageError("give exactly one of --explanation TEXT or --from FILE")
    if explanation is not None:
        return None
    todo = []
    for number, line in enumerate(from_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = ExplanationRecord.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as err:
            raise click.ClickException(f"{from_file}:{number}: not a `vse explain` record ({err})") from None
        if rec.neuron != neuron:
            raise click.ClickException(f"{from_file}:{number}: explains {rec.neuron}, not {neuron}")
        todo.append(rec)
    if not todo:
        raise click.ClickException(f"{from_file}: no explanation records")
    return todo


@click.command(
    help=f"""Score explanations of a neuron (MODEL/LAYER/INDEX, or .../sae:FILE/INDEX) on a target with Algorithm 1.

\b
Targets:
{bullets(TARGET_HELP)}

\b
Protocols (which items a pass predicts):
  uniform: random items (the paper's); top-and-random: the top half plus random (Bills et al.);
  top-and-random-heldout: only top items the explainer never saw, plus random;
  all: every item once (exact, no interval); recall-free: every item the explainer was not shown.

Prints `score ± half-width (passes)` beside Acc/MSE/MAE. With --from, the file's explanations are
candidates (best of N): the items their explainer was not shown (the records say which) are split
by a seeded draw into held-in and held-out halves; the best candidate on the held-in half is chosen
and its score on the held-out half is reported, so choosing does not inflate the score."""
)
@click.argument("neuron")
@click.option(
    "--target",
    type=click.Choice(choices(TARGET_KINDS)),
    required=True,
    help="Which values to predict (see above).",
)
@click.option(
    "--explanation",
    default=None,
    help="An explanation to score (completes 'the main thing this neuron does is find').",
)
@click.option(
    "--from",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The explanations of a JSONL file that `vse explain` wrote: the fair best of them (see above).",
)
@click.option(
    "--polarity",
    type=click.Choice(choices(Polarity)),
    default=defaults.POLARITY.value,
    show_default=True,
    help="Score on the positive, flipped or signed values.",
)
@click.option(
    "--protocol",
    type=click.Choice(choices(Protocol)),
    default=defaults.PROTOCOL.value,
    show_default=True,
    help="recall-free: every item the explainer cannot have seen, once (what the simulator study recommends); "
    "uniform: the paper's Algorithm 1.",
)
@click.option(
    "--prior-corrected",
    is_flag=True,
    help="Subtract a neutral explanation's predictions before the correlation.",
)
@click.option(
    "--mode",
    type=click.Choice(choices(Mode)),
    default=defaults.SIMULATOR.value,
    show_default=True,
    help="Simulator. embedding: cosine of sentence embeddings, no LLM (what the simulator study recommends for "
    "comparing and selecting explanations); one: the paper's LLM simulator, one item per call, expected values.",
)
@click.option(
    "--n-items",
    type=click.IntRange(min=2),
    default=defaults.N_ITEMS,
    show_default=True,
    help="Items per pass.",
)
@click.option(
    "--max-passes",
    type=click.IntRange(min=3),
    default=defaults.MAX_PASSES,
    show_default=True,
    help="Algorithm 1's cap on passes.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append one JSONL record per scored explanation here.",
)
@llm_options
@in_flight_option
def score(
    neuron,
    target,
    explanation,
    from_file,
    polarity,
    protocol,
    prior_corrected,
    mode,
    n_items,
    max_passes,
    out,
    seed,
    base_url,
    model,
    api,
    cassette,
    replay,
    port,
    probe,
    in_flight,
):
    check_neuron(neuron, targets=[target], probe=probe)
    check_writable(out)
    candidates = _explanations(explanation, from_file, neuron)
    config = ScoreConfig(
        mode=mode,
        api=api,
        protocol=protocol,
        prior_corrected=prior_corrected,
        n_items=n_items,
        stop=StopRule(max_runs=max_passes),
    )
    stem = neuron_stem(*parse_neuron_id(neuron))
    cassette = cassette or DEFAULT_CASSETTES / f"{stem}__score-{target}-{polarity}-{protocol}-{api}.json.gz"
    if not replay:
        check_writable(cassette, "--cassette")
        if probe and mode != Mode.EMBEDDING:
            check_endpoint(base_url)
    source = Source(probe) if probe else Source()
    # A unit the protocol cannot score is one line now, before a server starts or a call is made.
    check_scorable(neuron, target, config, polarity=polarity, source=source, candidates=candidates)
    with (
        _embedding_llm(cassette, replay, api)
        if mode == Mode.EMBEDDING
        else open_llm(base_url, model, api, cassette, replay, port, in_flight)
    ) as llm:
        if candidates is None:
            rec = score_explanation(
                neuron,
                explanation,
                target,
                llm=llm,
                config=config,
                polarity=polarity,
                seed=seed,
                progress=sys.stderr.isatty(),
                source=source,
            )
            click.echo(f"{rec.line()}  [{USER_METHOD}] {explanation}")
            out_records: list = [rec]
        else:
            best = best_of_n(
                candidates, target, llm=llm, config=config, seed=seed, progress=sys.stderr.isatty(), source=source
            )
            click.echo(best.lines())
            out_records = [best]
    if not replay:
        where = embeddings_path(cassette) if mode == Mode.EMBEDDING else cassette
        click.echo(f"recorded to {where} (replay: the same command with --replay)", err=True)
    write_jsonl(out, out_records)
