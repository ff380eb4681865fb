"""The simulator interface: reading one-item values, choosing a simulator, signed scoring.

`read_value` is tested through a scripted `after(suffix)`: each test says which branches of the
token tree exist and checks both the value and which follow-ups were asked (each follow-up is
an LLM call, so asking one too many costs money and asking one too few loses the value).
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vse.core.stats import StopRule
from vse.core.target import Target
from vse.method.explain import FewShotNeuron
from vse.method.prompts import Example, Pair
from vse.method.score import ScoreConfig, score_target
from vse.method.simulators import (
    MODES,
    EchoSimulator,
    ListSimulator,
    OneItemSimulator,
    SimContext,
    SimulationError,
    make_simulator,
)
from vse.method.simulators.numbers import UNREAD_NEGATIVE, read_value

from ..llm.fakes import ScriptedClient, last_line, one_token

L = math.log


class Tree:
    """A scripted token tree: `after(suffix)` answers from a dict and records every suffix asked."""

    def __init__(self, branches):
        self.branches = branches
        self.asked = []

    def __call__(self, suffix):
        self.asked.append(suffix)
        return self.branches.get(suffix)


# ----------------------------------------------------------------------------- unsigned


def test_expected_value_over_digit_tokens_only():
    # " 7" (leading space) is a digit; "x" and "\n" are not numbers and drop out of the mass.
    tree = Tree({"": {"0": L(0.3), "4": L(0.3), " 7": L(0.2), "x": L(0.1), "\n": L(0.1)}})
    r = read_value(tree, signed=False)
    assert r.value == pytest.approx((0.3 * 4 + 0.2 * 7) / 0.8)
    assert r.unresolved == 0
    assert tree.asked == [""]  # nothing else to read


def test_single_token_ten_counts_as_ten():
    r = read_value(Tree({"": {"10": L(0.5), "2": L(0.5)}}), signed=False)
    assert r.value == pytest.approx(6.0)


@given(st.dictionaries(st.sampled_from([str(d) for d in range(10)] + ["10"]), st.floats(-20, 0), min_size=1))
def test_unsigned_value_is_within_0_and_10(top):
    r = read_value(Tree({"": top}), signed=False)
    assert -1e-9 <= r.value <= 10 + 1e-9


def test_unsigned_ignores_minus_and_never_follows_it():
    tree = Tree({"": {"-": L(0.5), "3": L(0.5)}, "-": {"9": 0.0}})
    r = read_value(tree, signed=False)
    assert r.value == pytest.approx(3.0)
    assert tree.asked == [""]


def test_no_logprobs_or_no_number_raises():
    with pytest.raises(SimulationError, match="no logprobs"):
        read_value(Tree({}), signed=False)
    with pytest.raises(SimulationError, match="no number"):
        read_value(Tree({"": {"unk": 0.0}}), signed=False)
    # A minus sign alone is not a number for an unsigned target.
    with pytest.raises(SimulationError, match="no number"):
        read_value(Tree({"": {"-": 0.0}}), signed=False)


# ----------------------------------------------------------------------------- signed


def test_signed_reads_the_minus_branch_through_after():
    tree = Tree({"": {"-": L(0.6), "2": L(0.4)}, "-": {"8": L(0.5), "6": L(0.5)}})
    r = read_value(tree, signed=True)
    assert r.value == pytest.approx(0.4 * 2 + 0.6 * -7)
    assert tree.asked == ["", "-"] and r.unresolved == 0


def test_signed_all_mass_on_minus():
    r = read_value(Tree({"": {"-": 0.0}, "-": {"3": 0.0}}), signed=True)
    assert r.value == pytest.approx(-3.0)


def test_signed_minus_below_threshold_is_not_followed():
    # 1% of the number mass: not worth a call; the unread branch counts as UNREAD_NEGATIVE.
    tree = Tree({"": {"-": L(0.01), "5": L(0.99)}, "-": {"9": 0.0}})
    r = read_value(tree, signed=True, threshold=0.05)
    assert tree.asked == [""]
    assert r.value == pytest.approx(0.99 * 5 + 0.01 * UNREAD_NEGATIVE)
    assert r.unresolved == 0  # below the threshold: approximated on purpose, not "unresolved"


def test_signed_minus_branch_that_cannot_be_read_is_counted():
    tree = Tree({"": {"-": L(0.5), "4": L(0.5)}})  # after("-") -> None (a chat reply)
    r = read_value(tree, signed=True)
    assert tree.asked == ["", "-"]
    assert r.value == pytest.approx(0.5 * 4 + 0.5 * UNREAD_NEGATIVE)
    assert r.unresolved == 1


def test_signed_minus_branch_without_digits_is_counted_as_unresolved():
    # The follow-up came back but shows no digit: the magnitude is unread and approximated,
    # which is exactly what `unresolved` exists to report.
    tree = Tree({"": {"-": L(0.5), "4": L(0.5)}, "-": {"\n": 0.0}})
    r = read_value(tree, signed=True)
    assert r.value == pytest.approx(0.5 * 4 + 0.5 * UNREAD_NEGATIVE)
    assert r.unresolved == 1


@given(
    st.dictionaries(st.sampled_from([str(d) for d in range(10)] + ["-"]), st.floats(-20, 0), min_size=1),
    st.dictionaries(st.sampled_from([str(d) for d in range(10)]), st.floats(-20, 0), min_size=1),
)
def test_signed_value_is_within_minus_10_and_10(first, neg):
    r = read_value(Tree({"": first, "-": neg}), signed=True)
    assert -10 - 1e-9 <= r.value <= 10 + 1e-9


# ----------------------------------------------------------------------------- split 1 vs 10


def test_mass_on_one_counts_as_one_without_the_ten_followup():
    tree = Tree({"": {"1": L(0.6), "0": L(0.4)}, "1": {"0": 0.0}})
    r = read_value(tree, signed=False)
    assert tree.asked == [""]  # no follow-up unless asked for
    assert r.value == pytest.approx(0.6)


def test_ten_followup_follows_up_above_the_threshold():
    tree = Tree({"": {"1": L(0.6), "0": L(0.4)}, "1": {"0": L(0.5), "\n": L(0.5)}})
    r = read_value(tree, signed=False, ten_followup=True)
    assert tree.asked == ["", "1"]
    assert r.value == pytest.approx(0.6 * (0.5 * 1 + 0.5 * 10))


def test_ten_followup_not_below_the_threshold():
    tree = Tree({"": {"1": L(0.01), "5": L(0.99)}, "1": {"0": 0.0}})
    r = read_value(tree, signed=False, ten_followup=True, threshold=0.05)
    assert tree.asked == [""]
    assert r.value == pytest.approx(0.01 + 0.99 * 5)


def test_ten_followup_unreadable_branch_counts_as_one_and_unresolved():
    tree = Tree({"": {"1": L(0.5), "3": L(0.5)}})
    r = read_value(tree, signed=False, ten_followup=True)
    assert tree.asked == ["", "1"]
    assert r.value == pytest.approx(0.5 * 1 + 0.5 * 3)
    assert r.unresolved == 1


def test_ten_followup_in_the_negative_branch():
    tree = Tree({"": {"-": 0.0}, "-": {"1": 0.0}, "-1": {"0": 0.0}})
    r = read_value(tree, signed=True, ten_followup=True)
    assert tree.asked == ["", "-", "-1"]
    assert r.value == pytest.approx(-10.0)


def test_ten_followup_negative_branch_threshold_is_of_the_whole_number_mass():
    # "-1" carries 0.1 x 0.3 = 3% of the number mass: below the 5% threshold, so no call, even
    # though "1" is 30% of the "-" branch on its own.
    tree = Tree({"": {"-": L(0.1), "5": L(0.9)}, "-": {"1": L(0.3), "5": L(0.7)}, "-1": {"0": 0.0}})
    r = read_value(tree, signed=True, ten_followup=True, threshold=0.05)
    assert tree.asked == ["", "-"]
    assert r.value == pytest.approx(0.9 * 5 + 0.1 * -(0.3 * 1 + 0.7 * 5))
    # With more mass on "-" the same branch is worth reading.
    tree = Tree({"": {"-": L(0.5), "5": L(0.5)}, "-": {"1": L(0.3), "5": L(0.7)}, "-1": {"0": 0.0}})
    read_value(tree, signed=True, ten_followup=True, threshold=0.05)
    assert tree.asked == ["", "-", "-1"]


# ----------------------------------------------------------------------------- choosing a simulator


def test_make_simulator_modes():
    assert isinstance(make_simulator("one"), OneItemSimulator)
    assert isinstance(make_simulator("list"), ListSimulator) and make_simulator("list").mode == "list"
    assert make_simulator("list-logprobs").mode == "list-logprobs"
    assert isinstance(make_simulator("echo"), EchoSimulator)
    assert make_simulator("one", "chat").api == "chat"
    assert make_simulator("one", ten_followup=True).ten_followup is True


def test_make_simulator_refuses_echo_over_chat_clearly():
    with pytest.raises(ValueError, match=r"'echo'.*prompt logprobs.*--api completions"):
        make_simulator("echo", "chat")
    # Constructing it directly is refused too, naming the API it needs.
    with pytest.raises(ValueError, match="has no chat form"):
        EchoSimulator("chat")


def test_make_simulator_refuses_unknown_modes_and_apis():
    with pytest.raises(ValueError, match=r"'lists' is not one of") as err:
        make_simulator("lists")
    for mode in MODES:
        assert mode in str(err.value)
    with pytest.raises(ValueError, match="api 'grpc'"):
        make_simulator("one", "grpc")


EX = (Example("7", (Pair("beagle", 6), Pair("poodle", 10)), "dogs of many breeds"),)


def test_signed_context_refused_by_echo_before_any_call():
    with pytest.raises(ValueError, match="cannot predict signed"):
        EchoSimulator().predict(
            ScriptedClient(), SimContext("weight-label", EX, "insects", signed=True), ["kite"], seed=0
        )


def test_list_logprobs_over_chat_refused():
    with pytest.raises(ValueError, match="list-logprobs over chat"):
        ListSimulator("chat", logprobs=True).predict(
            ScriptedClient(), SimContext("weight-label", EX, "insects"), ["kite"], seed=0
        )


# ----------------------------------------------------------------------------- signed scoring end to end

N = 60
# Signed raw values: a third positive, a third negative, a third zero.
RAW = np.array([(i % 3 - 1) * (1 + i % 7) / 7.0 for i in range(N)])
TEXTS = tuple(f"class {i}" for i in range(N))
SIGNED = Target("m/l/5", "weight-label", TEXTS, RAW, polarity="both")
FEW = [FewShotNeuron(Target("m/l/1", "weight-label", TEXTS, RAW[::-1].copy(), polarity="both"), "reversed things")]
TRUE = {t: int(v) for t, v in zip(TEXTS, SIGNED.values, strict=False)}


def signed_answer(prompt, kw):
    """Puts the mass on "-" for items whose true value is negative, then answers the magnitude."""
    item, _, suffix = last_line(prompt).partition("\t")
    v = TRUE[item]
    if suffix == "-":
        top = {str(min(-v, 9)): L(0.9), "\n": L(0.1)}
    elif suffix:
        raise AssertionError(f"unexpected follow-up {suffix!r}")
    elif v < 0:
        top = {"-": L(0.9), "0": L(0.1)}
    else:
        top = {str(min(v, 9)): 0.0}
    return one_token(top)


def test_signed_scoring_through_the_default_one_item_simulator():
    assert SIGNED.signed and SIGNED.values.min() < 0 < SIGNED.values.max()
    client = ScriptedClient(signed_answer, model="fake")
    config = ScoreConfig(mode="one", protocol="uniform", n_items=20, n_fewshot_pairs=6, stop=StopRule(max_runs=4))
    assert config.mode == "one"  # the default simulator is the one under test
    r = score_target(client, "things", SIGNED, FEW, config, seed=0, progress=False)
    assert math.isfinite(r.mean) and r.mean > 80  # the oracle tracks the sign, so it scores high
    # the "-" branch was read, not approximated
    assert sum(last_line(prompt).partition("\t")[2] == "-" for prompt in client.prompts) > 0
    for p in r.details:
        for true, pred in zip(p.true, p.predicted, strict=False):
            if true < 0:
                # 0.9 of the mass on -|v|, 0.1 on 0: clearly negative, near 0.9 x true.
                assert pred == pytest.approx(0.9 * max(true, -9), abs=1e-3)
            else:
                assert pred >= 0
    assert r.calls == client.calls
