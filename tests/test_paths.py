"""Where data are found and results go: a non-editable install must not write into site-packages,
and the replay must not need torch (the light install of `make reproduce` has none: checked by
tests/studies/replay_without_blas.py, which every `make test` runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vse.paths import data_root

REPO = Path(__file__).resolve().parents[1]


def make_root(folder: Path) -> Path:
    (folder / "cassettes").mkdir(parents=True)
    (folder / "fixtures").mkdir()
    return folder


def test_a_checkout_uses_the_package_parent(tmp_path):
    assert data_root(REPO, cwd=tmp_path) == REPO


def test_an_installed_package_finds_the_clone_from_the_current_directory(tmp_path):
    site = tmp_path / "site-packages"
    site.mkdir()
    clone = make_root(tmp_path / "clone")
    (clone / "sub").mkdir()
    assert data_root(site, cwd=clone) == clone
    assert data_root(site, cwd=clone / "sub") == clone
    # Nowhere to be found: the current directory; a missing cassette then names the path.
    assert data_root(site, cwd=site) == site.resolve()


def test_piped_stderr_gets_no_progress_bars(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from vse.cli.main import main; main(['reproduce', '--experiment', 'chat-vs-completions-baseline'])",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\x1b[" not in proc.stderr and "\r" not in proc.stderr  # no cursor moves, no redrawn bars
    assert "## chat-vs-completions-baseline" in proc.stdout
