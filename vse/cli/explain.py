"""`vse explain NEURON --method M`: explain a neuron in one sentence (`vse.method.pipeline.explain_neuron`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vse.cli.options import DEFAULT_CASSETTES, METHOD_HELP, bullets, llm_options, open_llm, write_jsonl
from vse.cli.preflight import check_neuron, check_writable
from vse.core.target import neuron_stem, parse_neuron_id
from vse.core.vocab import Method, Polarity, choices
from vse.data.loader import Source
from vse.method import defaults
from vse.method.pipeline import explain_neuron


@click.command(
    help=f"""Explain a neuron (MODEL/LAYER/INDEX) in one sentence.

\b
Methods:
{bullets(METHOD_HELP)}

Without --probe the pairs come from the committed fixtures (EfficientNet-Lite0 on the Tux Paint
stamps). One JSONL record per explanation goes to --out, with how it was made (provenance)."""
)
@click.argument("neuron")
@click.option(
    "--method",
    type=click.Choice(choices(Method)),
    required=True,
    help="Which pairs the LLM reads (see above).",
)
@click.option(
    "--polarity",
    type=click.Choice(choices(Polarity)),
    default=defaults.POLARITY.value,
    show_default=True,
    help="positive: the pairs as they are; negative: flipped (what the neuron works against); both: signed -10..10.",
)
@click.option(
    "--n",
    "n",
    type=click.IntRange(min=1),
    default=defaults.N_EXPLANATIONS,
    show_default=True,
    help="Explanations to draw (best of N is picked by `vse score`).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append one JSONL record per explanation here.",
)
@llm_options
def explain(neuron, method, polarity, n, out, seed, base_url, model, api, cassette, replay, port, probe):
    # A malformed id, a unit out of range, missing pairs, a bad probe folder or missing weights: said
    # first, before any server starts or any model runs over the probe set.
    check_neuron(neuron, methods=[method], probe=probe)
    check_writable(out)

    stem = neuron_stem(*parse_neuron_id(neuron))
    cassette = cassette or DEFAULT_CASSETTES / f"{stem}__explain-{method}-{polarity}-{api}.json.gz"
    if not replay:
        check_writable(cassette, "--cassette")
    with open_llm(base_url, model, api, cassette, replay, port) as llm:
        records = explain_neuron(
            neuron,
            method,
            llm=llm,
            n=n,
            polarity=polarity,
            seed=seed,
            progress=sys.stderr.isatty(),
            source=Source(probe) if probe else Source(),
        )
    for r in records:
        seed_txt = "" if r.seed is None else f" (seed {r.seed})"
        click.echo(
            f"{r.neuron} [{r.method}, {r.polarity}]{seed_txt}: the main thing this neuron does is find {r.explanation}"
        )
    if not replay:
        click.echo(f"recorded to {cassette} (replay: the same command with --replay)", err=True)
    write_jsonl(out, records)
