"""Reading numbers: the one reader of every simulator, and the list parser.

- `parse_value_list`: the integers of a written list (``list`` mode), tolerant but strict.
- The number reader, from logprobs: `number_distribution` (the number tokens 0..10 among a
  position's top logprobs), `token_mass` (one token, e.g. "-"), and `expected_value` (their
  expected value, the mass on "1" split between 1 and 10 where a next token says how). Every
  logprob mode reads through them: ``one`` through `read_value` (the token tree below a one-item
  prompt, follow-up calls for "-" and optionally "1"), ``list-logprobs`` through
  `values_from_generated` (the value slots of the list it wrote), ``echo`` at the prompt's slots.

What differs between the modes is only where the next token's logprobs come from, so how much of
"1" is 10 is read the way each source allows:
- ``list-logprobs``: the token the model wrote after "1" is in the reply: P("0") at that position.
- ``one`` (``ten_followup``): a follow-up call on ``prompt + "1"``; "0" against ending the number
  (anything but another digit), since "1" followed by another digit is outside 0..10.
- ``echo``: no continuation is visible, so the mass on "1" counts as 1 (as ``one`` without the
  follow-up).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from vse.llm.client import TokenLogprob
from vse.method.simulators.base import SimulationError

#: Value assumed for a negative branch whose magnitude was not read (the middle of -10..-1).
UNREAD_NEGATIVE = -5.0

# ----------------------------------------------------------------------------- sampled lists

#: A ``text<sep>value`` line, matched on the line *reversed*: anchored at the value end, the engine
#: backtracks only over the one run of separator characters, so the match is linear in the line's
#: length. (Matched forwards, ``^(.*?)(sep)(value)$`` retries the separator at every position of
#: the text: a line of 8,000 spaces took 5 s, 32,000 took 69 s, and once more per retry.)
#: The separator is tabs/spaces, or a colon with optional spaces; the value an optionally signed
#: whole number; the text is what comes before the separator nearest the value.
_PAIR_LINE = re.compile(r"\A\s*(?P<value>\d+[-+]?)(?:\s*:\s*|\s+)(?P<text>.*)\Z", re.DOTALL)
#: Longer numbers are outside every range we ask for; refusing them early also keeps `int()` from
#: raising a plain ValueError past its digit limit (4,300 digits).
_MAX_DIGITS = 12


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def parse_value_list(reply: str, texts: Sequence[str], *, low: int = 0, high: int = 10) -> list[int]:
    """Integers, one per expected text, from a reply that lists ``text<TAB>value`` lines.

    Tolerant where the meaning is unambiguous: surrounding chatter, blank lines, a leading
    ``<start>``, spaces instead of the tab, different case or spacing in the texts.
    Strict where it is not: the lines that look like pairs must name exactly the expected texts,
    in order, each with a whole number in [low, high]. Anything else raises SimulationError
    (and only that), saying what was wrong and on which line.
    """
    if not isinstance(reply, str):
        raise SimulationError(f"reply is {type(reply).__name__}, not text")
    body = reply.split("<end>", 1)[0]
    found: list[tuple[int, str, str]] = []  # (line number, text, value string)
    for number, line in enumerate(body.splitlines(), start=1):
        line = line.strip()
        if not line or line == "<start>":
            continue
        m = _PAIR_LINE.match(line[::-1])
        if m and m.group("text").strip():
            found.append((number, m.group("text")[::-1].strip(), m.group("value")[::-1]))
    expected = [_norm(t) for t in texts]
    if len(found) != len(expected):
        raise SimulationError(f"expected {len(expected)} value lines, found {len(found)}")
    values: list[int] = []
    for (number, text, value), want, original in zip(found, expected, texts, strict=True):
        if _norm(text) != want:
            raise SimulationError(f"line {number}: expected {original!r}, got {text!r}")
        if len(value.lstrip("+-")) > _MAX_DIGITS:
            raise SimulationError(f"line {number}: value of {len(value)} characters outside [{low}, {high}]")
        try:
            v = int(value)
        except ValueError as exc:  # \d accepts every Unicode decimal digit; int() may still refuse
            raise SimulationError(f"line {number}: {value[:20]!r} is not a whole number") from exc
        if not low <= v <= high:
            raise SimulationError(f"line {number}: value {v} outside [{low}, {high}]")
        values.append(v)
    return values


# ----------------------------------------------------------------------------- logprobs


def number_distribution(top: Mapping[str, float] | None, *, high: int = 10) -> dict[int, float]:
    """Probabilities of the number tokens 0..high among a position's top logprobs.

    The start of every mode's reading (list-logprobs, echo, and the one-item reader
    `read_value`). Keys are stripped of whitespace (servers send " 5" and "5");
    several keys for one number add up. Non-number tokens are dropped, so the result sums to the
    mass the model put on numbers (<= 1). A key "10" (tokenizers with one token for it) counts
    as 10. Empty for an empty or missing ``top``.
    """
    dist: dict[int, float] = {}
    for key, logprob in (top or {}).items():
        k = key.strip() if isinstance(key, str) else ""
        # isascii: str.isdigit also accepts "²" and "①", which int() refuses. The length check
        # keeps int() away from huge keys; a leading zero ("05") is not a number token.
        if k.isascii() and k.isdigit() and len(k) <= len(str(high)) and (len(k) == 1 or k[0] != "0") and int(k) <= high:
            p = _probability(logprob)
            if p is not None:
                dist[int(k)] = dist.get(int(k), 0.0) + p
    return dist


def expected_value(dist: Mapping[int, float], *, p_ten_given_one: float = 0.0) -> float:
    """Expected value of a number distribution, renormalised over the number tokens.

    ``p_ten_given_one`` splits the mass on "1" between 1 and 10 for tokenizers that write 10
    as "1","0". Raises SimulationError when no number token is present.
    """
    total = math.fsum(dist.values())
    if total <= 0:
        raise SimulationError("no number among the top tokens")
    return _value_mass(dist, min(max(p_ten_given_one, 0.0), 1.0)) / total


def _value_mass(dist: Mapping[int, float], p_ten_given_one: float) -> float:
    """Sum of probability x value over a number distribution, not renormalised: the one place a
    distribution becomes a value. The mass on "1" counts as 10 with ``p_ten_given_one``, else 1."""
    p1 = dist.get(1, 0.0)
    return math.fsum(p * d for d, p in dist.items() if d != 1) + p1 * (1.0 + 9.0 * p_ten_given_one)


def _probability(logprob: object) -> float | None:
    """exp(logprob) for a usable logprob (a finite number, capped at 0: a server's rounding may
    send 1e-7); None for anything else (null, NaN, text)."""
    if isinstance(logprob, bool) or not isinstance(logprob, (int, float)) or not math.isfinite(logprob):
        return None
    return math.exp(min(logprob, 0.0))


def token_mass(top: Mapping[str, float] | None, token: str) -> float:
    """Probability of ``token`` (keys stripped of whitespace, several keys adding up) among a
    position's top logprobs; 0 when ``top`` is empty or None."""
    if not top:
        return 0.0
    return math.fsum(
        p for k, lp in top.items() if isinstance(k, str) and k.strip() == token and (p := _probability(lp)) is not None
    )


