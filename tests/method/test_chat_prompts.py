"""Chat prompt forms as exact message lists: a changed byte changes every recorded chat request.

Like tests/method/test_prompts.py for the completion prompts, the full expected messages for a tiny
example (one few-shot neuron of 2 pairs) are written out literally, so any wording change shows
up here and has to be made on purpose.
"""

import pytest

from vse.method.prompts import (
    EXPLANATION_PREFIX,
    KIND_WORDING,
    TARGET_NAME,
    Example,
    Pair,
    explain_messages,
    parse_chat_explanation,
    simulate_list_messages,
    simulate_one_messages,
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


# ----------------------------------------------------------------------------- exact lists


def test_explain_messages_exact():
    got = explain_messages("weight-label", EX, "489", [Pair("snail", 9), Pair("lacewing", 10)])
    assert got == [
        {
            "role": "system",
            "content": WEIGHT_EXPLAIN_HEAD
            + ' Answer with one sentence that starts "the main thing this neuron does is find".',
        },
        {"role": "user", "content": "Neuron 7\nWeights:\n<start>\nbeagle\t6\npoodle\t10\n<end>\n"},
        {"role": "assistant", "content": "the main thing this neuron does is find dogs of many breeds."},
        {"role": "user", "content": "Neuron 489\nWeights:\n<start>\nsnail\t9\nlacewing\t10\n<end>\n"},
    ]


def test_simulate_one_messages_exact():
    got = simulate_one_messages("weight-label", EX, "insects.", "kite")
    assert got == [
        {
            "role": "system",
            "content": WEIGHT_SIMULATE_HEAD
            + " You are shown one class at a time: answer with its weight alone, a whole number.",
        },
        {
            "role": "user",
            "content": "Explanation of neuron 7 behavior: the main thing this neuron does is find dogs of many breeds."
            "\nbeagle",
        },
        {"role": "assistant", "content": "6"},
        {"role": "user", "content": "poodle"},
        {"role": "assistant", "content": "10"},
        {
            "role": "user",
            "content": "Explanation of neuron X behavior: the main thing this neuron does is find insects.\nkite",
        },
    ]


def test_simulate_one_messages_clean_the_item():
    # A tab or run of spaces in an item must not change the format the model sees.
    got = simulate_one_messages("weight-label", EX, "insects", "tab\there  and  spaces")
    assert got[-1]["content"].endswith("insects.\ntab here and spaces")


def test_simulate_list_messages_exact():
    got = simulate_list_messages("weight-label", EX, "insects", ["kite", "screw"])
    assert got == [
        {
            "role": "system",
            "content": WEIGHT_SIMULATE_HEAD + " Answer by copying the list with every unk replaced by a whole number.",
        },
        {
            "role": "user",
            "content": "Neuron 7\n"
            "Explanation of neuron 7 behavior: the main thing this neuron does is find dogs of many breeds.\n"
            "Weights:\n<start>\nbeagle\tunk\npoodle\tunk\n<end>\n",
        },
        {"role": "assistant", "content": "<start>\nbeagle\t6\npoodle\t10\n<end>\n"},
        {
            "role": "user",
            "content": "Neuron X\nExplanation of neuron X behavior: the main thing this neuron does is find insects.\n"
            "Weights:\n<start>\nkite\tunk\nscrew\tunk\n<end>\n",
        },
    ]


# ----------------------------------------------------------------------------- every kind


@pytest.mark.parametrize("key", list(KIND_WORDING))
@pytest.mark.parametrize("signed", [False, True])
def test_every_kind_system_message_starts_with_its_task(key, signed):
    kind = KIND_WORDING[key]
    scale = "from -10 to 10" if signed else "from 0 to 10"
    cases = [
        (explain_messages(key, EX, "489", [Pair("a", 1), Pair("b", 2)], signed=signed), kind.explain_task),
        (simulate_one_messages(key, EX, "insects", "kite", signed=signed), kind.simulate_task),
        (simulate_list_messages(key, EX, "insects", ["kite"], signed=signed), kind.simulate_task),
    ]
    for messages, task in cases:
        system = messages[0]
        assert system["role"] == "system"
        head, tail = task.split("{scale}")
        # The kind's own wording, with the scale sentence (signed or not) in its slot.
        assert system["content"].startswith(head)
        assert tail in system["content"]
        assert f"Each {kind.value} is a whole number {scale}" in system["content"]
        assert "{scale}" not in system["content"]
    one = cases[1][0][0]["content"]
    assert one.endswith(f"You are shown one {kind.item} at a time: answer with its {kind.value} alone, a whole number.")
    # The headers of the target block use the kind's own header line.
    assert cases[2][0][-1]["content"].startswith(
        f"Neuron {TARGET_NAME}\nExplanation of neuron {TARGET_NAME} behavior: "
    )
    assert f"\n{kind.header}\n<start>\n" in cases[2][0][-1]["content"]


# ----------------------------------------------------------------------------- prefix cache, target name


@pytest.mark.parametrize("key", list(KIND_WORDING))
@pytest.mark.parametrize("signed", [False, True])
def test_one_item_messages_for_two_items_share_all_but_the_last(key, signed):
    a = simulate_one_messages(key, EX, "insects", "kite", signed=signed)
    b = simulate_one_messages(key, EX, "insects", "snail", signed=signed)
    # Everything before the target's message is byte-identical, so the server's prefix cache
    # holds it and each call reads only the item.
    assert a[:-1] == b[:-1]
    assert a[-1] != b[-1]
    assert a[-1]["role"] == b[-1]["role"] == "user"
    # Even the last message differs only in its item: the explanation line comes first.
    assert a[-1]["content"].removesuffix("kite") == b[-1]["content"].removesuffix("snail")


def test_target_is_named_target_name_not_the_neuron():
    assert TARGET_NAME == "X"
    one = simulate_one_messages("weight-label", EX, "insects", "kite")
    assert one[-1]["content"].startswith(f"Explanation of neuron {TARGET_NAME} behavior: {EXPLANATION_PREFIX} insects.")
    lst = simulate_list_messages("weight-label", EX, "insects", ["kite"])
    assert lst[-1]["content"].startswith(f"Neuron {TARGET_NAME}\n")
    # Few-shot neurons keep their own names (only the target is anonymous).
    assert "neuron 7 behavior" in one[1]["content"]


# ----------------------------------------------------------------------------- parsing a chat reply


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("the main thing this neuron does is find insects.", "insects"),
        ("The main thing this neuron does is find insects and bugs.\nSecond line.", "insects and bugs"),
        ("Explanation: insects on leaves", "insects on leaves"),
        ("Explanation of neuron X behavior: the main thing this neuron does is find insects.", "insects"),
        ("  insects  ", "insects"),
        ("insects.<end>", "insects"),
        (": insects", "insects"),
    ],
)
def test_parse_chat_explanation(reply, expected):
    assert parse_chat_explanation(reply) == expected


def test_parse_chat_explanation_keeps_a_late_mention():
    # The shared prefix is stripped only near the start; later words are the explanation's own.
    reply = "road signs and traffic lights, which is what the main thing this neuron does is find"
    assert parse_chat_explanation(reply) == reply


@pytest.mark.parametrize("reply", ["", "   ", "the main thing this neuron does is find", "Explanation:  ."])
def test_parse_chat_explanation_refuses_empty(reply):
    with pytest.raises(ValueError, match="empty explanation"):
        parse_chat_explanation(reply)
