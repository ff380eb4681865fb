"""Inputs checked before expensive work: a bad unit, missing weights, a bad probe folder
are refused with their reason before any server starts, any model runs over a probe set, any LLM call.

Everything expensive is replaced by a tripwire that fails the test if it is reached.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from vse.cli.main import main

NEURON = "efficientnet_lite0/_conv_head"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr, result.exception)
    assert "Traceback" not in result.output + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("vse: error: ")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


class Tripwire(Exception):
    pass


@pytest.fixture
def tripwires(monkeypatch):
    """Starting a server, assembling the model, loading a vision model, extracting, or calling the LLM fails
    the test."""
    from vse.llm import client, server
    from vse.vision import activations, models

    def trip(what):
        def f(*_a, **_k):
            raise Tripwire(f"{what} was started before the input was checked")

        return f

    monkeypatch.setattr(server, "LocalServer", trip("the local LLM server"))
    monkeypatch.setattr(server, "assemble_model", trip("model assembly"))
    monkeypatch.setattr(server, "endpoint_or_local", trip("the local LLM server"))
    monkeypatch.setattr(client.LLMClient, "_post", trip("an LLM call"))
    monkeypatch.setattr(models, "load_model", trip("a vision model load"))
    monkeypatch.setattr(activations, "extract_activations", trip("activation extraction"))


@pytest.fixture
def probe(tmp_path):
    from PIL import Image

    folder = tmp_path / "probe"
    folder.mkdir()
    for i, color in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (32, 32), color).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a {color} square\n")
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["explain", f"{NEURON}/1280", "--method", "weight-label"],
        ["explain", f"{NEURON}/99999", "--method", "caption-activation"],
        ["explain", f"{NEURON}/5000", "--method", "clip-dissect"],
        ["score", f"{NEURON}/1280", "--target", "weight-label", "--explanation", "dogs"],
        ["validate", NEURON, "--units", "1,2,1280"],
    ],
)
def test_a_unit_beyond_the_layer_is_refused_before_any_server_starts(args, tripwires, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VSE_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    one_line(run(*args), 2, "out of range", "1280 units")


def test_label_refuses_units_beyond_the_layer_before_any_call(tripwires, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(
        "label", NEURON, "--method", "weight-label", "--units", "1270:1300", "--base-url", "http://127.0.0.1:9/v1"
    )
    assert result.exit_code == 2 and "1280 units" in result.output + result.stderr
    assert not (tmp_path / "labels").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["explain", "resnet50/layer4/3", "--method", "weight-label"], "no fixtures for model 'resnet50'"),
        (
            ["explain", f"{NEURON}/3", "--method", "weight-clip"],
            "no weight-clip fixtures for efficientnet_lite0/_conv_head",
        ),
        (
            ["explain", f"{NEURON}/3", "--method", "weight-explanation"],
            "weight-explanation needs the next layer's weights",
        ),
        (
            ["label", "resnet50/layer4", "--method", "weight-label", "--units", "0:4"],
            "no fixtures for model 'resnet50'",
        ),
        (["validate", NEURON, "--units", "1,2,3", "--methods", "weight-label,nope"], "unknown method 'nope'"),
    ],
)
def test_pairs_the_fixtures_lack_are_refused_first(args, fragment, tripwires, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line(run(*args), 2, fragment)


def test_a_model_whose_weights_are_not_in_the_torch_cache(tripwires, probe, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    for args in (
        ["explain", "resnet18/layer4/3", "--method", "weight-label", "--probe", str(probe)],
        ["score", "resnet18/layer4/3", "--target", "caption-activation", "--explanation", "x", "--probe", str(probe)],
        ["label", "resnet18/layer4", "--method", "weight-label", "--units", "0:4", "--probe", str(probe)],
        ["activations", "--model", "resnet18", "--probe", str(probe), "--out", str(tmp_path / "acts")],
    ):
        line = one_line(run(*args), 1, "resnet18", "not in the torch hub cache", "resnet18-")
        assert str(tmp_path / "empty-torch-home") in line
    assert not (tmp_path / "acts").exists()


def test_an_unknown_model_is_refused_with_the_known_ones(tripwires, probe):
    one_line(
        run("explain", "nonet/x/1", "--method", "weight-label", "--probe", str(probe)),
        2,
        "unknown model 'nonet'",
        "efficientnet_lite0",
    )


def test_an_empty_probe_folder(tripwires, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (
        ["explain", f"{NEURON}/3", "--method", "caption-activation", "--probe", str(empty)],
        ["label", NEURON, "--method", "caption-activation", "--units", "0:3", "--probe", str(empty)],
        ["activations", "--probe", str(empty), "--out", str(tmp_path / "acts")],
    ):
        one_line(run(*args), 2, f"probe folder {empty} has no images")


def test_an_unreadable_probe_folder(tripwires, probe, tmp_path, monkeypatch):
    # Tests run as root here, where chmod 000 still reads: the permission check itself is faked.
    import os

    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, *a, **k: False if str(p) == str(probe) else real(p, mode, *a, **k)
    )
    one_line(
        run("activations", "--probe", str(probe), "--out", str(tmp_path / "acts")),
        2,
        f"probe folder {probe} cannot be read",
    )
    # explain's --probe is a click.Path: click says it first, as a usage error.
    result = run("explain", f"{NEURON}/3", "--method", "caption-activation", "--probe", str(probe))
    assert result.exit_code == 2 and "is not readable" in result.output + result.stderr


def test_images_without_captions_are_refused_for_caption_activation(tripwires, probe):
    (probe / "img1.txt").unlink()
    one_line(
        run("explain", f"{NEURON}/3", "--method", "caption-activation", "--probe", str(probe)),
        2,
        "1 of 3 images",
        "have no caption",
        "img1.png",
    )


def test_with_a_probe_an_out_of_range_unit_is_refused_before_the_server(probe, monkeypatch, tmp_path):
    """The real model is loaded once for the layer's width (seconds); no server, no extraction."""
    from vse.llm import server
    from vse.vision import activations

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(server, "endpoint_or_local", lambda *a, **k: (_ for _ in ()).throw(Tripwire("server")))
    monkeypatch.setattr(
        activations, "extract_activations", lambda *a, **k: (_ for _ in ()).throw(Tripwire("extraction"))
    )
    one_line(
        run("explain", f"{NEURON}/1280", "--method", "caption-activation", "--probe", str(probe)),
        2,
        "unit 1280 is out of range",
        "1280 units",
    )


