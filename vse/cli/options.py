"""What the LLM commands (`vse explain`, `vse score`, `vse validate`, `vse reproduce`) share: their option
decorators and help texts, the endpoint they call and the `LLM` they open, and where they write."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import click

from vse.cli import preflight
from vse.core.target import Feature, feature_layer
from vse.core.vocab import Api, FeatureKind, choices
from vse.llm import server
from vse.method import defaults
from vse.method.llm import LLM

#: Where a user's live calls are recorded unless --cassette says otherwise: under the current folder's
#: vse-runs/, never among the clone's committed cassettes/ (the clone's .gitignore ignores vse-runs/).
RUNS_DIR = Path("vse-runs")
DEFAULT_CASSETTES = RUNS_DIR / "cassettes"

#: `vse explain --help`: what each explanation method reads.
METHOD_HELP = {
    "caption-activation": "the LLM reads the captions of the images the neuron responds to most",
    "weight-label": "the LLM reads the classes the neuron's weights support most (deeper layers: the eq. 1 product)",
    "weight-clip": "the LLM reads the next layer's units it feeds most, named by their CLIP-Dissect labels",
    "weight-explanation": "as weight-clip, the next layer's units named by vse's own explanations of them",
    "clip-dissect": "CLIP-Dissect's one-concept label, used as the explanation (the baseline)",
}
#: `vse score --help`: what each target's values are and what they are predicted from.
TARGET_HELP = {
    "caption-activation": "activations on the probe images, predicted from their captions",
    "weight-label": "weights to the classes, predicted from the class names",
    "weight-clip": "weights to the next layer's units, predicted from their CLIP-Dissect labels",
}


def bullets(helps: dict[str, str]) -> str:
    """``{name: help}`` as an indented list for a command's help (under a ``\\b`` line, so click keeps it)."""
    return "\n".join(f"  {k}: {v}" for k, v in helps.items())


def endpoint(stack: contextlib.ExitStack, base_url: str | None, port: int | None) -> str | None:
    """The base URL to call: the one named (option or environment), else vse's local server started
    inside ``stack``, once `preflight.check_local_server` has said it can be built (before the model file
    is assembled, a 1.1 GB download)."""
    if base_url is None and not os.environ.get("VSE_BASE_URL") and not os.environ.get("OPENAI_BASE_URL"):
        preflight.check_local_server()
    return server.endpoint_or_local(stack, base_url, port)


def embeddings_path(cassette: Path) -> Path:
    """Where the embedding simulator keeps its embeddings: next to the cassette it would have used."""
    return cassette.with_name(cassette.name.removesuffix(".json.gz") + ".embeddings.npz")


@contextlib.contextmanager
def open_llm(
    base_url: str | None,
    model: str | None,
    api: str,
    cassette: Path,
    replay: bool,
    port: int | None,
    in_flight: int | None = None,
) -> Iterator[LLM]:
    """An `LLM` recording live calls to ``cassette``, or replaying it offline with ``replay``."""
    with contextlib.ExitStack() as stack:
        if replay:
            if not cassette.exists():
                raise click.ClickException(
                    f"cassette {cassette} does not exist: run the same command without --replay first"
                )
            base_url = base_url or "http://replay.invalid/v1"
        else:
            base_url = endpoint(stack, base_url, port)
        # A replay is bound by this process, not a server: one at a time unless asked.
        in_flight = in_flight if in_flight is not None or not replay else 1
        yield stack.enter_context(
            LLM.open(base_url, model=model, api=api, cassette=cassette, record=not replay, in_flight=in_flight)
        )


def write_jsonl(path: Path | None, records: list) -> None:
    """Append one JSON line per record to ``path`` (none: nothing), and say so on stderr."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), sort_keys=True) + "\n")
    click.echo(f"wrote {len(records)} record(s) to {path}", err=True)


def llm_options(f):
    """The options of every command that calls the LLM: endpoint, model, API, cassette, replay, seed, probe."""
    f = click.option(
        "--probe",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        help="A folder of captioned images: compute the pairs with the model itself "
        "(any registered model; cached under .vse-cache/) instead of reading the fixtures.",
    )(f)
    f = click.option(
        "--port",
        type=int,
        default=None,
        help="Port for the local server started when no endpoint is named (default: any free port).",
    )(f)
    f = click.option(
        "--replay",
        is_flag=True,
        help="Replay the cassette offline instead of calling the LLM (no network, no key).",
    )(f)
    f = click.option(
        "--cassette",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Where live calls are recorded (default: {DEFAULT_CASSETTES}/NEURON__VERB.json.gz).",
    )(f)
    f = click.option(
        "--api",
        type=click.Choice(choices(Api)),
        default=defaults.API.value,
        show_default=True,
        help="completions: plain few-shot text (best for small local models); chat: messages, for chat-only endpoints.",
    )(f)
    f = click.option(
        "--model",
        default=None,
        help="Model name sent to the server (default: VSE_MODEL or 'local').",
    )(f)
    f = click.option(
        "--base-url",
        default=None,
        help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8765/v1 "
        "(default: VSE_BASE_URL / OPENAI_BASE_URL; neither: start the local server).",
    )(f)
    f = click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Root seed of every random draw and LLM sampling seed.",
    )(f)
    return f


def in_flight_option(f):
    """``--in-flight``: how many requests (one-item predictions, best-of-N candidates) go to the server at once."""
    return click.option(
        "--in-flight",
        type=click.IntRange(min=1),
        default=None,
        help="Requests sent at once: one-item predictions, and the candidates of best of N (default: two per "
        "slot of the local server, so that each slot has the next one waiting; 1 for an endpoint that "
        "does not report its slots). A replay gives the same results at any value; a live server's logits depend on "
        "what it batches together, so two live runs may differ in the last digits of a score.",
    )(f)


def feature_options(f):
    """``--sae FILE`` / ``--directions FILE``: a command over MODEL/LAYER works on the layer's SAE latents or
    directions instead of its channels (`feature_layer_of`; docs/sae.md)."""
    f = click.option(
        "--directions",
        "directions_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The rows of this .npy/.pt file (directions in the layer's channel space) instead of the channels; "
        "units MODEL/LAYER/dir:FILE/INDEX.",
    )(f)
    return click.option(
        "--sae",
        "sae_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The latents of this SAE file (`vse sae train`) instead of the channels; units "
        "MODEL/LAYER/sae:FILE/INDEX (docs/sae.md).",
    )(f)


def feature_layer_of(layer: str, sae_file: Path | None, directions_file: Path | None) -> str:
    """``LAYER``, or ``LAYER/sae:FILE`` / ``LAYER/dir:FILE`` (`vse.core.target.feature_layer`) for --sae or
    --directions."""
    if sae_file is not None and directions_file is not None:
        raise click.UsageError("--sae and --directions name different units: give one of them")
    if sae_file is not None:
        return feature_layer(layer, Feature(FeatureKind.SAE, sae_file.as_posix()))
    if directions_file is not None:
        return feature_layer(layer, Feature(FeatureKind.DIRECTION, directions_file.as_posix()))
    return layer
