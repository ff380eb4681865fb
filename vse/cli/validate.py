"""`vse validate MODEL/LAYER --units ...`: matched vs mismatched explanations, does the score tell them
apart? By default with any scorer and fair best of N (`vse.studies.fair_validation`); with ``--pool``, the
power study's shared-pool design (`vse.studies.matched.run_matched_study`). The name is kept for the
command; it measures discrimination."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from vse.cli import preflight
from vse.cli.options import (
    DEFAULT_CASSETTES,
    embeddings_path,
    endpoint,
    feature_layer_of,
    feature_options,
    in_flight_option,
    llm_options,
    open_llm,
)
from vse.core.discrimination import markdown, meta_markdown
from vse.core.target import neuron_stem
from vse.core.vocab import Display, Method, Mode, Protocol, RankBy, choices
from vse.llm.client import ClientConfig
from vse.method import defaults
from vse.method.explain import ExplainConfig, new_run_config
from vse.method.score import ScoreConfig
from vse.method.simulators.embedding import EmbeddingStore
from vse.studies.cassette_llms import CassetteLLMs, Paths
from vse.studies.fair_validation import FairValidation, run_fair_validations
from vse.studies.matched import MatchedStudy, run_matched_study, summary_json


def _units(units: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> ``(1, 2, 3)``: at least 3 different units (the test is paired over units)."""
    try:
        unit_list = tuple(int(u) for u in units.split(","))
    except ValueError:
        raise click.UsageError(f"--units must be comma-separated integers, got {units!r}") from None
    if len(set(unit_list)) < 3:
        raise click.UsageError("--units needs at least 3 different units (a paired test over units)")
    return unit_list


