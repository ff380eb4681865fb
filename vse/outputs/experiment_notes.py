"""What the report says of each recorded experiment, by its name in `vse.studies.registry.EXPERIMENTS`.

One entry per experiment, no more, no less (`vse.studies.registry.check_notes`, run by the tests): a
new experiment gets its note here. Here, not in the registry, because the report (`vse.outputs`) may not
import the studies; and not in the study kinds' fields, because those are written into each
experiment's config.json, whose bytes the cassettes' replay keeps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExperimentNote:
    """``question``: what the experiment asks, in words (numbers come from its files, never from here);
    None: the report quotes the first paragraph of its table.md.

    ``paper``: (which table, {(method, target): score}) of the paper's published scores for the rows
    vse reruns, transcribed from its tables (Correlation Score, %; AlexNet, GPT-3.5, best of 10
    explanations): shown beside vse's as a reference for the pattern, not the level.

    ``docs``: the page (and heading anchor) under ``docs/studies/`` with the experiment's full text, its
    design and what it found; the report links it (the tests check every link resolves)."""

    question: str | None = None
    paper: tuple[str, dict[tuple[str, str], str]] | None = None
    docs: str | None = None


#: Where the studies' full texts live, from the repository's root (the report, in results/, links ../ + this).
STUDIES = "docs/studies/"

#: The report's sections first, in this order; every other experiment follows by name.
PRIORITY = (
    "power-study",
    "table1-second-last-layer",
    "tables8-9-last-layer",
    "fewshot-strategies",
    "simulator-study",
    "defaults-study",
)

NOTES: dict[str, ExperimentNote] = {
    "power-study": ExperimentNote(
        docs=STUDIES + "power-study.md",
        question="Does the score tell a neuron's own explanation from the other neurons'? Matched vs mismatched "
        "explanations under each scoring protocol, and how many neurons a difference needs.",
    ),
    "table1-second-last-layer": ExperimentNote(
        docs=STUDIES + "paper-tables.md#table-1-second-last-hidden-layer",
        question="The paper's Table 1 rerun on the second-last hidden layer: "
        "every method's explanations scored on every target, beside the paper's numbers.",
        paper=(
            "the paper's Table 1 (AlexNet's second-last hidden layer)",
            {
                ("clip-dissect", "caption-activation"): "0.0",
                ("clip-dissect", "weight-label"): "3.28",
                ("clip-dissect", "weight-clip"): "1.43",
                ("caption-activation", "caption-activation"): "15.43",
                ("caption-activation", "weight-label"): "31.20",
                ("caption-activation", "weight-clip"): "6.51",
                ("weight-label", "caption-activation"): "16.11",
                ("weight-label", "weight-label"): "51.58",
                ("weight-label", "weight-clip"): "8.27",
                ("weight-clip", "caption-activation"): "5.47",
                ("weight-clip", "weight-label"): "9.38",
                ("weight-clip", "weight-clip"): "22.05",
            },
        ),
    ),
    "tables8-9-last-layer": ExperimentNote(
        docs=STUDIES + "paper-tables.md#tables-8-9-last-hidden-layer",
        question="The paper's Tables 8-9 rerun on the last hidden layer: every method on every target, "
        "beside the paper's numbers.",
        paper=(
            "the paper's Tables 8 / 9 (AlexNet's last hidden layer, neurons 489 / 150)",
            {
                ("clip-dissect", "weight-label"): "6.24 / -5.09",
                ("clip-dissect", "caption-activation"): "5.63 / 1.34",
                ("weight-label", "weight-label"): "24.65 / 23.67",
                ("weight-label", "caption-activation"): "10.63 / 7.87",
                ("caption-activation", "weight-label"): "17.76 / 18.60",
                ("caption-activation", "caption-activation"): "38.04 / 13.42",
            },
        ),
    ),
    "fewshot-strategies": ExperimentNote(
        docs=STUDIES + "paper-tables.md#a-strategy-study-the-papers-table-5",
        question="The paper's Table 5: how the few-shot neurons' pairs are chosen for the simulator, over "
        "paired runs on one unit.",
    ),
    "simulator-study": ExperimentNote(docs=STUDIES + "simulator-study.md"),
    "defaults-study": ExperimentNote(
        docs=STUDIES + "defaults-study.md",
        question="The recommended path on 48 new units: does best of N chosen on held-in items, or the held-out "
        "display, make the default scorer tell each unit's own explanation from the others'?",
    ),
    "sae-vs-channels": ExperimentNote(
        docs=STUDIES + "sae-vs-channels.md",
        question="Are a layer's SAE latents easier to explain than its channels? `_conv_head`'s channels against "
        "the latents of an SAE trained on it (`vse sae train`), one explainer (best of 4), the default scorer: "
        "score distribution, matched vs mismatched, Meta-AUPRC, dead and dense shares.",
    ),
    "specificity-study": ExperimentNote(
        docs=STUDIES + "specificity-study.md",
        question="Explanations that single out their unit: on 48 new units, does pooling the candidates of two "
        "displays, or choosing for specificity against the nearest units, rank each unit's own explanation first "
        "more often than today's best of 4?",
    ),
    "scorer-sanity": ExperimentNote(
        docs=STUDIES + "scorer-sanity.md",
        question="Do vse's scorers pass NeuronEval's sanity checks (a concept with labels missing or extra must "
        "score lower) under every protocol, prefer an exact explanation to one too broad or too narrow, and "
        "pick each unit's own explanation (Meta-AUPRC)?",
    ),
    "all-methods-one-neuron": ExperimentNote(
        docs=STUDIES + "other-experiments.md#every-method-on-every-target-one-neuron",
        question="Every explanation method on one unit of the second-last layer.",
    ),
    "chat-vs-completions": ExperimentNote(
        docs=STUDIES + "other-experiments.md#chat-vs-completions",
        question="The same neuron explained and scored through the chat endpoint.",
    ),
    "chat-vs-completions-baseline": ExperimentNote(
        docs=STUDIES + "other-experiments.md#chat-vs-completions",
        question="The same neuron through the completions endpoint (the baseline of chat-vs-completions).",
    ),
    "fewshot-per-pass": ExperimentNote(
        docs=STUDIES + "other-experiments.md#few-shot-draws-per-pass-as-in-the-paper",
        question="The paper's per-pass few-shot draws, on the neuron and items of the baseline.",
    ),
    "negative-one-neuron": ExperimentNote(
        docs=STUDIES + "paper-tables.md#app-c3-negative-weights-and-both-signs",
        question="One unit explained and scored from what drives it down (negative polarity, values flipped).",
    ),
    "signed-one-neuron": ExperimentNote(
        docs=STUDIES + "other-experiments.md#signed-both-polarities-at-once",
        question="The same unit explained and scored on signed values (-10..10, both polarities).",
    ),
}
