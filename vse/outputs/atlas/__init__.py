"""The layer atlas: an index of every labelled unit and one card per neuron, as static HTML.

A *card* (`Card`) is what is known of one neuron: every explanation with its scores per target and
protocol (and, for scored ones, one pass's true vs simulated values per item), its top-activating
probe images with captions and activations (the bottom ones for negative polarity, both for
signed), and the pairs a Weight-* method read (classes or next-layer units, with their weights).
`render_card` turns a card into one ``<article data-neuron="MODEL/LAYER/UNIT">``; the results
report (`vse.outputs.report`) and the atlas (`build_atlas`) are both made of these parts.

The atlas is a folder opened from disk (``index.html``; no server, no network): the index is one
table (one row per explanation, sortable by any column, text search, a score filter; the state
also reads from the URL fragment, e.g. ``index.html#q=dog&sort=score-0&dir=desc``), and each neuron
has its own page under ``cards/``. Images are files (thumbnails under ``img/``), never inline data,
so a 1280-unit layer opens fast. Every output is a pure function of the inputs: sorted neurons,
no timestamps.

Where the images come from: a probe folder (``--probe DIR``: activations through the cached
extraction of `vse.data.loader.live_pairs`, any registered model), else the committed fixtures
(EfficientNet-Lite0 on the Tux Paint stamps, 48 px thumbnails), else none (the card says so).

The package, one idea a module: `cards` (the data of a card), `from_records` (records to cards),
`sources` (images and pairs), `render` (HTML; its style and script are files under
``vse/outputs/assets/``) and `site` (the atlas's files and folder). The names below are the ones
the report, the command line and the tests import from ``vse.outputs.atlas``.
"""

from vse.outputs.atlas.cards import (
    Card,
    Dead,
    Explanation,
    Item,
    Score,
    SimItem,
    Unscored,
    WeightPairs,
    neuron_key,
    slug,
)
from vse.outputs.atlas.from_records import (
    N_SIM_ITEMS,
    RECORDED_MAX_TOKENS,
    cards_from_records,
    cut_reason,
    folder_config,
    folder_records,
    read_objects,
)
from vse.outputs.atlas.render import (
    CSS,
    SCRIPT,
    WEIGHT_TITLES,
    asset,
    column_head,
    cut_mark,
    esc,
    page,
    polarity_badge,
    render_card,
    render_index,
    score_columns,
    score_text,
    sim_plot,
)
from vse.outputs.atlas.site import AtlasSummary, atlas_files, build_atlas
from vse.outputs.atlas.sources import (
    FULL_PX,
    N_CLASSES,
    N_IMAGES,
    THUMB_PX,
    ImageSink,
    PairSource,
    ProbeLayer,
    add_views,
)

__all__ = [
    "CSS",
    "FULL_PX",
    "N_CLASSES",
    "N_IMAGES",
    "N_SIM_ITEMS",
    "RECORDED_MAX_TOKENS",
    "SCRIPT",
    "THUMB_PX",
    "WEIGHT_TITLES",
    "AtlasSummary",
    "Card",
    "Dead",
    "Unscored",
    "Explanation",
    "ImageSink",
    "Item",
    "PairSource",
    "ProbeLayer",
    "Score",
    "SimItem",
    "WeightPairs",
    "add_views",
    "asset",
    "atlas_files",
    "build_atlas",
    "cards_from_records",
    "column_head",
    "cut_mark",
    "cut_reason",
    "esc",
    "folder_config",
    "folder_records",
    "neuron_key",
    "page",
    "polarity_badge",
    "read_objects",
    "render_card",
    "render_index",
    "score_columns",
    "score_text",
    "sim_plot",
    "slug",
]
