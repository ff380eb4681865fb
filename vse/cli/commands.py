"""`vse explain` and `vse score`: the LLM verbs on a neuron of the user's choosing.

Thin: parse options, open an `LLM` (live and recorded to a cassette, or replayed from it), call
`vse.method.pipeline`, print and write JSONL.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from vse.core.protocols import PROTOCOLS
from vse.core.target import POLARITIES
from vse.data.loader import TARGET_KINDS
from vse.method.pipeline import METHODS
from vse.method.simulators import APIS, MODES

# CLI help text, moved out of vse.method.pipeline (issue 19); helper C's vse/cli/options.py supersedes this.
METHOD_HELP = {
    "caption-activation": "the LLM reads the captions of the images the neuron responds to most",
    "weight-label": "the LLM reads the classes the neuron's weights support most (deeper layers: the eq. 1 product)",
    "weight-clip": "the LLM reads the next layer's units it feeds most, named by their CLIP-Dissect labels",
    "weight-explanation": "as weight-clip, the next layer's units named by vse's own explanations of them",
    "clip-dissect": "CLIP-Dissect's one-concept label, used as the explanation (the baseline)",
}
TARGET_HELP = {
    "caption-activation": "activations on the probe images, predicted from their captions",
    "weight-label": "weights to the classes, predicted from the class names",
    "weight-clip": "weights to the next layer's units, predicted from their CLIP-Dissect labels",
}

#: Where a user's live calls are recorded unless --cassette says otherwise: under the current folder's
#: vse-runs/, never among the clone's committed cassettes/ (the clone's .gitignore ignores vse-runs/).
RUNS_DIR = Path("vse-runs")
DEFAULT_CASSETTES = RUNS_DIR / "cassettes"


def _slug(neuron: str) -> str:
    return neuron.replace("/", "__")


@contextlib.contextmanager
def _llm(
    base_url: str | None,
    model: str | None,
    api: str,
    cassette: Path,
    replay: bool,
    port: int | None,
    in_flight: int | None = None,
) -> Iterator:
    from vse.method.pipeline import LLM

    with contextlib.ExitStack() as stack:
        if replay:
            if not cassette.exists():
                raise click.ClickException(
                    f"cassette {cassette} does not exist: run the same command without --replay first"
                )
            base_url = base_url or "http://replay.invalid/v1"
        else:
            from vse.cli.preflight import check_local_server
            from vse.llm.server import endpoint_or_local

            if base_url is None and not os.environ.get("VSE_BASE_URL") and not os.environ.get("OPENAI_BASE_URL"):
                check_local_server()  # before the model file is assembled
            base_url = endpoint_or_local(stack, base_url, port)
        # A replay is bound by this process, not a server: one at a time unless asked.
        in_flight = in_flight if in_flight is not None or not replay else 1
        yield stack.enter_context(
            LLM.open(base_url, model=model, api=api, cassette=cassette, record=not replay, in_flight=in_flight)
        )


@contextlib.contextmanager
def _embedding_llm(cassette: Path, replay: bool, api: str):
    """An `LLM` for the embedding simulator: no server, no calls; the embeddings are recorded next
    to the cassette (``*.embeddings.npz``) and replayed from there."""
    from vse.llm.client import ClientConfig, LLMClient
    from vse.method.pipeline import LLM
    from vse.method.simulators.embedding import ENCODER, EmbeddingStore

    path = cassette.with_name(cassette.name.removesuffix(".json.gz") + ".embeddings.npz")
    if replay and not path.exists():
        raise click.ClickException(
            f"embedding store {path} does not exist: run the same command without --replay first"
        )
    llm = LLM(LLMClient(ClientConfig(base_url="http://no-llm.invalid/v1", max_retries=0)), api, reported_model=ENCODER)
    llm.embeddings = EmbeddingStore(path, record=not replay)
    try:
        yield llm
    finally:
        llm.embeddings.save()


def _write_jsonl(path: Path | None, records: list) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), sort_keys=True) + "\n")
    click.echo(f"wrote {len(records)} record(s) to {path}", err=True)


def _llm_options(f):
    f = click.option(
        "--probe",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        help="A folder of captioned images: compute the pairs with the model itself (any registered model; cached under .vse-cache/) instead of reading the fixtures.",
    )(f)
    f = click.option(
        "--port",
        type=int,
        default=None,
        help="Port for the local server started when no endpoint is named (default: any free port).",
    )(f)
    f = click.option(
        "--replay", is_flag=True, help="Replay the cassette offline instead of calling the LLM (no network, no key)."
    )(f)
    f = click.option(
        "--cassette",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Where live calls are recorded (default: {DEFAULT_CASSETTES}/NEURON__VERB.json.gz).",
    )(f)
    f = click.option(
        "--api",
        type=click.Choice(APIS),
        default="completions",
        show_default=True,
        help="completions: plain few-shot text (best for small local models); chat: messages, for chat-only endpoints.",
    )(f)
    f = click.option("--model", default=None, help="Model name sent to the server (default: VSE_MODEL or 'local').")(f)
    f = click.option(
        "--base-url",
        default=None,
        help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8765/v1 (default: VSE_BASE_URL / OPENAI_BASE_URL; neither: start the local server).",
    )(f)
    f = click.option(
        "--seed", type=int, default=0, show_default=True, help="Root seed of every random draw and LLM sampling seed."
    )(f)
    return f


def _in_flight_option(f):
    return click.option(
        "--in-flight",
        type=click.IntRange(min=1),
        default=None,
        help="One-item predictions sent at once (default: the local server's slots; 1 for an endpoint that does not report them). Results do not depend on it.",
    )(f)


def _bullets(helps: dict[str, str]) -> str:
    return "\n".join(f"  {k}: {v}" for k, v in helps.items())


@click.command(
    help=f"""Explain a neuron (MODEL/LAYER/INDEX) in one sentence.

