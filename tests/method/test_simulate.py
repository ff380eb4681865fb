import math
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vse.llm.client import Completion, TokenLogprob, Usage
from vse.method.simulators import OneItemSimulator, SimContext, SimulationError
from vse.method.simulators.numbers import (
    expected_value,
    number_distribution,
    parse_value_list,
    value_slots,
    values_from_generated,
)
from vse.method.simulators.whole_list import simulate_list

from ..llm.fakes import ScriptedClient

TEXTS = ["kite", "jellyfish", "crash helmet"]
CTX = SimContext("weight-label", (), "kites")


# ----------------------------------------------------------------------------- parser


@pytest.mark.parametrize(
    "reply",
    [
        "kite\t1\njellyfish\t0\ncrash helmet\t10\n<end>",
        "Here you go:\n<start>\nkite\t1\njellyfish\t0\ncrash helmet\t10\n<end>\nThanks",
        "KITE  1\n\n jellyfish   0\ncrash  helmet\t10",
        "kite: 1\njellyfish: 0\ncrash helmet: 10",
    ],
)
def test_parser_tolerates_unambiguous_noise(reply):
    assert parse_value_list(reply, TEXTS) == [1, 0, 10]


@pytest.mark.parametrize(
    "reply, message",
    [
        ("kite\t1\njellyfish\t0\n", "expected 3 value lines, found 2"),
        ("kite\t1\njellyfish\t0\ncrash helmet\t10\nkite\t2", "found 4"),
        ("kite\t1\ncrash helmet\t10\njellyfish\t0", "line 2: expected 'jellyfish'"),
        ("kite\t1\njellyfish\tunk\ncrash helmet\t10", "found 2"),
        ("kite\t1\njellyfish\t11\ncrash helmet\t10", "value 11 outside"),
        ("kite\t-1\njellyfish\t1\ncrash helmet\t10", "value -1 outside"),
        ("kite\t1.5\njellyfish\t1\ncrash helmet\t10", "found 2"),
    ],
)
def test_parser_rejects_ambiguous_replies(reply, message):
    with pytest.raises(SimulationError, match=message):
        parse_value_list(reply, TEXTS)


def test_parser_signed_range():
    assert parse_value_list("kite\t-3\njellyfish\t0\ncrash helmet\t10", TEXTS, low=-10) == [-3, 0, 10]


@settings(max_examples=300)
@given(reply=st.text(), texts=st.lists(st.text(min_size=1), max_size=5))
def test_parser_fuzz_only_raises_its_own_error(reply, texts):
    try:
        values = parse_value_list(reply, texts)
    except SimulationError:
        return
    assert len(values) == len(texts)
    assert all(0 <= v <= 10 for v in values)


@settings(max_examples=200)
@given(values=st.lists(st.integers(0, 10), min_size=1, max_size=20), data=st.data())
def test_parser_roundtrips_well_formed_lists(values, data):
    texts = [f"item {i}" for i in range(len(values))]
    sep = data.draw(st.sampled_from(["\t", "  ", ": ", " \t "]))
    reply = "<start>\n" + "".join(f"{t}{sep}{v}\n" for t, v in zip(texts, values, strict=False)) + "<end>"
    assert parse_value_list(reply, texts) == values


# The old forward regex: quadratic, but its meaning is the reference for the linear one.
_OLD_PAIR_LINE = re.compile(r"^(?P<text>.*?)(?:\t+|\s{2,}|\s*:\s*|\s+)(?P<value>[-+]?\d+)\s*$")


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list("ab :\t-+1٣x²\u00a0")), max_size=12).map(str.strip))
def test_linear_pair_line_means_what_the_old_regex_meant(line):
    from vse.method.simulators.numbers import _PAIR_LINE

    old, new = _OLD_PAIR_LINE.match(line), _PAIR_LINE.match(line[::-1])
    assert (old is None) == (new is None), line
    if old:
        assert old.group("text").strip() == new.group("text")[::-1].strip()
        assert old.group("value") == new.group("value")[::-1]


