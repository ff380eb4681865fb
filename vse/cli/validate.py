"""`vse validate MODEL/LAYER --units ...`: matched vs mismatched explanations, does the score tell them
apart (`vse.studies.matched.run_matched_study`)? The name is kept for the command; it measures discrimination."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from vse.cli import preflight
from vse.cli.options import DEFAULT_CASSETTES, endpoint, in_flight_option, llm_options
from vse.core.vocab import Display, Method, RankBy, choices
from vse.llm.client import ClientConfig
from vse.method import defaults
from vse.method.explain import ExplainConfig
from vse.studies.cassette_llms import CassetteLLMs, Paths
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


@click.command(
    help="""Matched vs mismatched: does the score tell each neuron's own explanation from the others'?

For the given units of MODEL/LAYER, each method explains every unit (LLM methods see the even
ranks of the top pairs, so the held-out protocol is fair), every explanation is predicted once on
a shared item pool per target, and every protocol is read from those predictions: matched and
mismatched means, wins, mean rank of the own explanation, paired t and Wilcoxon p-values, and the
number of units the effect needs for p < 0.01. One cassette per unit under --cassettes."""
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
    name, sep, layer = model_layer.partition("/")
    if not sep or "/" in layer:
        raise click.UsageError(f"expected MODEL/LAYER, got {model_layer!r}")
    unit_list = _units(units)
    if probe is not None or cassette is not None:
        raise click.UsageError("validate works from the fixtures and writes one cassette per unit under --cassettes")
    method_list, target_list = methods.split(","), targets.split(",")
    if Method.WEIGHT_EXPLANATION in method_list:
        preflight.check_weight_explanation(layer)
    preflight.check_units(name, layer, unit_list, preflight.kinds_for(method_list, target_list))
    preflight.check_writable(out)
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
