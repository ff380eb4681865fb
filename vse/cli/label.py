"""``vse label MODEL/LAYER``: explain (and optionally score) every unit of a layer; see docs/labelling.md.

Thin: parses and checks the options, then calls `vse.studies.label_work.label_layer`, which builds
the per-unit work from `vse.method.pipeline` and runs it with concurrency, resume, sharding, a progress
bar and a summary. ``--dry-run`` prices the run from the requests `vse.method.plan.plan_requests` says
it would send (`vse.llm.pricing`), calling nothing. ``--batch``, ``--batch-import`` and ``--replay`` work from
the run's cassette (`vse.studies.label_batch`): the requests it lacks as a Batch API file, the output's replies
into it, and the run finished offline from it.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from vse.cli import preflight
from vse.cli.options import feature_layer_of, feature_options
from vse.core.target import neuron_id, split_layer
from vse.core.vocab import PROBE_KINDS, TARGET_KINDS, Api, Kind, Method, Mode, choices
from vse.data import loader
from vse.data.loader import Source, live_pairs
from vse.llm.cassettes import use_cassette
from vse.llm.client import ClientConfig, LLMClient
from vse.llm.pricing import dry_run, paper_cost
from vse.method import defaults, plan
from vse.method.explain import ExplainConfig
from vse.studies import label_batch, label_work
from vse.studies.layer_labelling import RunStopped, parse_shard, per_thread, shard_units


def parse_units(text: str | None, width: int | None) -> list[int]:
    """``"A:B"`` -> ``[A, B)``; ``None`` -> every unit of a layer ``width`` wide."""
    if text is None:
        if width is None:
            raise ValueError("the layer's width is unknown: give --units A:B")
        return list(range(width))
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--units must be A:B with integers (units A to B-1): {text!r}") from None
    if not 0 <= a < b:
        raise ValueError(f"--units A:B needs 0 <= A < B: {text!r}")
    if width is not None and b > width:
        raise ValueError(f"--units {text}: the layer has {width} units (0..{width - 1})")
    return list(range(a, b))


@click.command("label")
@click.argument("model_layer", metavar="MODEL/LAYER")
@click.option(
    "--method",
    required=True,
    type=click.Choice(choices(Method)),
    help="Explanation method (see `vse explain --help`).",
)
@click.option(
    "--api",
    type=click.Choice(choices(Api)),
    default=defaults.API.value,
    show_default=True,
    help="The endpoint every call uses.",
)
@click.option("--units", "units_spec", default=None, metavar="A:B", help="Units A..B-1 (default: the whole layer).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Concurrent units (threads; one LLM client each).",
)
@click.option(
    "--in-flight",
    type=click.IntRange(min=1),
    default=None,
    help="With --score: one-item predictions each worker sends at once (default: what vse's local server says "
    "it takes, two per slot, so each slot has its next request waiting; a server's slots when it reports only "
    "those; 1 for an endpoint that reports neither). Results do not depend on it.",
)
@click.option("--score/--no-score", default=False, show_default=True, help="Also score each explanation.")
@click.option(
    "--simulator",
    type=click.Choice([Mode.EMBEDDING.value, Mode.ONE.value]),
    default=defaults.SIMULATOR.value,
    show_default=True,
    help="With --score: embedding = sentence-embedding cosine over every item the explainer cannot have seen "
    "(no LLM calls; what the simulator study recommends; embeddings kept in OUT.embeddings.npz); "
    "one = the paper's LLM simulator with Algorithm 1.",
)
@click.option(
    "--target",
    default=None,
    type=click.Choice(choices(TARGET_KINDS)),
    help="What --score simulates "
    "(default: the method's own pairs; weight-label for clip-dissect and weight-explanation).",
)
@click.option(
    "--n",
    "n_explanations",
    type=click.IntRange(min=1),
    default=defaults.N_EXPLANATIONS,
    show_default=True,
    help="Candidate explanations per unit; with --score the best is chosen on held-in items (the defaults study).",
)
@click.option("--shard", default=None, metavar="I/N", help="Only units at positions p with p % N == I.")
@click.option(
    "--base-url",
    "base_urls",
    multiple=True,
    help="OpenAI-compatible endpoint(s), repeatable; workers share them. Default: $VSE_BASE_URL or the local server.",
)
@click.option(
    "--model", "llm_model", default=None, help="Model name sent to the server (default: VSE_MODEL or 'local')."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSONL of results (default labels/MODEL__LAYER__METHOD[.shardIofN].jsonl). Rerun to resume.",
)
@click.option(
    "--probe",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A folder of captioned images: compute activations and weights with the model itself (any registered "
    "model; cached under .vse-cache/) instead of reading the fixtures. "
    "Methods/targets: caption-activation, weight-label.",
)
@click.option(
    "--device", default="cpu", show_default=True, help="Where --probe activations are computed (cpu, cuda, cuda:N)."
)
@feature_options
@click.option("--dry-run", is_flag=True, help="Print calls, tokens and price without calling anything.")
@click.option("--price-per-1k-tokens", "price", type=float, default=None, help="Price for --dry-run.")
@click.option(
    "--batch",
    "batch",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.jsonl",
    help="Write the requests the run still needs as an OpenAI Batch API input file (half price, answers "
    "within 24 h) and price them; sends nothing. See docs/labelling.md.",
)
@click.option(
    "--batch-import",
    "batch_imports",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    metavar="OUTPUT.jsonl",
    help="Add a downloaded Batch API output file's replies to the run's cassette (repeatable; importing twice "
    "adds nothing twice); then --batch again, or --replay.",
)
@click.option(
    "--cassette",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The run's cassette for --batch, --batch-import and --replay (default: next to --out, NAME.cassette.json.gz).",
)
@click.option("--replay", is_flag=True, help="Run from the cassette offline (after --batch-import): no server.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="tqdm bar on stderr.")
def label_cmd(
    model_layer,
    method,
    api,
    units_spec,
    workers,
    in_flight,
    score,
    simulator,
    target,
    n_explanations,
    shard,
    base_urls,
    llm_model,
    out,
    probe,
    device,
    sae_file,
    directions_file,
    dry_run,
    price,
    batch,
    batch_imports,
    cassette,
    replay,
    progress,
):
    """Label every unit of MODEL/LAYER (or --units A:B): one JSONL record per unit, written as it finishes."""
    model, sep, layer = model_layer.partition("/")
    if not sep or not model or not layer or "/" in layer:
        raise click.BadParameter(
            f"expected MODEL/LAYER, e.g. efficientnet_lite0/_conv_head: {model_layer!r}", param_hint="MODEL/LAYER"
        )
    layer = feature_layer_of(layer, sae_file, directions_file)
    target = target or (method if method in TARGET_KINDS else Kind.WEIGHT_LABEL.value)
    # Inputs first, so a mistake is one line and not a failure minutes in: the layer, its units, the pairs,
    # a probe folder, the model's weights, all checked before any model runs over a probe set or any LLM call.
    kinds = preflight.kinds_for([method], [target] if score else [])
    if method == Method.WEIGHT_EXPLANATION:
        preflight.check_weight_explanation(layer)
    if probe is None or split_layer(layer)[1] is not None:
        width = preflight.check_units(model, layer, [], kinds, probe=probe)
    if probe is not None:
        probe_set = preflight.check_probe(probe, captions=Kind.CAPTION_ACTIVATION in kinds)
        preflight.check_weights(model)
        if split_layer(layer)[1] is None:
            width = loader.layer_width(model, layer)
        if target == Kind.CAPTION_ACTIVATION:  # a set this small leaves nothing unseen to score on: said first
            notes = preflight.probe_size_notes(
                len(probe_set.items),
                n_shown=ExplainConfig().n_pairs,
                score=score,
                every_item=simulator == Mode.ONE and n_explanations == 1,
                n=n_explanations,
            )
            for note in notes:
                click.echo(f"vse: warning: {note}", err=True)
    try:
        shard_t = parse_shard(shard) if shard else None
        units = parse_units(units_spec, width)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    offline = _check_offline_options(dry_run, batch, batch_imports, replay, base_urls)
    source = None
    if probe is not None:
        if not offline and not dry_run:  # a dead endpoint said before the probe's activations are computed
            for url in base_urls or (None,):
                preflight.check_endpoint(url)
        source = _probe_source(model, layer, method, target if score else None, probe, device, dry_run)
    if dry_run:
        # The embedding simulator makes no LLM call: only the explanations cost anything.
        _dry_run(
            model,
            layer,
            method,
            shard_units(units, shard_t),
            n=n_explanations,
            score=score and simulator == Mode.ONE,
            target=target,
            price=price,
            api=api,
        )
        return
    if offline:
        out = Path(out) if out is not None else default_out(model, layer, method, probe, shard_t)
        cassette = cassette or label_batch.cassette_for(out)
        if batch is not None or batch_imports:
            _batch(
                model,
                layer,
                method,
                shard_units(units, shard_t),
                out=out,
                cassette=cassette,
                batch=batch,
                batch_imports=batch_imports,
                llm_model=llm_model,
                score=score,
                llm_simulator=simulator == Mode.ONE,
                target=target,
                n=n_explanations,
                api=api,
                source=source,
                price=price,
            )
            return
        if not cassette.exists():
            raise click.UsageError(f"--replay: no cassette {cassette}; fill it with --batch and --batch-import first")
        base_urls = (label_batch.REPLAY_URL,)  # never contacted: the cassette answers every request
        click.get_current_context().with_resource(use_cassette(cassette))
    # Each URL checked (and normalised) now: a bad one is one line, not a failure recorded for every unit.
    urls = [ClientConfig(base_url=u).base_url for u in base_urls] or [ClientConfig.from_env(model=llm_model).base_url]
    client_for = per_thread(lambda url: LLMClient(ClientConfig.from_env(base_url=url, model=llm_model)))
    if out is None:
        out = default_out(model, layer, method, probe, shard_t)
    try:
        summary = label_work.label_layer(
            model,
            layer,
            method,
            units,
            out=out,
            client_for=client_for,
            base_urls=urls,
            score=score,
            target=target,
            n=n_explanations,
            api=api,
            embedding_simulator=simulator == Mode.EMBEDDING,
            source=source,
            in_flight=in_flight,
            workers=workers,
            shard=shard_t,
            progress=progress,
        )
    except RunStopped as stopped:
        stopped.resume = resume_command(click.get_current_context(), out)
        raise
    if not progress:
        click.echo(summary.report(), err=True)
    if summary.failed:
        sys.exit(1)


#: The kinds a probe folder lets vse compute with the model itself (the others need the next layer's labels).


def _probe_source(model: str, layer: str, method: str, target: str | None, probe: Path, device: str, dry_run: bool):
    """The `Source` of a ``--probe`` run, its pairs computed (or read from the cache) once, here, before
    any LLM call: a probe without captions, an unknown model or layer fails now, in one line."""
    if dry_run:
        raise click.UsageError(
            "--dry-run prices from the committed fixtures; leave out --probe (the prompts have the same size)"
        )
    bad = [k for k in (method, target) if k is not None and k not in PROBE_KINDS]
    if bad:
        raise click.UsageError(
            f"with --probe, methods and targets can be {' or '.join(PROBE_KINDS)} "
            f"(the others need the next layer's labels): {', '.join(dict.fromkeys(bad))}"
        )
    source = Source(probe=probe, device=device)
    for kind in dict.fromkeys(k for k in (method, target) if k is not None):
        try:
            if split_layer(layer)[1] is not None:  # a feature's pairs (they cache its layer's channels too)
                loader.load_target(neuron_id(model, layer, 0), kind, source=source)
                continue
            live_pairs(model, layer, kind, probe.resolve(), source.cache_dir, device)
        except (ValueError, KeyError) as exc:
            raise click.ClickException(f"--probe {probe}: {exc}") from None
    return source


def resume_command(ctx: click.Context, out) -> str:
    """The command line that resumes this run: the options as given (defaults left out), --out explicit."""
    words = ["vse", "label"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words.append(str(value))
            continue
        if param.name in ("out", "dry_run", "price") or value is None or value == param.default or value == ():
            continue
        if getattr(param, "is_flag", False):
            if value:
                words.append(param.opts[0])
            elif param.secondary_opts:
                words.append(param.secondary_opts[0])
        elif getattr(param, "multiple", False):
            for v in value:
                words += [param.opts[0], str(v)]
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words + ["--out", str(out)])


def _check_offline_options(dry_run, batch, batch_imports, replay, base_urls) -> bool:
    """Whether the run works from its cassette (--batch, --batch-import, --replay); one line for a clash."""
    chosen = [name for name, on in (("--dry-run", dry_run), ("--batch", batch is not None),
                                    ("--batch-import", bool(batch_imports)), ("--replay", replay)) if on]  # fmt: skip
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} do different things: give one of them")
    offline = bool(chosen) and chosen[0] != "--dry-run"
    if offline and base_urls:
        raise click.UsageError(f"{chosen[0]} calls no server: leave out --base-url")
    return offline


def default_out(model: str, layer: str, method: str, probe: Path | None, shard_t) -> Path:
    """The label file a run writes without --out (``labels/MODEL__LAYER__METHOD[__PROBE][.shardIofN].jsonl``)."""
    suffix = f".shard{shard_t[0]}of{shard_t[1]}" if shard_t else ""
    probe_part = f"__{probe.resolve().name}" if probe is not None else ""
    base, feature = split_layer(layer)
    feature_part = f"__{feature.stem}" if feature is not None else ""
    return Path("labels") / f"{model}__{base.strip('_')}{feature_part}__{method}{probe_part}{suffix}.jsonl"


def _batch(model, layer, method, units, *, out, cassette, batch, batch_imports, llm_model, price, **run) -> None:
    """--batch / --batch-import: the run's requests collected against its cassette (`vse.studies.label_batch`),
    then written as a Batch API input file, or paired with the output files' replies."""
    collected = label_batch.collect(model, layer, method, units, out=out, cassette=cassette, llm_model=llm_model, **run)
    if batch_imports:
        try:
            report = label_batch.import_batch(collected, batch_imports, cassette)
        except ValueError as exc:  # a line that is not a Batch API output line, named with its file
            raise click.ClickException(str(exc)) from None
        lines = label_batch.import_summary(report)
    else:
        path, est = label_batch.write_batch(collected, batch, price)
        lines = label_batch.batch_summary(collected, path, est, cassette, ClientConfig.from_env(model=llm_model).model)
    for line in lines:
        click.echo(line)


def _dry_run(model, layer, method, units, *, n, score, target, price, api=Api.COMPLETIONS) -> None:
    """Price the run from `vse.method.plan.plan_requests`, the requests the prompt builders would make."""

    def requests():
        for unit in units:
            yield from plan.plan_requests(
                neuron_id(model, layer, unit), method, n=n, score=score, target=target, api=api
            )

    est = dry_run(requests(), price_per_1k=price)
    click.echo(
        f"dry run, {len(units)} units of {model}/{layer}, method {method}"
        f"{', scored against ' + target if score else ''}: {est}"
    )
    if price is not None:
        click.echo(
            f"paper's formula (Sec. 3.2.3: units x 25 calls x 2.5k tokens x price): "
            f"{paper_cost(len(units), price_per_1k=price):.2f}"
        )
    click.echo(json.dumps(est.to_json()))
