"""Where the data live: the repository root that holds ``cassettes/`` and ``fixtures/``.

In a checkout or an editable install that is the folder above the package. After a plain
``pip install .`` the package sits in site-packages, without the data: the root is then the
current directory or the nearest folder above it that has both (run ``vse reproduce`` from the
clone). Results are written under the current directory, never inside site-packages.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_PARENT = Path(__file__).resolve().parents[1]


def _is_root(folder: Path) -> bool:
    return (folder / "cassettes").is_dir() and (folder / "fixtures").is_dir()


def data_root(package_parent: Path = _PACKAGE_PARENT, cwd: Path | None = None) -> Path:
    """The folder holding cassettes/ and fixtures/; the current directory when none is found
    (a missing cassette or fixture is then an error that names the path it looked for)."""
    if _is_root(package_parent):
        return package_parent
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_root(folder):
            return folder
    return here


def results_root() -> Path:
    """Results go under the current directory: ``./results``."""
    return Path.cwd() / "results"
