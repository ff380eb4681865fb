"""The package's shape: folders are the layers, few modules at the top, the contract configured."""

import tomllib
from pathlib import Path

import vse

PACKAGE = Path(vse.__file__).parent
LAYERS = ["vse.cli", "vse.studies", "vse.outputs", "vse.method", "vse.data", "vse.llm | vse.vision"]


def test_at_most_six_modules_at_the_top_of_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top


def test_every_folder_is_a_layer_of_the_import_contract():
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    [contract] = config["tool"]["importlinter"]["contracts"]
    assert contract["type"] == "layers"
    assert contract["layers"][: len(LAYERS)] == LAYERS
    named = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    folders = {f"vse.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    modules = {f"vse.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    # A new folder or top-level module must take a place in the layers, or the contract would not see it.
    assert folders | modules <= named, sorted((folders | modules) - named)
