"""The simulators behind one interface: given an explanation, predict a neuron's values for texts.

A `Simulator` turns (explanation, few-shot examples, texts) into predicted values. The scoring
loop only calls `Simulator.predict`; what a mode supports (signed values, the chat API, sharing
predictions item by item through a `PredictionStore`) is declared on its class, so a new mode
touches this file only.

Modes (`MODES`):
- ``one``: one item per call (the default). The prompt is a prefix that is byte-identical for every
  item, then the item; the reply's first token is the value, read as an expected value over the
  number tokens of the top logprobs. A prediction depends only on (model, API, prefix, item), so
  it is *per item*: the store keeps it and every protocol, resample or mismatched comparison reads
  it again for free. Items are independent, so the store's misses go to the server ``in_flight``
  at a time (llama-server answers its slots in parallel), with the same result as one by one.
- ``list`` / ``list-logprobs``: the paper's layout, the whole list in one reply (sampled integers,
  or expected values at each value slot).
- ``echo``: prompt logprobs, every slot in one forward pass (completions API only).

Reading a one-item value (``read_value``). Qwen and Llama tokenizers write 10 as "1","0" and -7 as
"-","7": the first token alone is ambiguous. The call asks for one token at temperature 0. A minus
sign (signed targets) is followed up with a call on ``prompt + "-"`` when it carries at least
``followup_threshold`` of the number mass, to read the magnitude. The 1-versus-10 split costs a
follow-up call on almost every item (P("1") is rarely small), doubling the calls; by default
(``split_ten=False``) the mass on "1" counts as 1. Measured on the recorded unit 1089
(`python bench/followup.py`, 1600 items, 32 passes): half the calls; the predictions with and
without the split correlate 0.985 (mean difference 0.32 on the 0..10 scale); pass scores fall by
1.2 points on average (mean |change| 2.1, at most 5.1): a small, measured loss for half the cost.
``split_ten=True`` restores the follow-up. Over chat a reply cannot
be continued: a signed call asks for two tokens so the greedy path shows the magnitude, and an
unread branch counts as 1 (for "1") or -5 (for "-"), counted in `Simulation.unresolved`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import ClassVar

from vse.llm.client import LLMClient, Usage
from vse.method.prediction_store import PredictionStore
from vse.method.prompts import (
    TARGET_NAME,
    Example,
    simulate_echo_prompt,
    simulate_list_messages,
    simulate_list_prompt,
    simulate_one_messages,
    simulate_one_prefix,
    simulate_one_prompt,
)
from vse.method.simulators.numbers import (
    Simulation,
    SimulationError,
    number_distribution,
    simulate_echo,
    simulate_list,
    token_mass,
)

MODES = ("one", "list", "list-logprobs", "echo", "embedding")
APIS = ("completions", "chat")

#: Value assumed for a negative branch whose magnitude was not read (the middle of -10..-1).
UNREAD_NEGATIVE = -5.0


@dataclass(frozen=True)
class SimContext:
    """Everything a prediction depends on besides the item.

    kind: the pair kind of the target ("weight-label", ...): it picks the prompt's wording.
    examples: the few-shot neurons as shown (pairs drawn once per scoring run).
    explanation: the text that completes "the main thing this neuron does is find".
    signed: values are -10..10 (App. C.3.2) instead of 0..10.
    """

    kind: str
    examples: tuple[Example, ...]
    explanation: str
    signed: bool = False


# ----------------------------------------------------------------------------- reading numbers
# One number reader for every mode: `vse.method.simulators.numbers.number_distribution` (the number tokens
# 0..10, "10" as one token included) and `vse.method.simulators.numbers.token_mass` (one token, e.g. "-").


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
    split_ten: bool = False,
) -> ValueReading:
    """Expected value from the token tree below the prompt.

    ``after(suffix)`` returns the top logprobs of the token that follows ``prompt + suffix``
    (suffix "" is the first token), or None when that branch cannot be read. It is called for
    "" always; for "-" when signed; for "1" and "-1" (split 1 vs 10) only with ``split_ten``; each
    only when the branch carries at least ``threshold`` of the number mass.
    """
    unresolved = 0

    def magnitude(prefix: str, dist: dict[int, float], total: float, share: float = 1.0) -> float:
        # share: the branch's part of the whole number mass ("-" branch: P("-")), so "-1" is
        # followed only when it carries `threshold` of the number mass, as documented above.
        nonlocal unresolved
        q = 0.0
        p1 = dist.get(1, 0.0)
        if split_ten and share * p1 / total >= threshold:
            top = after(prefix + "1")
            if top is None:
                unresolved += 1
            else:
                digits = number_distribution(top)
                stop = 1.0 - sum(digits.values())  # mass on anything but another digit ends the number
                q = token_mass(top, "0") / max(token_mass(top, "0") + max(stop, 0.0), 1e-12) if digits else 0.0
        ev = sum(p * d for d, p in dist.items() if d != 1) + p1 * (1.0 + 9.0 * q)
        return ev

    first = after("")
    if not first:
        raise SimulationError("no logprobs for the value token")
    dist = number_distribution(first)
    p_minus = token_mass(first, "-") if signed else 0.0
    total = sum(dist.values()) + p_minus
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
                ntotal = sum(ndist.values())
                neg = -magnitude("-", ndist, ntotal, p_minus / total) / ntotal
        ev += p_minus * neg
    return ValueReading(ev / total, unresolved)


# ----------------------------------------------------------------------------- the interface


class Simulator:
    """Predicts values for texts from an explanation. Subclasses declare what they support.

    mode: the name in `MODES`.
    per_item: a prediction depends on the item alone (given the context), so a store may keep it.
    signed_ok: handles signed (-10..10) targets.
    apis: the endpoints it can use.
    """

    mode: ClassVar[str]
    per_item: ClassVar[bool] = False
    signed_ok: ClassVar[bool] = True
    apis: ClassVar[tuple[str, ...]] = APIS

    def __init__(self, api: str = "completions", *, top_logprobs: int = 20) -> None:
        if api not in APIS:
            raise ValueError(f"api {api!r} is not one of {APIS}")
        if api not in self.apis:
            raise ValueError(f"simulation mode {self.mode!r} has no {api} form (it needs {', '.join(self.apis)})")
        self.api = api
        self.top_logprobs = top_logprobs

    def check(self, ctx: SimContext) -> None:
        if ctx.signed and not self.signed_ok:
            raise ValueError(f"simulation mode {self.mode!r} cannot predict signed values")

    def predict(
        self,
        client: LLMClient,
        ctx: SimContext,
        texts: Sequence[str],
        *,
        seed: int,
        store: PredictionStore | None = None,
        in_flight: int = 1,
    ) -> Simulation:
        raise NotImplementedError


class OneItemSimulator(Simulator):
    """One item per call on a shared prefix; expected values; predictions shareable per item."""

    mode = "one"
    per_item = True

    def __init__(
        self,
        api: str = "completions",
        *,
        top_logprobs: int = 20,
        followup_threshold: float = 0.05,
        split_ten: bool = False,
    ) -> None:
        super().__init__(api, top_logprobs=top_logprobs)
        self.followup_threshold = followup_threshold
        self.split_ten = split_ten

    def prefix_id(self, client: LLMClient, ctx: SimContext) -> str:
        """Identity of everything but the item: model, API, knobs and the exact prompt prefix."""
        if self.api == "completions":
            prefix: object = simulate_one_prefix(
                ctx.kind, ctx.examples, TARGET_NAME, ctx.explanation, signed=ctx.signed
            )
        else:
            prefix = simulate_one_messages(ctx.kind, ctx.examples, ctx.explanation, "", signed=ctx.signed)
        model = getattr(getattr(client, "config", None), "model", None)  # test fakes may carry no config
        blob = json.dumps(
            [model, self.api, self.top_logprobs, self.followup_threshold, self.split_ten, ctx.signed, prefix],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _read(self, client: LLMClient, ctx: SimContext, text: str) -> tuple[ValueReading, int, Usage]:
        calls, usage = 0, Usage()
        seen: dict[str, Mapping[str, float] | None] = {}

        if self.api == "completions":
            prompt = simulate_one_prompt(
                simulate_one_prefix(ctx.kind, ctx.examples, TARGET_NAME, ctx.explanation, signed=ctx.signed), text
            )

            def ask(suffix: str) -> None:
                nonlocal calls, usage
                reply = client.complete(prompt + suffix, max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
                calls, usage = calls + 1, usage + reply.usage
                if reply.tokens:
                    seen[suffix] = reply.tokens[0].top
                    if len(reply.tokens) > 1:
                        seen.setdefault(suffix + reply.tokens[0].token.strip(), reply.tokens[1].top)
        else:
            messages = simulate_one_messages(ctx.kind, ctx.examples, ctx.explanation, text, signed=ctx.signed)

            def ask(suffix: str) -> None:
                nonlocal calls, usage
                if suffix:  # a chat reply cannot be continued: the branch stays unread
                    seen[suffix] = None
                    return
                reply = client.chat(
                    messages,
                    max_tokens=2 if ctx.signed else 1,
                    temperature=0.0,
                    logprobs=True,
                    top_logprobs=self.top_logprobs,
                )
                calls, usage = calls + 1, usage + reply.usage
                if reply.tokens:
                    seen[""] = reply.tokens[0].top
                    if len(reply.tokens) > 1:
                        seen.setdefault(reply.tokens[0].token.strip(), reply.tokens[1].top)

        def after(suffix: str) -> Mapping[str, float] | None:
            if suffix not in seen:
                ask(suffix)
            return seen.get(suffix)

        try:
            reading = read_value(after, signed=ctx.signed, threshold=self.followup_threshold, split_ten=self.split_ten)
        except SimulationError as err:
            raise SimulationError(f"item {text!r}: {err}") from None
        return reading, calls, usage

    def predict(
        self,
        client: LLMClient,
        ctx: SimContext,
        texts: Sequence[str],
        *,
        seed: int,
        store: PredictionStore | None = None,
        in_flight: int = 1,
    ) -> Simulation:
        """Values for `texts`, in their order; the store's misses are sent `in_flight` at a time.

        Identical to predicting one text after the other, whatever `in_flight`: values are placed
        by position, calls and usage summed in text order, the store filled in text order, and a
        text that occurs twice is predicted once (its later copies read the store, as they would
        one after the other). Requests differ only in their order, and a cassette matches each by
        its bytes, so a recording replays with any `in_flight`. When a text cannot be read, the
        error of the first such text (in order) is raised and only the texts before it are stored,
        as one after the other; with `in_flight` > 1 the texts after it may already have been sent.
        """
        self.check(ctx)
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        prefix = self.prefix_id(client, ctx) if store is not None else ""
        values: list[float | None] = [None] * len(texts)
        misses: dict[str, list[int]] = {}  # text -> its positions, in first-seen order
        for i, text in enumerate(texts):
            if text in misses:
                misses[text].append(i)  # predicted once; the store (if any) is asked again below
                continue
            hit = store.get(prefix, text) if store is not None else None
            if hit is None:
                misses[text] = [i]
            else:
                values[i] = hit
        todo = list(misses)
        outcomes = self._read_all(client, ctx, todo, in_flight)
        out = Simulation(values=[])
        for text, outcome in zip(todo, outcomes):
            if isinstance(outcome, BaseException):
                raise outcome
            reading, calls, usage = outcome
            out.calls += calls
            out.usage = out.usage + usage
            out.unresolved += reading.unresolved
            first, *later = misses[text]
            values[first] = reading.value
            if store is not None:
                store.put(prefix, text, reading.value)
            for i in later:
                values[i] = store.get(prefix, text) if store is not None else reading.value
        out.values = [float(v) for v in values]  # type: ignore[arg-type] - every position is filled above
        return out

    def _read_all(self, client: LLMClient, ctx: SimContext, texts: list[str], in_flight: int) -> list:
        """`_read` of each text, in order: its (reading, calls, usage), or the error it raised.

        The list stops after the first error (in text order). One at a time, nothing after it is
        sent; several in flight, texts not yet started when an error comes back are not sent.
        """
        if in_flight == 1 or len(texts) <= 1:
            outcomes: list = []
            for text in texts:
                try:
                    outcomes.append(self._read(client, ctx, text))
                except Exception as err:  # noqa: BLE001 - handed back in order, raised by `predict`
                    outcomes.append(err)
                    break
            return outcomes
        pool = ThreadPoolExecutor(max_workers=min(in_flight, len(texts)), thread_name_prefix="vse-predict")
        try:
            futures = [pool.submit(self._read, client, ctx, text) for text in texts]
            for future in as_completed(futures):
                if future.exception() is not None:
                    for other in futures:
                        other.cancel()  # the queue runs in order: what is not started comes after
                    break
            outcomes = []
            for future in futures:
                if future.cancelled():
                    break
                err = future.exception()  # waits for the ones still running
                outcomes.append(err if err is not None else future.result())
                if err is not None:
                    break
            return outcomes
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: nothing new is sent


class ListSimulator(Simulator):
    """The whole list in one reply: sampled integers (``list``) or expected values (``list-logprobs``)."""

    mode = "list"

    def __init__(self, api: str = "completions", *, top_logprobs: int = 20, logprobs: bool = False) -> None:
        super().__init__(api, top_logprobs=top_logprobs)
        self.logprobs = logprobs
        self.mode = "list-logprobs" if logprobs else "list"

    def predict(
        self,
        client: LLMClient,
        ctx: SimContext,
        texts: Sequence[str],
        *,
        seed: int,
        store: PredictionStore | None = None,
        in_flight: int = 1,
    ) -> Simulation:
        self.check(ctx)
        low = -10 if ctx.signed else 0
        if self.api == "completions":
            prompt = simulate_list_prompt(
                ctx.kind, ctx.examples, TARGET_NAME, ctx.explanation, texts, signed=ctx.signed
            )
            return simulate_list(
                client, prompt, texts, logprobs=self.logprobs, seed=seed, top_logprobs=self.top_logprobs, low=low
            )
        messages = simulate_list_messages(ctx.kind, ctx.examples, ctx.explanation, texts, signed=ctx.signed)
        return simulate_list(client, messages, texts, logprobs=self.logprobs, seed=seed, low=low, chat=True)


class EchoSimulator(Simulator):
    """Prompt logprobs: every value slot in one forward pass. Completions only (chat has no echo)."""

    mode = "echo"
    signed_ok = False
    apis = ("completions",)

    def predict(
        self,
        client: LLMClient,
        ctx: SimContext,
        texts: Sequence[str],
        *,
        seed: int,
        store: PredictionStore | None = None,
        in_flight: int = 1,
    ) -> Simulation:
        self.check(ctx)
        prompt = simulate_echo_prompt(ctx.kind, ctx.examples, TARGET_NAME, ctx.explanation, texts)
        return simulate_echo(client, prompt, texts, top_logprobs=self.top_logprobs)


def make_simulator(
    mode: str, api: str = "completions", *, top_logprobs: int = 20, split_ten: bool = False, embeddings=None
) -> Simulator:
    """The simulator for a mode name; a clear error for an unknown mode or an impossible pairing.

    embeddings: the `vse.method.simulators.embedding.EmbeddingStore` the ``embedding`` mode reads (no LLM).
    """
    if mode == "embedding":
        if embeddings is None:
            raise ValueError(
                "simulation mode 'embedding' needs an embedding store (vse.method.simulators.embedding.EmbeddingStore)"
            )
        from vse.method.simulators.embedding import EmbeddingSimulator  # it builds on this module

        return EmbeddingSimulator(embeddings)
    if mode == "one":
        return OneItemSimulator(api, top_logprobs=top_logprobs, split_ten=split_ten)
    if mode in ("list", "list-logprobs"):
        return ListSimulator(api, top_logprobs=top_logprobs, logprobs=mode == "list-logprobs")
    if mode == "echo":
        if api == "chat":
            raise ValueError(
                "simulation mode 'echo' needs prompt logprobs, which /chat/completions does not offer: use --api completions"
            )
        return EchoSimulator(api, top_logprobs=top_logprobs)
    raise ValueError(f"simulation mode {mode!r} is not one of {MODES}")