@pytest.mark.parametrize("n", [8_000, 32_000, 200_000])
@pytest.mark.parametrize("shape", ["x{s}y", "{s}", "x{s}:{s}y", "a{s}1{s}b", "a:{s}", "1{s}1x"])
def test_parser_is_linear_on_long_whitespace_lines(n, shape):
    line = shape.format(s=" " * n)
    start = time.perf_counter()
    with pytest.raises(SimulationError):
        parse_value_list(f"{line}\n{line}\n", TEXTS)
    # The quadratic regex took 5 s at 8,000 spaces; linear work is milliseconds. Generous for a loaded machine.
    assert time.perf_counter() - start < 0.5


def test_parser_long_digit_runs_are_linear_too():
    start = time.perf_counter()
    with pytest.raises(SimulationError):
        parse_value_list("kite " + "1" * 100_000 + "x\n" + "1" * 100_000, TEXTS)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("digits", [13, 4_301, 50_000])
def test_huge_values_are_a_simulation_error_not_a_value_error(digits):
    reply = f"kite\t{'9' * digits}\njellyfish\t0\ncrash helmet\t1"
    with pytest.raises(SimulationError, match="line 1"):
        parse_value_list(reply, TEXTS)


def test_unicode_digits_still_parse():
    assert parse_value_list("kite\t٣\njellyfish\t0\ncrash helmet\t1", TEXTS) == [3, 0, 1]


@settings(max_examples=300)
@given(
    reply=st.lists(
        st.sampled_from(
            [
                "kite",
                "jellyfish",
                "crash helmet",
                " ",
                "\t",
                ":",
                "9" * 5000,
                "-",
                "٣",
                "²",
                "\n",
                "<start>",
                "<end>",
                "1",
                "10",
                "+",
            ]
        ),
        max_size=30,
    ).map("".join)
)
def test_parser_fuzz_near_valid_replies_only_raises_its_own_error(reply):
    try:
        values = parse_value_list(reply, TEXTS)
    except SimulationError:
        return
    assert len(values) == len(TEXTS) and all(0 <= v <= 10 for v in values)


def test_number_distribution_ignores_superscripts_and_huge_keys():
    assert number_distribution({"²": -0.1}) == {}
    assert number_distribution({"①": -0.1, "٣": -0.1, "9" * 5000: -0.1, "05": -0.1, "3": 0.0}) == {3: 1.0}


@given(
    st.dictionaries(
        st.text(max_size=6) | st.sampled_from(["²", " 5", "10", "9" * 5000]),
        st.floats(allow_nan=True, allow_infinity=True) | st.none(),
        max_size=8,
    )
)
def test_number_distribution_never_raises(top):
    dist = number_distribution(top)
    assert all(0 <= k <= 10 for k in dist) and all(0.0 <= p for p in dist.values())


# ----------------------------------------------------------------------------- logprobs


def test_number_distribution_strips_and_merges_keys():
    top = {" 3": math.log(0.2), "3": math.log(0.1), "unk": math.log(0.5), "12": math.log(0.1), " 0": math.log(0.1)}
    dist = number_distribution(top)
    assert dist.keys() == {0, 3}
    assert dist[3] == pytest.approx(0.3)


def test_expected_value_renormalises_and_splits_one():
    dist = {0: 0.25, 1: 0.25}
    assert expected_value(dist) == pytest.approx(0.5)
    assert expected_value(dist, p_ten_given_one=1.0) == pytest.approx(5.0)
    with pytest.raises(SimulationError):
        expected_value({})


@given(st.dictionaries(st.integers(0, 10), st.floats(0.001, 1.0), min_size=1), st.floats(0, 1))
def test_expected_value_in_range(dist, q):
    assert 0.0 <= expected_value(dist, p_ten_given_one=q) <= 10.0 + 1e-9


def tok(t, top=None):
    return TokenLogprob(t, 0.0, top or {t: 0.0})


