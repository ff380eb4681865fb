"""Vision commands of the ``vse`` CLI (thin: parse options, call one library function, save/print).

* ``vse layers``        list a model's layer names (and a layer's width)
* ``vse activations``   pooled activations of layers on a probe set -> ``activations_<layer>.npz``, probe.json,
                        run_record.json
* ``vse weight-pairs``  Weight-Label (or Weight-CLIP) pairs of one neuron ``MODEL/LAYER/INDEX``
* ``vse weight-matrix`` the whole weight matrix of a layer to the classes (eq. 1) or to a later layer -> .npz
* ``vse captions``      captions of a probe set: its sidecar captions, or BLIP (``--blip PATH``)
* ``vse dissect``       CLIP-Dissect labels of a layer from an activations file (text or CLIP backend)
* ``vse fixtures``      regenerate ``fixtures/`` from the real stamps and model (``make fixtures``)

Heavy libraries (torch, transformers) are imported inside the commands so ``vse --help`` stays fast; the
vse.vision modules themselves import them lazily, and are imported here as modules (tests swap
``models.load_model`` and ``activations.extract_activations``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vse.atomic import write_atomic
from vse.cli import preflight
from vse.core.target import neuron_id, parse_neuron_id
from vse.core.vocab import Polarity, choices
from vse.vision import activations, captions, datasets, fixtures, models, weights
from vse.vision import dissect as D
from vse.vision.models import VisionModelError, WeightsMissingError


def _fail(exc: Exception):
    raise click.ClickException(str(exc)) from exc


def _say_skipped(skipped: list[dict]) -> None:
    """How many images were skipped and why, on stderr (the full list is in the run record)."""
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for s in skipped:
        # An unreadable image's reason reads "PATH: ErrorType: message": group by the error type.
        parts = str(s.get("reason", "?")).split(": ")
        key = parts[1] if len(parts) >= 3 else parts[-1][:60]
        reasons[key] = reasons.get(key, 0) + 1
    detail = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    click.echo(f"{len(skipped)} image(s) skipped ({detail}); see run_record.json", err=True)


def _write_text(path: str | Path, text: str) -> None:
    write_atomic(path, text)  # creates missing parent folders


@click.command("layers")
@click.argument("model_arg", metavar="[MODEL]", required=False)
@click.option("--model", "model_opt", default=None, help="Same as MODEL (default: efficientnet_lite0).")
@click.option("--layer", default=None, help="Print this layer's width and what tensor it is.")
@click.option("--download", is_flag=True, help="Allow torchvision to download missing weights.")
def layers_cmd(model_arg, model_opt, layer, download):
    """List MODEL's layer names (aliases first, then every module) with their widths (units)."""
    if model_arg and model_opt and model_arg != model_opt:
        raise click.UsageError(f"MODEL {model_arg!r} and --model {model_opt!r} disagree; give one")
    model_name = model_arg or model_opt or "efficientnet_lite0"
    try:
        loaded = models.load_model(model_name, download=download)
        if layer:
            point = loaded.hook_point(layer)
            click.echo(f"{model_name}/{layer}: {loaded.layer_width(layer)} units; {point.doc}")
            return
    except (VisionModelError, WeightsMissingError) as exc:
        _fail(exc)
    for name, width in models.layer_widths(loaded).items():
        click.echo(f"{name}\t{width}")


def _device(value: str) -> str:
    """--device checked before any model loads, so a missing GPU is a one-line error."""
    try:
        activations.resolve_device(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@click.command("activations")
@click.option("--model", "model_name", default="efficientnet_lite0", show_default=True)
@click.option(
    "--probe",
    "probe_spec",
    default="tuxpaint",
    show_default=True,
    help="'tuxpaint' or a folder of images (captions from captions.tsv/.json or <stem>.txt).",
)
@click.option("--layer", "layers", multiple=True, default=("_conv_head",), show_default=True)
@click.option(
    "--pooling",
    type=click.Choice(["mean", "max"]),
    default="mean",
    show_default=True,
    help="Conv maps: spatial mean (default) or max. ViT blocks always give the class token.",
)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--workers",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="DataLoader worker processes for decoding.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    callback=lambda _ctx, _param, value: _device(value),
    help="Where the forward pass runs: cpu or cuda[:N].",
)
@click.option("--svg/--no-svg", default=True, show_default=True, help="Tux Paint: render SVG-only stamps (cairosvg).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--download", is_flag=True, help="Allow torchvision to download missing weights.")
def activations_cmd(model_name, probe_spec, layers, pooling, batch_size, workers, device, svg, out_dir, download):
    """Extract pooled activations of LAYERs on a probe set to OUT/activations_<layer>.npz (float16)."""
    # The cheap checks first, so a mistake fails in a second, not after a model load or a pass over the
    # probe set: the probe folder, then the weights on disk, then the model.
    if probe_spec != "tuxpaint":
        preflight.check_probe(probe_spec)
    if not download:
        preflight.check_weights(model_name)
    try:
        probe = datasets.open_probe(probe_spec, include_svg=svg)
        loaded = models.load_model(model_name, download=download)
        for layer in layers:
            loaded.hook_point(layer)
    except (VisionModelError, WeightsMissingError, FileNotFoundError) as exc:
        _fail(exc)
    run = activations.extract_run(
        loaded,
        probe,
        probe_spec,
        layers,
        batch_size=batch_size,
        pooling=pooling,
        num_workers=workers,
        device=device,
        model=model_name,
    )
    _say_skipped(run.skipped)
    out = run.write(out_dir)
    click.echo(f"{len(run.result.image_ids)} images, {len(run.skipped)} skipped -> {out}")