\b
Methods:
{_bullets(METHOD_HELP)}

Without --probe the pairs come from the committed fixtures (EfficientNet-Lite0 on the Tux Paint
stamps). One JSONL record per explanation goes to --out, with how it was made (provenance)."""
)
@click.argument("neuron")
@click.option("--method", type=click.Choice(METHODS), required=True, help="Which pairs the LLM reads (see above).")
@click.option(
    "--polarity",
    type=click.Choice(POLARITIES),
    default="positive",
    show_default=True,
    help="positive: the pairs as they are; negative: flipped (what the neuron works against); both: signed -10..10.",
)
@click.option(
    "--n",
    "n",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Explanations to draw (best of N is picked by `vse score`).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append one JSONL record per explanation here.",
)
@_llm_options
def explain(neuron, method, polarity, n, out, seed, base_url, model, api, cassette, replay, port, probe):
    from vse.cli.preflight import check_neuron, check_writable
    from vse.data.loader import Source
    from vse.method.pipeline import explain_neuron

    # A malformed id, a unit out of range, missing pairs, a bad probe folder or missing weights: said
    # first, before any server starts or any model runs over the probe set.
    check_neuron(neuron, methods=[method], probe=probe)
    check_writable(out)

    cassette = cassette or DEFAULT_CASSETTES / f"{_slug(neuron)}__explain-{method}-{polarity}-{api}.json.gz"
    if not replay:
        check_writable(cassette, "--cassette")
    with _llm(base_url, model, api, cassette, replay, port) as llm:
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
    _write_jsonl(out, records)


@click.command(
    help=f"""Score explanations of a neuron (MODEL/LAYER/INDEX) on a target with Algorithm 1.

\b
Targets:
{_bullets(TARGET_HELP)}

