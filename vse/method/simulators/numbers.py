"""Simulation's reply readers: parse sampled lists, read expected values from logprobs.

The simulators themselves (one item per call, whole lists, echo) live behind one interface in
`vse.method.simulators.llm`; this module holds what they share: `Simulation` (what a pass produced),
`SimulationError`, the tolerant-but-strict list parser, the number-token distributions, and the
list and echo calls.

- ``list``: the model writes the whole filled list in one reply; a reply that does not give
  exactly one integer per expected line, in order, is retried (fresh seed, non-zero temperature)
  and after ``max_retries`` recorded as a failure.
- ``list-logprobs``: the same call with ``logprobs``; the prediction at each value slot is the
  *expected value* over the number tokens (as OpenAI's neuron-explainer does). Where the model
  wrote "1" the next position's distribution splits it between 1 and 10.
- ``echo``: the list layout with placeholder values, sent once with ``echo`` so the server
  returns prompt logprobs: every value slot in one forward pass (llama.cpp: ``--logits_all
  true``; slow on a CPU). No continuation is visible, so the mass on "1" counts as 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vse.llm.client import LLMClient, TokenLogprob, Usage


class SimulationError(ValueError):
    """A simulation reply could not be turned into values (after retries, where they apply)."""


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
    for (number, text, value), want, original in zip(found, expected, texts):
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

    The one number reader of every mode (list-logprobs, echo, and the one-item reader
    `vse.method.simulators.llm.read_value`). Keys are stripped of whitespace (servers send " 5" and "5");
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
    total = sum(dist.values())
    if total <= 0:
        raise SimulationError("no number among the top tokens")
    q = min(max(p_ten_given_one, 0.0), 1.0)
    ev = 0.0
    for value, p in dist.items():
        if value == 1:
            ev += p * (1.0 * (1 - q) + 10.0 * q)
        else:
            ev += p * value
    return ev / total


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
    return sum(
        p for k, lp in top.items() if isinstance(k, str) and k.strip() == token and (p := _probability(lp)) is not None
    )


@dataclass
class Simulation:
    """What one simulation pass produced.

    values: one predicted value per requested text (expected values or sampled integers).
    calls: LLM calls made (retries and follow-ups included).
    usage: tokens those calls used.
    retries: replies rejected and asked again (list modes).
    unresolved: one-item branches ("1" vs "10", a minus sign) above the follow-up threshold that
        could not be read and were approximated (chat; see vse.method.simulators.llm.read_value).
    """

    values: list[float]
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    retries: int = 0
    unresolved: int = 0


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


def simulate_list(
    client: LLMClient,
    prompt: str | list[dict],
    texts: Sequence[str],
    *,
    logprobs: bool,
    max_retries: int = 2,
    retry_temperature: float = 0.7,
    seed: int = 0,
    top_logprobs: int = 20,
    low: int = 0,
    chat: bool = False,
) -> Simulation:
    """The whole list in one reply; parse it, retry a malformed one, then give up loudly.

    prompt: the completion prompt; with ``chat`` the messages (``/chat/completions``, whose reply
    may begin with the ``<start>`` the prompt ends with). Attempt k samples at temperature 0, then
    ``retry_temperature``, with seed ``seed + k``.
    """
    if chat and logprobs:
        raise ValueError("list-logprobs over chat is not implemented: use --api completions, or mode 'one' or 'list'")
    out = Simulation(values=[])
    max_tokens = 12 * len(texts) + 16  # a line is a few tokens of text, a tab, a number and \n
    errors: list[str] = []
    for attempt in range(max_retries + 1):
        temperature = 0.0 if attempt == 0 else retry_temperature
        if chat:
            completion = client.chat(prompt, max_tokens=max_tokens, temperature=temperature, seed=seed + attempt)  # type: ignore[arg-type]
            text = completion.text.replace("<start>", "", 1)
        else:
            completion = client.complete(
                prompt,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed + attempt,
                stop=["<end>"],
                logprobs=top_logprobs if logprobs else None,
            )
            text = completion.text
        out.calls += 1
        out.usage = out.usage + completion.usage
        try:
            sampled = parse_value_list(text, texts, low=low)
            if logprobs:
                values = values_from_generated(completion.tokens)
                if len(values) != len(texts):
                    raise SimulationError(f"found {len(values)} value slots in the logprobs, expected {len(texts)}")
                out.values = values
            else:
                out.values = [float(v) for v in sampled]
            return out
        except SimulationError as err:
            errors.append(f"attempt {attempt + 1}: {err}")
            out.retries += 1
    raise SimulationError("; ".join(errors))


def simulate_echo(client: LLMClient, prompt: str, texts: Sequence[str], *, top_logprobs: int = 20) -> Simulation:
    """Every value slot scored from prompt logprobs in a single call (``echo`` mode)."""
    completion = client.complete(prompt, max_tokens=1, temperature=0.0, logprobs=top_logprobs, echo=True)
    out = Simulation(values=[], calls=1, usage=completion.usage)
    tokens = completion.prompt_tokens or []
    start = prompt.rfind("<start>\n")
    slots = value_slots(tokens, start_offset=start)
    if len(slots) != len(texts):
        raise SimulationError(f"echo: found {len(slots)} value slots in the prompt logprobs, expected {len(texts)}")
    out.values = [expected_value(number_distribution(tokens[i].top)) for i in slots]
    return out