def _matrix(model_name, layer, target, download):
    try:
        loaded = models.load_model(model_name, download=download)
        return loaded, weights.weights_to(loaded, layer, target)
    except (VisionModelError, WeightsMissingError, weights.ProductUndefined) as exc:
        _fail(exc)


@click.command("weight-pairs")
@click.argument("neuron")
@click.option(
    "--sign",
    type=click.Choice(choices(Polarity)),
    default=Polarity.POSITIVE.value,
    show_default=True,
    help="positive: zero the negatives (paper default); negative: flipped (App. C.3.1); both: signed.",
)
@click.option("--target", default=None, help="A later layer (Weight-CLIP); default: the classes (Weight-Label).")
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="With --target: a dissect JSON naming the target's units.",
)
@click.option(
    "--top", default=25, show_default=True, type=click.IntRange(min=1), help="How many pairs to print (largest first)."
)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write all pairs here.")
@click.option("--download", is_flag=True)
def weight_pairs_cmd(neuron, sign, target, labels_file, top, json_out, download):
    """Weight-Label pairs of NEURON (MODEL/LAYER/INDEX), e.g. efficientnet_lite0/_conv_head/489."""
    try:
        model_name, layer, index = parse_neuron_id(neuron)
    except ValueError as exc:
        _fail(exc)
    loaded, m = _matrix(model_name, layer, target, download)
    try:
        loaded.check_neuron(layer, index)
    except VisionModelError as exc:
        _fail(exc)
    if target is None:
        labels = loaded.class_names
    elif labels_file:
        labels = _dissect_labels(labels_file, m.weights.shape[1], f"{model_name}/{target}")
    else:
        labels = [neuron_id(model_name, target, i) for i in range(m.weights.shape[1])]
    pairs = weights.weight_label_pairs(m, index, labels, sign)
    for lab, w in sorted(pairs, key=lambda p: -abs(p[1]))[:top]:
        click.echo(f"{w:+.5f}\t{lab}")
    if json_out:
        _write_text(
            json_out,
            json.dumps(
                {"neuron": neuron, "sign": sign, "target": m.target, "chain": m.describe(), "pairs": pairs}, indent=1
            )
            + "\n",
        )


def _dissect_labels(path: str, n_units: int, target: str) -> list[str]:
    """The unit labels of a `vse dissect` JSON; anything else is an error naming the file."""
    try:
        units = json.loads(datasets.read_utf8(Path(path)))["units"]
        labels = [str(u["label"]) for u in units]
    except (ValueError, KeyError, TypeError) as exc:
        raise click.BadParameter(
            f"{path} is not a `vse dissect` JSON with units[].label ({type(exc).__name__}: {exc})",
            param_hint="--labels",
        ) from None
    if len(labels) != n_units:
        raise click.BadParameter(
            f"{path} labels {len(labels)} units, but {target} has {n_units}", param_hint="--labels"
        )
    return labels


@click.command("weight-matrix")
@click.option("--model", "model_name", default="efficientnet_lite0", show_default=True)
@click.option("--layer", required=True)
@click.option("--target", default=None, help="A later layer; default: the classes.")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--download", is_flag=True)
def weight_matrix_cmd(model_name, layer, target, out, download):
    """Save the raw signed weights [units, outputs] from LAYER to the classes (eq. 1) or to TARGET."""
    _, m = _matrix(model_name, layer, target, download)
    weights.save_weight_matrix(out, m)
    click.echo(f"{m.weights.shape[0]}x{m.weights.shape[1]}: {m.describe()} -> {out}")