\b
Protocols (which items a pass predicts):
  uniform: random items (the paper's); top-and-random: the top half plus random (Bills et al.);
  top-and-random-heldout: only top items the explainer never saw, plus random;
  all: every item once (exact, no interval).

Prints `score ± half-width (passes)` beside Acc/MSE/MAE for each explanation."""
)
@click.argument("neuron")
@click.option("--target", type=click.Choice(TARGET_KINDS), required=True, help="Which values to predict (see above).")
@click.option(
    "--explanation", default=None, help="An explanation to score (completes 'the main thing this neuron does is find')."
)
@click.option(
    "--from",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Score every record of a JSONL file that `vse explain` wrote.",
)
@click.option(
    "--polarity",
    type=click.Choice(POLARITIES),
    default="positive",
    show_default=True,
    help="Score on the positive, flipped or signed values.",
)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default="recall-free",
    show_default=True,
    help="recall-free: every item the explainer cannot have seen, once (what the simulator study recommends); "
    "uniform: the paper's Algorithm 1.",
)
@click.option(
    "--prior-corrected", is_flag=True, help="Subtract a neutral explanation's predictions before the correlation."
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="embedding",
    show_default=True,
    help="Simulator. embedding: cosine of sentence embeddings, no LLM (what the simulator study recommends for "
    "comparing and selecting explanations); one: the paper's LLM simulator, one item per call, expected values.",
)
@click.option("--n-items", type=click.IntRange(min=2), default=50, show_default=True, help="Items per pass.")
@click.option(
    "--max-passes", type=click.IntRange(min=3), default=15, show_default=True, help="Algorithm 1's cap on passes."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append one JSONL record per scored explanation here.",
)
@_llm_options
@_in_flight_option
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
    from vse.cli.preflight import check_neuron, check_writable
    from vse.data.loader import Source
    from vse.method.pipeline import score_explanation

    check_neuron(neuron, targets=[target], probe=probe)
    check_writable(out)
    from vse.core.stats import StopRule
    from vse.method.records import ExplanationRecord
    from vse.method.score import ScoreConfig

    if (explanation is None) == (from_file is None):
        raise click.UsageError("give exactly one of --explanation TEXT or --from FILE")
    if explanation is not None:
        todo = [(explanation, "user", None, polarity)]
    else:
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
            todo.append((rec.explanation, rec.method, rec.seed, rec.polarity))
    config = ScoreConfig(
        mode=mode,
        api=api,
        protocol=protocol,
        prior_corrected=prior_corrected,
        n_items=n_items,
        stop=StopRule(max_runs=max_passes),
    )
    cassette = cassette or DEFAULT_CASSETTES / f"{_slug(neuron)}__score-{target}-{polarity}-{protocol}-{api}.json.gz"
    if not replay:
        check_writable(cassette, "--cassette")
    records = []
    with (
        _embedding_llm(cassette, replay, api)
        if mode == "embedding"
        else _llm(base_url, model, api, cassette, replay, port, in_flight)
    ) as llm:
        for text, method, e_seed, pol in todo:
            rec = score_explanation(
                neuron,
                text,
                target,
                llm=llm,
                config=config,
                polarity=polarity,
                method=method,
                explanation_seed=e_seed,
                seed=seed,
                progress=sys.stderr.isatty(),
                source=Source(probe) if probe else Source(),
            )
            records.append(rec)
            click.echo(f"{rec.line()}  [{method}] {text}")
    if len(records) > 1:
        best = max(records, key=lambda r: r.mean)
        spread = ", ".join(f"{r.mean:.1f}" for r in records)
        click.echo(
            f"best of {len(records)}: {best.mean:.2f} ± {best.half_width:.2f} ({best.explanation}); all: {spread}"
        )
    if not replay:
        where = (
            cassette.with_name(cassette.name.removesuffix(".json.gz") + ".embeddings.npz")
            if mode == "embedding"
            else cassette
        )
        click.echo(f"recorded to {where} (replay: the same command with --replay)", err=True)
    _write_jsonl(out, records)


@click.command(
    help="""Matched vs mismatched: does the score tell each neuron's own explanation from the others'?

For the given units of MODEL/LAYER, each method explains every unit (LLM methods see the even
ranks of the top pairs, so the held-out protocol is fair), every explanation is predicted once on
a shared item pool per target, and every protocol is read from those predictions: matched and
mismatched means, wins, mean rank of the own explanation, paired t and Wilcoxon p-values, and the
number of units the effect needs for p < 0.01. One cassette per unit under --cassettes."""
)
@click.argument("model_layer", metavar="MODEL/LAYER")
@click.option("--units", required=True, help="Comma-separated unit indices (at least 3).")
@click.option(
    "--methods", default="weight-label,clip-dissect", show_default=True, help="Comma-separated explanation methods."
)
@click.option(
    "--targets", default="weight-label,caption-activation", show_default=True, help="Comma-separated target kinds."
)
@click.option(
    "--n-top", type=click.IntRange(min=2), default=6, show_default=True, help="Top items of each unit in the pool."
)
@click.option(
    "--n-random", type=click.IntRange(min=2), default=40, show_default=True, help="Shared random items in the pool."
)
@click.option(
    "--cassettes",
    "cassette_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CASSETTES / "validate",
    show_default=True,
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the summary (JSON) here."
)
@click.option(
    "--rank-by",
    type=click.Choice(["raw", "scaled"]),
    default="raw",
    show_default=True,
    help="How the explainer orders a unit's top pairs: raw values, or the 0..10 integers with ties by index "
    "(how studies recorded before issue 17 did it, e.g. the power study).",
)
@_llm_options
@_in_flight_option
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
    from vse.llm.client import ClientConfig
    from vse.method.explain import ExplainConfig
    from vse.studies.cassette_llms import CassetteLLMs, Paths
    from vse.studies.matched import MatchedStudy, run_matched_study, summary_json

    name, sep, layer = model_layer.partition("/")
    if not sep or "/" in layer:
        raise click.UsageError(f"expected MODEL/LAYER, got {model_layer!r}")
    try:
        unit_list = tuple(int(u) for u in units.split(","))
    except ValueError:
        raise click.UsageError(f"--units must be comma-separated integers, got {units!r}") from None
    if len(set(unit_list)) < 3:
        raise click.UsageError("--units needs at least 3 different units (a paired test over units)")
    if probe is not None or cassette is not None:
        raise click.UsageError("validate works from the fixtures and writes one cassette per unit under --cassettes")
    from vse.cli import preflight

    method_list, target_list = methods.split(","), targets.split(",")
    if "weight-explanation" in method_list:
        preflight.check_weight_explanation(layer)
    preflight.check_units(name, layer, unit_list, preflight.kinds_for(method_list, target_list))
    preflight.check_writable(out)
    study = MatchedStudy(
        name=cassette_dir.name,
        model=name,
        layer=layer,
        units=unit_list,
        n_neurons=len(unit_list),
        methods=tuple(methods.split(",")),
        targets=tuple(targets.split(",")),
        n_top=n_top,
        n_random=n_random,
        seed=seed,
        explain=ExplainConfig(shown="heldout", rank_by=rank_by),
    )
    with contextlib.ExitStack() as stack:
        if replay:
            config = ClientConfig(base_url="http://replay.invalid/v1", max_retries=0)
        else:
            from vse.cli.preflight import check_local_server
            from vse.llm.server import endpoint_or_local

            if base_url is None and not os.environ.get("VSE_BASE_URL") and not os.environ.get("OPENAI_BASE_URL"):
                check_local_server()  # before the model file is assembled
            base_url = endpoint_or_local(stack, base_url, port)
            config = ClientConfig.from_env(base_url=base_url, model=model)
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


def register(group: click.Group) -> None:
    group.add_command(explain)
    group.add_command(score)
    group.add_command(validate)
