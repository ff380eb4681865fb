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
import zipfile
from pathlib import Path

import click
import numpy as np

from vse.atomic import write_atomic
from vse.cli import preflight
from vse.core.target import parse_neuron_id
from vse.core.vocab import Polarity, choices
from vse.errors import UserError
from vse.vision import activations, captions, datasets, fixtures, models, weights
from vse.vision import dissect as D
from vse.vision.models import VisionModelError, WeightsMissingError


def _probe(spec: str, include_svg: bool):
    if spec == "tuxpaint":
        return datasets.tuxpaint(include_svg=include_svg)
    return datasets.load_folder(spec)


def _fail(exc: Exception):
    raise click.ClickException(str(exc)) from exc


def _portable(path: Path) -> str:
    """A folder as a run record keeps it: relative to the current directory when inside it, else its
    name; never an absolute path (a user's home folder must not end up in a committed file)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return path.name


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
    for name, width in _widths(loaded).items():
        click.echo(f"{name}\t{width}")


def _widths(loaded) -> dict[str, str]:
    """Every layer's width from one forward pass on the dummy input ("-" where the output is not a tensor)."""
    import torch  # here, not at the top: `vse --help` must not load torch

    names = loaded.layer_names()
    outputs: dict[str, object] = {}
    modules = dict(loaded.module.named_modules())

    def keep(name):
        def hook(_module, _args, out):  # returns None: a hook that returns a value replaces the output
            outputs.setdefault(name, out)

        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in names if n in modules]
    try:
        with torch.inference_mode():
            loaded.module(loaded.dummy_input())
    finally:
        for h in handles:
            h.remove()
    widths = {}
    for n in names:
        out = outputs.get(n)
        if n not in modules:  # an alias (e.g. an input hook): ask the model, it knows how
            try:
                widths[n] = str(loaded.layer_width(n))
            except Exception:  # noqa: BLE001 - a listing must not fail on one odd layer
                widths[n] = "-"
        elif isinstance(out, torch.Tensor) and out.dim() >= 2:
            widths[n] = str(out.shape[1] if out.dim() == 4 else out.shape[-1])
        else:
            widths[n] = "-"
    return widths


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
    # The cheap checks first (issue 20): the probe folder, then the weights on disk, then the model.
    if probe_spec != "tuxpaint":
        preflight.check_probe(probe_spec)
    if not download:
        preflight.check_weights(model_name)
    try:
        probe = _probe(probe_spec, svg)
        loaded = models.load_model(model_name, download=download)
        for layer in layers:
            loaded.hook_point(layer)
    except (VisionModelError, WeightsMissingError, FileNotFoundError) as exc:
        _fail(exc)
    # One pass, on --device.
    result = activations.extract_activations(
        loaded, probe, layers, batch_size=batch_size, pooling=pooling, num_workers=workers, device=device
    )
    skipped = list(probe.skipped) + list(result.skipped)
    _say_skipped(skipped)
    if not result.image_ids:
        # A (0, units) array would only make `dissect` fail later, far from the cause.
        raise UserError(f"no readable image in {probe_spec}: {len(skipped)} skipped, nothing written")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        activations.save_activations(out / f"activations_{layer}.npz", result, layer)
    caps = {it.id: it.caption for it in probe.items}
    _write_text(
        out / "probe.json",
        json.dumps([{"id": i, "caption": caps[i]} for i in result.image_ids], indent=1, ensure_ascii=False) + "\n",
    )
    record = probe.record() | {
        "model": model_name,
        "pooling": pooling,
        "n_images": len(result.image_ids),
        "layers": result.hook_points,
    }
    record["root"] = _portable(probe.root)
    # The reasons quote the image paths (from PIL too): write them under the portable root.
    for absolute in {str(probe.root), str(Path(probe.root).resolve())}:
        skipped = [s | {"reason": str(s.get("reason", "")).replace(absolute, record["root"])} for s in skipped]
    record["skipped"] = skipped
    _write_text(out / "run_record.json", json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    click.echo(f"{len(result.image_ids)} images, {len(skipped)} skipped -> {out}")


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
        labels = [f"{model_name}/{target}/{i}" for i in range(m.weights.shape[1])]
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
        probe = _probe(probe_spec, svg)
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
    if concepts != "wordfreq20k" and not Path(concepts).is_file():
        raise click.BadParameter(
            f"concept file {concepts} does not exist (give a word list, one per line, or 'wordfreq20k')",
            param_hint="--concepts",
        )
    try:
        data = activations.load_activations_npz(acts_file)
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        # np.load says "pickled data" of any file that is not an .npz: name the file and what it should be.
        raise UserError(
            f"{acts_file} is not an activations file written by `vse activations` "
            f"({type(exc).__name__}: {str(exc)[:120]})"
        ) from None
    ids = data["image_ids"]
    if len(ids) == 0:
        raise UserError(f"{acts_file} holds no images: rerun `vse activations` on a folder with readable images")
    words = D.wordfreq_concepts(20000) if concepts == "wordfreq20k" else D.read_concepts(concepts)
    if backend == "text":
        if not captions_file:
            raise click.UsageError("--backend text needs --captions")
        table = datasets.read_captions_file(Path(captions_file))
        missing = [i for i in ids if not table.get(i)]
        if missing:
            raise click.ClickException(
                f"{len(missing)} image ids have no caption in {captions_file}, e.g. {missing[:3]}"
            )
        sim = D.caption_similarity([table[i] for i in ids], words, progress=True)
        backend_doc = D.TEXT_BACKEND
    else:
        if not clip_path:
            raise click.UsageError("--backend clip needs --clip PATH")
        probe = _probe(probe_spec, True)
        by_id = {it.id: it for it in probe.items}
        model, processor = D.load_clip(clip_path)
        sim = D.clip_similarity([probe.open(by_id[i]) for i in ids], words, model, processor, progress=True)
        backend_doc = f"clip: {clip_path}"
    params = D.SoftWPMIParams(top_k=top_k)
    labels, _ = D.dissect(sim, np.asarray(data["activations"], dtype=np.float32), words, params)
    _write_text(
        out,
        json.dumps(
            {
                "model": data["model"],
                "layer": data["layer"],
                "n_images": len(ids),
                "backend": backend_doc,
                "concept_set": {"name": concepts, "size": len(words)},
                "params": params.__dict__,
                "units": [{"unit": u.unit, "label": u.label, "score": round(u.score, 4)} for u in labels],
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
    )
    click.echo(f"{len(labels)} units labelled -> {out}", err=True)


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