# -- vse activations: each option once, one extraction on --device --------------------------------


def test_activations_help_lists_each_option_once():
    text = run("activations", "--help").output
    options = re.findall(r"^\s+(--[a-z-]+)", text, flags=re.M)
    assert options, text
    assert len(options) == len(set(options)), options
    for name in ("--batch-size", "--workers", "--device"):
        assert options.count(name) == 1


def test_activations_extract_once_on_the_device_asked(probe, tmp_path, monkeypatch):
    from vse.vision import activations

    calls = []
    real = activations.extract_activations

    def counting(*args, **kwargs):
        calls.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(activations, "extract_activations", counting)
    result = run(
        "activations", "--probe", str(probe), "--out", str(tmp_path / "acts"), "--device", "cpu", "--batch-size", "2"
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert calls == ["cpu"]
    assert (tmp_path / "acts" / "activations__conv_head.npz").exists()


# -- where the results go, and the endpoints, checked before the calls ----------------------------


def test_an_unwritable_out_or_cassette_is_refused_before_any_call(tripwires, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    for args, fragment in (
        (
            [
                "explain",
                f"{NEURON}/3",
                "--method",
                "weight-label",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--out",
                "afile/o.jsonl",
            ],
            "--out afile/o.jsonl: afile is a file, not a folder",
        ),
        (
            [
                "score",
                f"{NEURON}/3",
                "--target",
                "weight-label",
                "--explanation",
                "x",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--cassette",
                "afile/c.json.gz",
            ],
            "--cassette afile/c.json.gz: afile is a file, not a folder",
        ),
        (
            ["validate", NEURON, "--units", "1,2,3", "--base-url", "http://127.0.0.1:9/v1", "--out", "afile/s.json"],
            "afile is a file, not a folder",
        ),
    ):
        one_line(run(*args), 2, fragment)


def test_label_refuses_a_bad_base_url_before_recording_anything(tripwires, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line(
        run(
            "label",
            NEURON,
            "--method",
            "weight-label",
            "--units",
            "0:3",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--base-url",
            "ftp://x",
            "--out",
            "o.jsonl",
        ),
        2,
        "base URL must look like http://HOST:PORT/v1",
        "ftp://x",
    )
    assert not (tmp_path / "o.jsonl").exists()


def test_dissect_names_a_file_that_is_not_an_activations_file(tmp_path):
    import numpy as np

    (tmp_path / "junk.npz").write_text("junk")
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    (tmp_path / "caps.json").write_text("{}")
    for name in ("junk.npz", "other.npz"):
        one_line(
            run(
                "dissect",
                "--activations",
                str(tmp_path / name),
                "--captions",
                str(tmp_path / "caps.json"),
                "--out",
                str(tmp_path / "d.json"),
            ),
            2,
            f"{tmp_path / name} is not an activations file written by `vse activations`",
        )


def test_without_build_tools_the_local_server_is_refused_before_the_model_download(tripwires, tmp_path, monkeypatch):
    """No endpoint named, no llama-server built, no cmake/compilers: one line naming them, before
    the model file (1.1 GB from PyPI) is assembled or any server starts."""
    import shutil

    from vse.llm import server

    if not hasattr(server, "missing_build_tools"):
        pytest.skip("the server module builds no llama-server")
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    monkeypatch.setenv("VSE_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("VSE_BASE_URL", "OPENAI_BASE_URL", "VSE_LLAMA_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for args in (
        ["explain", f"{NEURON}/3", "--method", "weight-label"],
        ["score", f"{NEURON}/3", "--target", "weight-label", "--explanation", "x", "--mode", "one"],
        ["validate", NEURON, "--units", "1,2,3"],
        ["reproduce", "--record", "--experiment", "chat-vs-completions-baseline"],
    ):
        one_line(run(*args), 1, "cmake", "not found on PATH", "apt-get install", "--base-url")


# -- a dead endpoint with a probe set: said before the probe's activations are computed ------------------


@pytest.mark.parametrize(
    "args",
    [
        ["label", "tinynet/conv", "--method", "caption-activation", "--score", "--no-progress"],
        ["explain", "tinynet/conv/0", "--method", "caption-activation", "--n", "1"],
        ["score", "tinynet/conv/0", "--target", "caption-activation", "--explanation", "red", "--mode", "one"],
    ],
)
def test_a_dead_endpoint_is_named_before_the_probe_is_run(args, tmp_path, monkeypatch):
    import requests

    from vse.vision import activations

    from ..outputs.atlas_helpers import make_probe, register_tinynet

    register_tinynet(monkeypatch)
    monkeypatch.chdir(tmp_path)
    probe = make_probe(tmp_path / "probe")
    asked = []

    def refused(self, url, **kw):
        asked.append(url)
        raise requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(requests.Session, "get", refused)
    monkeypatch.setattr(requests.Session, "post", refused)
    monkeypatch.setattr(
        activations, "extract_activations", lambda *a, **k: (_ for _ in ()).throw(Tripwire("extraction"))
    )
    result = run(*args, "--probe", str(probe), "--base-url", "http://127.0.0.1:9/v1")
    one_line(result, 2, "endpoint http://127.0.0.1:9/v1 refused the connection", "--base-url")
    assert asked == ["http://127.0.0.1:9/v1/models"]
