"""Shared by the atlas tests: a generated probe folder, a tiny random vision model registered as "tinynet",
and an in-process stand-in for an OpenAI-compatible server (no socket).

Everything here is plumbing: a random net's activations and a scripted LLM's words mean nothing, and no
test shows them as an explanation of anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import requests

CAPTIONS = [
    "A red square.",
    "A green circle.",
    "A blue triangle.",
    "A yellow star.",
    "A black cat.",
    "A white dog.",
    "A purple flower.",
    "An orange car.",
    "A grey house.",
    "A pink cake.",
    "A brown shoe.",
    "A cyan boat.",
]
EXPLANATION = "plain shapes in bright colours, such as squares and circles"


def make_probe(folder: Path) -> Path:
    """12 small generated images, each with a ``<stem>.txt`` caption."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for k, caption in enumerate(CAPTIONS):
        # a solid colour with a little noise: images differ as a whole, so the units' values spread
        colour = rng.integers(0, 256, size=3)
        pixels = np.clip(colour + rng.integers(-20, 21, size=(24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{k:02d}.png")
        (folder / f"img{k:02d}.txt").write_text(caption + "\n", encoding="utf-8")
    return folder


def tiny_net():
    """conv (3 -> 4 channels) -> ReLU -> pool -> fc (4 -> 3 classes), random weights from a fixed seed."""
    import torch
    import torch.nn as nn

    from vse.vision.models import wrap_module

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.act = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.flat(self.pool(self.act(self.conv(x)))))

    torch.manual_seed(0)  # only for the tiny net's initial weights, in this test helper
    net = Net()
    with torch.no_grad():
        net.conv.bias.fill_(0.5)  # channels mostly positive: no dead unit to explain
    return wrap_module("tinynet", net, ["apple", "boat", "cat"], image_size=16)


def register_tinynet(monkeypatch) -> None:
    from vse.vision import models

    real = models.load_model

    def load_model(name="efficientnet_lite0", **kw):
        return tiny_net() if name == "tinynet" else real(name, **kw)

    monkeypatch.setattr(models, "load_model", load_model)
    try:  # the pre-flight check of a model's weights knows only the registry: tinynet has none to find
        from vse.cli import preflight
    except ImportError:
        return
    real_check = preflight.check_weights
    monkeypatch.setattr(preflight, "check_weights", lambda model: None if model == "tinynet" else real_check(model))


def _reply(body: dict) -> dict:
    prompt = body.get("prompt") or json.dumps(body.get("messages"))
    if body.get("max_tokens") == 1:  # a simulation: one digit, with its alternatives
        h = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16)
        digit = str(h % 11) if h % 11 < 10 else "0"
        top = {str(d): (-0.2 if str(d) == digit else -3.0 - d / 10) for d in range(10)}
        return {
            "choices": [
                {
                    "text": digit,
                    "index": 0,
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": [digit],
                        "token_logprobs": [-0.2],
                        "top_logprobs": [top],
                        "text_offset": [0],
                    },
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
        }
    return {
        "choices": [{"text": " " + EXPLANATION, "index": 0, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 500, "completion_tokens": 12, "total_tokens": 512},
    }


def fake_llm(monkeypatch) -> list[dict]:
    """Answer every `requests.Session` call in process like a small OpenAI-compatible server; returns the
    requests seen."""
    seen: list[dict] = []

    def respond(status: int, body: dict, url: str) -> requests.Response:
        resp = requests.Response()
        resp.status_code, resp.url, resp.encoding = status, url, "utf-8"
        resp.headers["Content-Type"] = "application/json"
        resp._content = json.dumps(body).encode("utf-8")
        return resp

    def post(self, url, data=None, json=None, headers=None, timeout=None, **kw):
        import json as _json

        body = _json.loads(data) if data is not None else dict(json or {})
        seen.append({"url": url, "body": body})
        return respond(200, _reply(body), url)

    def get(self, url, timeout=None, **kw):
        return respond(200, {"data": [{"id": "scripted-test-llm"}]}, url)

    monkeypatch.setattr(requests.Session, "post", post)
    monkeypatch.setattr(requests.Session, "get", get)
    return seen


def label_args(probe: Path) -> list[str]:
    """`vse label tinynet/conv --probe DIR --score` against the scripted server, one explanation per unit:
    the 12 probe images are all shown, so nothing unseen is left to choose the best of several on."""
    return ["label", "tinynet/conv", "--probe", str(probe), "--method", "caption-activation", "--score",
            "--simulator", "one", "--n", "1", "--base-url", "http://llm.test/v1", "--model", "scripted",
            "--no-progress"]  # fmt: skip


def label_and_build(tmp_path: Path, monkeypatch) -> tuple[Path, Path, list[dict]]:
    """`vse label tinynet/conv --probe DIR --score` then `vse atlas`: (site folder, probe folder, requests seen)."""
    from click.testing import CliRunner

    from vse.cli.main import main

    monkeypatch.chdir(tmp_path)
    register_tinynet(monkeypatch)
    seen = fake_llm(monkeypatch)
    probe = make_probe(tmp_path / "shapes")
    runner = CliRunner()
    r = runner.invoke(
        main,
        label_args(probe),
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    labels = tmp_path / "labels" / "tinynet__conv__caption-activation__shapes.jsonl"
    r = runner.invoke(
        main, ["atlas", str(labels), "--out", str(tmp_path / "site"), "--probe", str(probe)], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    return tmp_path / "site", probe, seen