def value_slots(tokens: Sequence[TokenLogprob], start_offset: int = 0) -> list[int]:
    """Indices of the tokens that begin a value: the first number token after a tab.

    ``start_offset`` skips tokens whose text starts before that character offset (used for
    echo, where only the target's filled list counts).
    """
    slots: list[int] = []
    offset = 0
    after_tab = False
    for i, tok in enumerate(tokens):
        text = tok.token
        if offset >= start_offset:
            stripped = text.lstrip("\t ")
            if (after_tab or text.startswith("\t")) and stripped[:1].isdigit():
                slots.append(i)
        after_tab = text.endswith("\t") or (after_tab and text.strip(" ") == "")
        offset += len(text)
    return slots


def values_from_generated(tokens: Sequence[TokenLogprob]) -> list[float]:
    """Expected values at every value slot of a generated list (``list-logprobs`` mode)."""
    values = []
    for i in value_slots(tokens):
        dist = number_distribution(tokens[i].top)
        q = 0.0
        if tokens[i].token.strip() == "1" and i + 1 < len(tokens):
            q = token_mass(tokens[i + 1].top, "0")
        values.append(expected_value(dist, p_ten_given_one=q))
    return values


@dataclass
class ValueReading:
    """The expected value of one item, and how it was read."""

    value: float
    unresolved: int = 0  # branches above the threshold that could not be read


def read_value(
    after: Callable[[str], Mapping[str, float] | None],
    *,
    signed: bool,
    threshold: float = 0.05,
    ten_followup: bool = False,
) -> ValueReading:
    """Expected value from the token tree below a one-item prompt (``one`` mode).

    ``after(suffix)`` returns the top logprobs of the token that follows ``prompt + suffix``
    (suffix "" is the first token), or None when that branch cannot be read. It is called for
    "" always; for "-" when signed; for "1" and "-1" (the follow-up that splits 1 from 10) only
    with ``ten_followup``; each only when the branch carries at least ``threshold`` of the number
    mass. Without the follow-up the mass on "1" counts as 1.
    """
    unresolved = 0

    def magnitude(prefix: str, dist: dict[int, float], total: float, share: float = 1.0) -> float:
        # share: the branch's part of the whole number mass ("-" branch: P("-")), so "-1" is
        # followed only when it carries `threshold` of the number mass, as documented above.
        nonlocal unresolved
        q = 0.0
        if ten_followup and share * dist.get(1, 0.0) / total >= threshold:
            top = after(prefix + "1")
            if top is None:
                unresolved += 1
            else:
                digits = number_distribution(top)
                stop = 1.0 - math.fsum(digits.values())  # mass on anything but another digit ends the number
                q = token_mass(top, "0") / max(token_mass(top, "0") + max(stop, 0.0), 1e-12) if digits else 0.0
        return _value_mass(dist, q)

    first = after("")
    if not first:
        raise SimulationError("no logprobs for the value token")
    dist = number_distribution(first)
    p_minus = token_mass(first, "-") if signed else 0.0
    total = math.fsum(dist.values()) + p_minus
    if total <= 0:
        raise SimulationError(f"no number among the top tokens: {sorted(first)[:8]}")
    ev = magnitude("", dist, total) if dist else 0.0
    if p_minus > 0:
        neg = UNREAD_NEGATIVE
        if p_minus / total >= threshold:
            top = after("-")
            ndist = number_distribution(top)
            if top is None or not ndist:
                unresolved += 1  # no magnitude read (no reply, or no digit in it): UNREAD_NEGATIVE stands
            else:
                ntotal = math.fsum(ndist.values())
                neg = -magnitude("-", ndist, ntotal, p_minus / total) / ntotal
        ev += p_minus * neg
    return ValueReading(ev / total, unresolved)
