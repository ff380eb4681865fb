"""`vse explain NEURON --method M`: explain a neuron in one sentence (`vse.method.pipeline.explain_neuron`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vse.cli.options import (
    DEFAULT_CASSETTES,
    METHOD_HELP,
    bullets,
    embeddings_path,
    in_flight_option,
    llm_options,
    open_llm,
    write_jsonl,
)
from vse.cli.preflight import check_endpoint, check_neuron, check_writable
from vse.core.target import neuron_stem, parse_neuron_id
from vse.core.vocab import TARGET_KINDS, Method, Polarity, Unscorability, choices
from vse.data.loader import Source
from vse.method import defaults
from vse.method.best_of import best_of_n
from vse.method.pipeline import explain_neuron
from vse.method.score import ScoreConfig, Unscorable
from vse.method.simulators.embedding import EmbeddingStore

#: What to do when the candidates cannot be compared (`Unscorable`): they are kept either way.
EXPLAIN_REMEDY = "the candidates above are kept, unscored; give a larger probe set to choose among them"


@click.command(
    help=f"""Explain a neuron (MODEL/LAYER/INDEX, or MODEL/LAYER/sae:FILE/INDEX: see docs/sae.md) in one sentence.

\b
Methods:
{bullets(METHOD_HELP)}

Without --probe the pairs come from the committed fixtures (EfficientNet-Lite0 on the Tux Paint
stamps). One JSONL record per explanation goes to --out, with how it was made (provenance).

With --n above 1 the candidates are compared as `vse score --from` does, with the default scorer (the
embedding simulator, no LLM call) on the method's own target: the items the explainer was not shown
are split by a seeded draw; the best candidate on the held-in half is chosen and its score on the
held-out half printed. Every candidate still goes to --out."""
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
    help="Candidate explanations to draw; above 1, the best is chosen on held-in items (see above).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append one JSONL record per explanation here.",
)
@llm_options
@in_flight_option
def explain(neuron, method, polarity, n, out, seed, base_url, model, api, cassette, replay, port, probe, in_flight):
    # A malformed id, a unit out of range, missing pairs, a bad probe folder or missing weights: said
    # first, before any server starts or any model runs over the probe set.
    check_neuron(neuron, methods=[method], probe=probe)
    check_writable(out)

    stem = neuron_stem(*parse_neuron_id(neuron))
    cassette = cassette or DEFAULT_CASSETTES / f"{stem}__explain-{method}-{polarity}-{api}.json.gz"
    if not replay:
        check_writable(cassette, "--cassette")
        if probe:
            check_endpoint(base_url)
    # The embedding scorer reads the method's own pairs, unsigned: signed (both) runs print the candidates only.
    choose = n > 1 and method in TARGET_KINDS and polarity != Polarity.BOTH
    store = embeddings_path(cassette)
    if choose and replay and cassette.exists() and not store.exists():  # a missing cassette: said by open_llm
        raise click.ClickException(
            f"embedding store {store} does not exist: run the same command without --replay first"
        )
    source = Source(probe) if probe else Source()
    with open_llm(base_url, model, api, cassette, replay, port, in_flight) as llm:
        records = explain_neuron(
            neuron, method, llm=llm, n=n, polarity=polarity, seed=seed, progress=sys.stderr.isatty(), source=source
        )
        for r in records:
            seed_txt = "" if r.seed is None else f" (seed {r.seed})"
            click.echo(
                f"{r.neuron} [{r.method}, {r.polarity}]{seed_txt}: "
                f"the main thing this neuron does is find {r.explanation}"
            )
        if choose:
            llm.embeddings = EmbeddingStore(store, record=not replay)
            try:
                best = best_of_n(
                    records, method, llm=llm, config=ScoreConfig(api=api), seed=seed, progress=False, source=source
                )
                click.echo(best.lines())
            except Unscorable as exc:  # the candidates stand (printed, written): only the choice is impossible
                reason = exc.instead(dict.fromkeys(Unscorability, EXPLAIN_REMEDY)).reason
                click.echo(f"vse: warning: no best of {n} chosen: {reason}", err=True)
            finally:
                llm.embeddings.save()
    if not replay:
        click.echo(f"recorded to {cassette} (replay: the same command with --replay)", err=True)
    write_jsonl(out, records)
