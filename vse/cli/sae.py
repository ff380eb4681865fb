"""``vse sae train MODEL/LAYER --probe DIR``: a top-k sparse autoencoder of a layer's spatial positions on a
probe set, saved as one file with its provenance (`vse.vision.sae`); its latents are then units like any
channel (``MODEL/LAYER/sae:FILE/INDEX``, ``vse label MODEL/LAYER --sae FILE``). See docs/sae.md."""

from __future__ import annotations

from pathlib import Path

import click

from vse.cli import preflight
from vse.vision import datasets, models, sae


@click.group("sae")
def sae_group() -> None:
    """Sparse autoencoders of a layer: train one, then explain its latents like channels (docs/sae.md)."""


def _probe(spec: str):
    """``tuxpaint`` (the fixtures' probe set: the Tux Paint stamps, SVGs rendered, captioned ones) or a folder."""
    if spec == "tuxpaint":
        return datasets.tuxpaint(include_svg=True).only_captioned()
    return preflight.check_probe(spec, captions=True)


@sae_group.command("train")
@click.argument("model_layer", metavar="MODEL/LAYER")
@click.option("--probe", "probe_spec", required=True, help="A folder of captioned images, or 'tuxpaint'.")
@click.option("--latents", default=sae.SaeConfig.latents, show_default=True, type=click.IntRange(min=1))
@click.option("--k", default=sae.SaeConfig.k, show_default=True, type=click.IntRange(min=1), help="Top-k.")
@click.option("--seed", default=sae.SaeConfig.seed, show_default=True, type=int)
@click.option("--epochs", default=sae.SaeConfig.epochs, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=sae.SaeConfig.batch_size, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=sae.SaeConfig.lr, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--device", default="cpu", show_default=True, help="Where the model and the SAE run: cpu or cuda[:N].")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The SAE file (default sae/MODEL__LAYER__dLATENTS_kK_sSEED.npz).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="tqdm bars on stderr.")
def train_cmd(model_layer, probe_spec, latents, k, seed, epochs, batch_size, lr, device, out, progress):
    """Train a top-k SAE on every spatial position of LAYER's map over the probe images; report dead and
    always-on latents; save it (weights, the pooled codes on the probe set, provenance) to --out."""
    model, sep, layer = model_layer.partition("/")
    if not sep or not model or not layer or "/" in layer:
        raise click.BadParameter(
            f"expected MODEL/LAYER, e.g. efficientnet_lite0/_conv_head: {model_layer!r}", param_hint="MODEL/LAYER"
        )
    config = sae.SaeConfig(latents=latents, k=k, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, device=device)
    out = out or Path("sae") / f"{model}__{layer.strip('_')}__d{latents}_k{k}_s{seed}.npz"
    # Before the pass over the probe set: the probe, the output, the library, the weights, the layer, the device.
    probe = _probe(probe_spec)
    preflight.check_writable(out)
    sae.library_version()
    preflight.check_weights(model)
    loaded = models.load_model(model)
    loaded.hook_point(layer)  # an unknown layer lists the valid names
    sae.check_device(device)
    trained = sae.train_on_probe(loaded, probe, layer, config, model=model, progress=progress)
    trained.save(out)
    p = trained.provenance
    click.echo(
        f"{out}: {p['latents']} latents, top-{p['k']}, trained on {p['vectors']} positions of {p['probe']['images']} "
        f"images ({p['probe']['name']}, hash {p['probe']['hash']}); R² {p['r2']:.3f}, mse {p['mse']:.4g}; "
        f"dead {p['dead']}, always on {p['always_on']} (active on >= {sae.ALWAYS_ON:.0%} of positions)"
    )
    click.echo(f"its units: {model}/{layer}/sae:{out}/INDEX; a whole dictionary: vse label {model_layer} --sae {out}")