@click.command("captions")
@click.option("--probe", "probe_spec", default="tuxpaint", show_default=True)
@click.option("--blip", default=None, help="A BLIP captioning checkpoint (folder or hub name) to caption with.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--svg/--no-svg", default=True, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="JSON list of {id, caption}.")
def captions_cmd(probe_spec, blip, batch_size, svg, out):
    """Captions of a probe set: its sidecar captions, or generated by BLIP (--blip)."""
    try:
        probe = datasets.open_probe(probe_spec, include_svg=svg)
        if blip:
            caps = captions.caption_probe(probe, captions.BlipCaptioner.from_pretrained(blip, batch_size=batch_size))
        else:
            caps = captions.sidecar_captions(probe.verify())  # unreadable images are counted, not listed as captioned
    except FileNotFoundError as exc:
        _fail(exc)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    captions.write_captions(out, caps)
    _say_skipped(probe.skipped)
    if probe.skipped:
        Path(out).with_suffix(".skipped.json").write_text(json.dumps(probe.skipped, indent=1) + "\n", encoding="utf-8")
    n = sum(1 for c in caps if c["caption"])
    click.echo(f"{n} captions ({len(caps) - n} missing, {len(probe.skipped)} unreadable) -> {out}", err=True)


@click.command("dissect")
@click.option(
    "--activations",
    "acts_file",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="An activations_<layer>.npz from `vse activations`.",
)
@click.option(
    "--captions",
    "captions_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Text backend: captions (probe.json / captions.json / .tsv) for the file's image ids.",
)
@click.option(
    "--backend",
    type=click.Choice(["text", "clip"]),
    default="text",
    show_default=True,
    help="text: caption-concept MiniLM similarity, a stand-in for CLIP; clip: CLIP via transformers.",
)
@click.option("--clip", "clip_path", default=None, help="CLIP checkpoint (folder or hub name) for --backend clip.")
@click.option("--probe", "probe_spec", default="tuxpaint", show_default=True, help="Images for --backend clip.")
@click.option("--concepts", default="wordfreq20k", show_default=True, help="'wordfreq20k' or a word-list file.")
@click.option(
    "--top-k",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="soft-WPMI top-k images (capped at the image count).",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def dissect_cmd(acts_file, captions_file, backend, clip_path, probe_spec, concepts, top_k, out):
    """CLIP-Dissect label for every unit in an activations file."""
    if concepts != D.WORDFREQ and not Path(concepts).is_file():
        raise click.BadParameter(
            f"concept file {concepts} does not exist (give a word list, one per line, or 'wordfreq20k')",
            param_hint="--concepts",
        )
    if backend == "text" and not captions_file:
        raise click.UsageError("--backend text needs --captions")
    if backend == "clip" and not clip_path:
        raise click.UsageError("--backend clip needs --clip PATH")
    try:
        record = D.dissect_file(
            acts_file,
            concepts=concepts,
            captions_file=captions_file if backend == "text" else None,
            clip_path=clip_path if backend == "clip" else None,
            probe_spec=probe_spec,
            top_k=top_k,
        )
    except D.MissingCaptions as exc:
        _fail(exc)
    _write_text(out, record.dumps())
    click.echo(f"{len(record.units)} units labelled -> {out}", err=True)


@click.command("fixtures")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Default: the repository's fixtures/.")
@click.option("--svg/--no-svg", default=True, show_default=True)
@click.option(
    "--step",
    "steps",
    multiple=True,
    type=click.Choice(["weights", "probe", "dissect", "weight_clip"]),
    help="Only these steps (default: all, in order).",
)
def fixtures_cmd(out, svg, steps):
    """Regenerate fixtures/ from the real Tux Paint stamps and EfficientNet-Lite0 (see fixtures/README.md)."""
    kw = {"steps": steps} if steps else {}
    fixtures.build_fixtures(out, include_svg=svg, **kw)
    click.echo(f"fixtures written to {fixtures.fixtures_root(out)}", err=True)


COMMANDS = (layers_cmd, activations_cmd, weight_pairs_cmd, weight_matrix_cmd, captions_cmd, dissect_cmd, fixtures_cmd)


def register(group: click.Group) -> None:
    """Add the vision commands to the top-level ``vse`` group."""
    for cmd in COMMANDS:
        group.add_command(cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(click.Group(commands={c.name: c for c in COMMANDS})())