def test_value_slots_find_numbers_after_tabs():
    tokens = [
        tok("kite"),
        tok("\t"),
        tok("1", {"1": math.log(0.5), "2": math.log(0.5)}),
        tok("0", {"0": math.log(0.8), "\n": math.log(0.2)}),
        tok("\n"),
        tok("crash"),
        tok(" helmet"),
        tok("\t"),
        tok("3"),
        tok("\n"),
    ]
    assert value_slots(tokens) == [2, 8]
    values = values_from_generated(tokens)
    # slot 1: P(1)=.5 split with P(0|1)=.8 -> .5*(.2*1 + .8*10) + .5*2
    assert values[0] == pytest.approx(0.5 * (0.2 + 8.0) + 1.0)
    assert values[1] == pytest.approx(3.0)


def test_simulate_one_uses_shared_prefix_and_follows_up_on_one():
    def answer(prompt, kw):
        if prompt.endswith("kite\t"):
            top = {"1": math.log(0.6), "0": math.log(0.4)}
        elif prompt.endswith("kite\t1"):
            top = {"0": math.log(0.5), "\n": math.log(0.5)}
        else:
            top = {"7": 0.0}
        return Completion("x", [TokenLogprob("x", 0.0, top)], Usage(10, 1), "length")

    client = ScriptedClient(answer)
    sim = OneItemSimulator(ten_followup=True).predict(client, CTX, ["kite", "jellyfish"], seed=0)
    prefix = client.prompts[0].removesuffix("kite\t")
    assert client.prompts == [prefix + "kite\t", prefix + "kite\t1", prefix + "jellyfish\t"]
    assert all(kw["max_tokens"] == 1 and kw["logprobs"] == 20 for kw in client.fields)
    assert sim.values[0] == pytest.approx(0.6 * (0.5 * 1 + 0.5 * 10))
    assert sim.values[1] == pytest.approx(7.0)
    assert sim.calls == 3 and sim.usage == Usage(30, 3)


def test_simulate_one_without_numbers_raises():
    client = ScriptedClient(lambda p, kw: Completion("u", [TokenLogprob("unk", 0.0, {"unk": 0.0})], Usage(), "length"))
    with pytest.raises(SimulationError, match="no number"):
        OneItemSimulator().predict(client, CTX, ["kite"], seed=0)


def test_simulate_list_retries_then_succeeds_then_gives_up():
    replies = iter(["kite\t1\n", "kite\t1\njellyfish\t2\ncrash helmet\t3\n"])
    client = ScriptedClient(lambda p, kw: Completion(next(replies), [], Usage(5, 5), "stop"))
    sim = simulate_list(client, "P", TEXTS, logprobs=False)
    assert sim.values == [1.0, 2.0, 3.0] and sim.retries == 1 and sim.calls == 2
    assert client.fields[0]["temperature"] == 0.0 and client.fields[1]["temperature"] > 0

    bad = ScriptedClient(lambda p, kw: Completion("nothing useful", [], Usage(), "stop"))
    with pytest.raises(SimulationError, match="attempt 3"):
        simulate_list(bad, "P", TEXTS, logprobs=False, max_retries=2)


def test_list_over_chat_goes_through_the_same_retry_loop():
    from vse.method.simulators import ListSimulator

    def chat(replies):
        return ScriptedClient(Completion(text, [], Usage(7, 3), "stop") for text in replies)

    client = chat(["no list here", "<start>kite\t1\njellyfish\t2\ncrash helmet\t3\n<end>"])
    sim = ListSimulator("chat").predict(client, CTX, TEXTS, seed=5)
    assert sim.values == [1.0, 2.0, 3.0] and (sim.calls, sim.retries, sim.usage) == (2, 1, Usage(14, 6))
    # the request fields the recorded chat lists were sent with: no stop, no logprobs
    assert [api for api, _, _ in client.requests] == ["chat", "chat"]
    assert client.fields == [
        {"max_tokens": 52, "temperature": 0.0, "seed": 5},
        {"max_tokens": 52, "temperature": 0.7, "seed": 6},
    ]
    with pytest.raises(SimulationError, match="attempt 3: expected 3 value lines"):
        ListSimulator("chat").predict(chat(["x"] * 3), CTX, TEXTS, seed=0)
