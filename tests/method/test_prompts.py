"""Prompts are tested as exact strings: a changed byte changes every recorded request."""

import pytest

from vse.method.prompts import (
    Example,
    Pair,
    explain_prompt,
    get_kind,
    parse_explanation,
    simulate_echo_prompt,
    simulate_list_prompt,
    simulate_one_prefix,
    simulate_one_prompt,
)

EX = [Example("7", (Pair("beagle", 6), Pair("poodle", 10)), "dogs of many breeds")]

WEIGHT_EXPLAIN_HEAD = (
    "We are looking at single units (neurons) inside a network that classifies photographs. Each unit "
    "responds to something it sees in a picture and, through its outgoing weights, makes some of the "
    "network's answers more likely. For each unit you see the classes it supports most, one per line as "
    "class<tab>weight. Each weight is a whole number from 0 to 10: 0 means no link and the higher the "
    "number, the stronger the match. Say in one sentence what the unit is looking for: the thing most of "
    "its classes have in common, not a list of them. These are photographs, so what they share may be "
    "something usually seen next to the objects (water next to fish) rather than the objects themselves."
)

WEIGHT_SIMULATE_HEAD = (
    "We are looking at single units (neurons) inside a network that classifies photographs. Each unit "
    "responds to something it sees in a picture and, through its outgoing weights, makes some of the "
    "network's answers more likely. From a short explanation of a unit, guess how strongly it supports "
    "each class. The link may come from what is usually seen together with an object (water next to "
    "fish), not only from the object. Each weight is a whole number from 0 to 10: 0 means no link and "
    "the higher the number, the stronger the match. Many weights are 0."
)


def test_explain_prompt_exact():
    got = explain_prompt("weight-label", EX, "489", [Pair("snail", 9), Pair("lacewing", 10)])
    assert got == (
        WEIGHT_EXPLAIN_HEAD + "\n\n"
        "Neuron 7\nWeights:\n<start>\nbeagle\t6\npoodle\t10\n<end>\n"
        "Explanation of neuron 7 behavior: the main thing this neuron does is find dogs of many breeds.\n\n"
        "Neuron 489\nWeights:\n<start>\nsnail\t9\nlacewing\t10\n<end>\n"
        "Explanation of neuron 489 behavior: the main thing this neuron does is find"
    )


def test_simulate_list_prompt_exact():
    got = simulate_list_prompt("weight-label", EX, "489", "insects", ["kite", "screw"])
    assert got == (
        WEIGHT_SIMULATE_HEAD + "\n\n"
        "Neuron 7\nExplanation of neuron 7 behavior: the main thing this neuron does is find dogs of many breeds.\n"
        "Weights:\n<start>\nbeagle\tunk\npoodle\tunk\n<end>\n\n<start>\nbeagle\t6\npoodle\t10\n<end>\n\n"
        "Neuron 489\nExplanation of neuron 489 behavior: the main thing this neuron does is find insects.\n"
        "Weights:\n<start>\nkite\tunk\nscrew\tunk\n<end>\n\n<start>\n"
    )


def test_simulate_one_prompt_exact_and_prefix_shared():
    prefix = simulate_one_prefix("weight-label", EX, "489", "insects.")
    assert prefix == (
        WEIGHT_SIMULATE_HEAD + "\n\n"
        "Neuron 7\nExplanation of neuron 7 behavior: the main thing this neuron does is find dogs of many breeds.\n"
        "Weights:\n<start>\nbeagle\t6\npoodle\t10\n<end>\n\n"
        "Neuron 489\nExplanation of neuron 489 behavior: the main thing this neuron does is find insects.\n"
        "Weights:\n<start>\n"
    )
    assert simulate_one_prompt(prefix, "kite") == prefix + "kite\t"
    assert simulate_one_prompt(prefix, "tab\there  and  spaces") == prefix + "tab here and spaces\t"


def test_echo_prompt_fills_placeholders():
    got = simulate_echo_prompt("weight-label", EX, "489", "insects", ["kite", "screw"])
    assert got.endswith("<start>\nkite\t0\nscrew\t0\n<end>\n")
    assert got.startswith(simulate_list_prompt("weight-label", EX, "489", "insects", ["kite", "screw"]))


def test_signed_scale_sentence():
    got = explain_prompt("weight-label", EX, "1", [Pair("a", -3)], signed=True)
    assert (
        "whole number from -10 to 10: positive numbers mean the unit pushes towards it, negative numbers mean it "
        "pushes against it" in got
    )


@pytest.mark.parametrize("kind", ["weight-label", "weight-clip", "caption-activation"])
def test_every_kind_builds_and_ends_in_the_sentence(kind):
    got = explain_prompt(kind, EX, "3", [Pair("x", 1)])
    assert got.endswith("Explanation of neuron 3 behavior: the main thing this neuron does is find")
    assert "{scale}" not in got and get_kind(kind).header in got


def test_unknown_kind_lists_known():
    with pytest.raises(ValueError, match="weight-label"):
        get_kind("nope")


@pytest.mark.parametrize(
    "reply, want",
    [(" insects and birds.\nNeuron 5", "insects and birds"), ("  tall things<end>", "tall things"), ("x", "x")],
)
def test_parse_explanation(reply, want):
    assert parse_explanation(reply) == want


@pytest.mark.parametrize("reply", ["", "   ", ".", "<end>", "\n"])
def test_parse_explanation_rejects_empty(reply):
    with pytest.raises(ValueError):
        parse_explanation(reply)
