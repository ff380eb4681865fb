"""Directions and SAE latents on the command line: a file that cannot be a feature of the layer is one line
(exit 2) before any model runs or any call is made."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from vse.cli.main import main


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def narrow(tmp_path):
    path = tmp_path / "narrow.npy"
    np.save(path, np.zeros((3, 320)))
    return path


def _one_line(r, says: str) -> None:
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and says in lines[0], r.output


def test_explain_a_direction_of_the_wrong_width(narrow):
    r = _run("explain", f"efficientnet_lite0/_conv_head/dir:{narrow}/0", "--method", "weight-label")
    _one_line(r, "directions of width 320, but the layer has 1280 channels")


def test_label_directions_with_nans(tmp_path):
    bad = tmp_path / "bad.npy"
    rows = np.zeros((2, 1280))
    rows[1, 3] = np.nan
    np.save(bad, rows)
    r = _run("label", "efficientnet_lite0/_conv_head", "--directions", str(bad), "--method", "weight-label")
    _one_line(r, "NaN")


def test_label_an_sae_of_another_layer(tmp_path):
    from tests.data.test_features import _sae

    f = _sae(tmp_path, layer="_blocks.15", width=320)
    r = _run("label", "efficientnet_lite0/_conv_head", "--sae", f, "--method", "caption-activation", "--units", "0:2")
    _one_line(r, "was trained on efficientnet_lite0/_blocks.15, not efficientnet_lite0/_conv_head")


def test_a_feature_unit_out_of_range_and_both_files(narrow):
    r = _run("label", "efficientnet_lite0/_blocks.15", "--directions", str(narrow), "--method", "weight-label",
             "--units", "0:5")  # fmt: skip
    assert r.exit_code == 2 and "the layer has 3 units" in r.output
    r = _run("label", "efficientnet_lite0/_blocks.15", "--directions", str(narrow), "--sae", str(narrow),
             "--method", "weight-label")  # fmt: skip
    assert r.exit_code == 2 and "give one of them" in r.output


def test_sae_train_checks_its_probe_first(tmp_path):
    r = _run("sae", "train", "efficientnet_lite0/_conv_head", "--probe", str(tmp_path / "nowhere"))
    _one_line(r, "does not exist")