def _names(option: str, text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; an empty name (a stray comma) or one given twice is a usage error (each
    method and target is a row of the table: twice would be the same row twice)."""
    names = [n.strip() for n in text.split(",")]
    if "" in names:
        raise click.UsageError(f"{option} {text!r}: an empty name (a stray comma?)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise click.UsageError(f"{option} {text!r}: {', '.join(twice)} given twice")
    return names


@click.command(
    help="""Matched vs mismatched: does the score tell each unit's own explanation from the others'?

\b
By default the path `vse score` recommends, with any scorer (--simulator, --protocol): each method
explains every unit --n times; the best candidate is chosen on held-in items and scored on the
held-out rest (the items the explainer was not shown, split by a seeded draw); then every unit's
chosen explanation is scored on every other unit's held-out items. Prints matched and mismatched
means, wins, how often the own explanation ranks first, its mean rank, and paired t and Wilcoxon
p-values. One cassette (and embedding store) under --cassettes.

\b
With --pool: the power study's design instead: every explanation predicted once by the one-item
LLM simulator on a shared item pool per target (the explainer sees the even ranks of the top
pairs), every protocol read from those predictions. One cassette per unit under --cassettes."""
)
@click.argument("model_layer", metavar="MODEL/LAYER")
@click.option(
    "--units",
    required=True,
    help="Comma-separated unit indices (at least 3).",
)
@click.option(
    "--methods",
    default=",".join(defaults.VALIDATE_METHODS),
    show_default=True,
    help="Comma-separated explanation methods.",
)
@click.option(
    "--targets",
    default=",".join(defaults.VALIDATE_TARGETS),
    show_default=True,
    help="Comma-separated target kinds.",
)
@click.option(
    "--n-top",
    type=click.IntRange(min=2),
    default=defaults.VALIDATE_N_TOP,
    show_default=True,
    help="Top items of each unit in the pool.",
)
@click.option(
    "--n-random",
    type=click.IntRange(min=2),
    default=defaults.VALIDATE_N_RANDOM,
    show_default=True,
    help="Shared random items in the pool.",
)
@click.option(
    "--cassettes",
    "cassette_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CASSETTES / "validate",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the summary (JSON) here.",
)
@click.option(
    "--rank-by",
    type=click.Choice(choices(RankBy)),
    default=defaults.RANK_BY.value,
    show_default=True,
    help="How the explainer orders a unit's top pairs: raw values, or the 0..10 integers with ties by index "
    "(how studies recorded before the simulator study did it, e.g. the power study).",
)
@click.option(
    "--simulator",
    type=click.Choice(choices(Mode)),
    default=defaults.SIMULATOR.value,
    show_default=True,
    help="How values are predicted from an explanation (embedding: no LLM; one: the paper's).",
)
@click.option(
    "--protocol",
    type=click.Choice(choices((Protocol.RECALL_FREE, Protocol.ALL, Protocol.UNIFORM))),
    default=defaults.PROTOCOL.value,
    show_default=True,
    help="Which of a unit's held-out items a score uses (recall-free: all, in one exact pass).",
)
@click.option(
    "--n",
    "n_candidates",
    type=click.IntRange(min=1),
    default=defaults.N_EXPLANATIONS,
    show_default=True,
    help="Candidate explanations per unit and method; the best is chosen on held-in items.",
)
@click.option(
    "--pool",
    is_flag=True,
    help="The power study's shared-pool design with the one-item LLM simulator (see above).",
)
@feature_options
@llm_options
@in_flight_option
def validate(
    model_layer,
    units,
    methods,
    targets,
    n_top,
    n_random,
    cassette_dir,
    out,
    rank_by,
    simulator,
    protocol,
    n_candidates,
    pool,
    seed,
    base_url,
    model,
    api,
    cassette,
    replay,
    port,
    probe,
    in_flight,
    sae_file,
    directions_file,
):
    name, sep, layer = model_layer.partition("/")
    if not sep or "/" in layer:
        raise click.UsageError(f"expected MODEL/LAYER, got {model_layer!r}")
    layer = feature_layer_of(layer, sae_file, directions_file)
    if pool and layer != model_layer.partition("/")[2]:
        raise click.UsageError("--pool (the power study's design) works on channels: leave out --sae/--directions")
    unit_list = _units(units)
    if probe is not None or cassette is not None:
        raise click.UsageError("validate works from the fixtures and writes one cassette per unit under --cassettes")
    method_list, target_list = _names("--methods", methods), _names("--targets", targets)
    if Method.WEIGHT_EXPLANATION in method_list:
        preflight.check_weight_explanation(layer)
    preflight.check_units(name, layer, unit_list, preflight.kinds_for(method_list, target_list))
    preflight.check_writable(out)
    if not pool:
        return _fair(
            name, layer, unit_list, method_list, target_list, simulator, protocol, n_candidates, rank_by,
            seed, base_url, model, api, replay, port, in_flight, cassette_dir, out,
        )  # fmt: skip
    study = MatchedStudy(
        name=cassette_dir.name,
        model=name,
        layer=layer,
        units=unit_list,
        n_neurons=len(unit_list),
        methods=tuple(method_list),
        targets=tuple(target_list),
        n_top=n_top,
        n_random=n_random,
        seed=seed,
        explain=ExplainConfig(shown=Display.HELDOUT, rank_by=rank_by),
    )
    with contextlib.ExitStack() as stack:
        if replay:
            config = ClientConfig(base_url="http://replay.invalid/v1", max_retries=0)
        else:
            config = ClientConfig.from_env(base_url=endpoint(stack, base_url, port), model=model)
        opener = CassetteLLMs(
            study.name,
            api,
            not replay,
            config,
            Paths(cassette_dir.parent, Path("results")),
            in_flight=in_flight if in_flight is not None or not replay else 1,
        )
        result = run_matched_study(study, opener, progress=sys.stderr.isatty())
    click.echo(result.comparison)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(summary_json(result.rows), encoding="utf-8")


def _fair(
    name, layer, units, methods, targets, simulator, protocol, n, rank_by,
    seed, base_url, model, api, replay, port, in_flight, cassette_dir, out,
) -> None:  # fmt: skip
    """The default path: `vse.studies.fair_validation` for every method and target."""
    config = ScoreConfig(mode=simulator, protocol=protocol, api=api)
    # The new-run explainer (its budget, replies cut off trimmed) unless another ranking is asked for.
    explain = None if rank_by == defaults.RANK_BY else new_run_config(api, rank_by=rank_by)
    cassette = cassette_dir / f"{neuron_stem(name, layer, 'fair')}.json.gz"
    if not replay:
        preflight.check_writable(cassette, "--cassettes")
    with open_llm(base_url, model, api, cassette, replay, port, in_flight) as llm:
        if simulator == Mode.EMBEDDING:
            llm.embeddings = EmbeddingStore(embeddings_path(cassette), record=not replay)
        validations = [
            FairValidation(name, layer, units, method, target, n=n, score=config, explain=explain, seed=seed)
            for method in methods
            for target in targets
        ]
        try:  # each unit explained once per method, its explanations scored on every target
            results = run_fair_validations(validations, llm, progress=sys.stderr.isatty())
        finally:
            if llm.embeddings is not None:
                llm.embeddings.save()
    click.echo(markdown([r.row for r in results]))
    for line in filter(None, (r.left_out_line() for r in results)):
        click.echo(line)
    click.echo("Meta-AUPRC (NeuronEval): how well the score picks each unit's own explanation among all pairs\n")
    metas = [(f"{r.row.method}, {r.row.target}, {r.row.protocol}", r.meta) for r in results if r.meta is not None]
    click.echo(meta_markdown(metas))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([r.to_json() for r in results], indent=2, sort_keys=True) + "\n", encoding="utf-8")
