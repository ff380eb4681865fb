"""The ``one`` simulator (the default LLM one): one item per call on a shared prefix.

The prompt is a prefix that is byte-identical for every item, then the item; the reply's first
token is the value, read as an expected value over the number tokens of the top logprobs. A
prediction depends only on (model, API, prefix, item), so it is *per item*: the store keeps it and
every protocol, resample or mismatched comparison reads it again for free. Items are independent,
so the store's misses go to the server ``in_flight`` at a time (llama-server answers its slots in
parallel), with the same result as one by one.

Reading a value (`vse.method.simulators.numbers.read_value`). Qwen and Llama tokenizers write 10 as
"1","0" and -7 as "-","7": the first token alone is ambiguous. The call asks for one token at
temperature 0. A minus sign (signed targets) is followed up with a call on ``prompt + "-"`` when it
carries at least ``followup_threshold`` of the number mass, to read the magnitude. The 1-versus-10
split costs a follow-up call on almost every item (P("1") is rarely small), doubling the calls; by
default (``ten_followup=False``; `ScoreConfig.split_ten` in recorded configs) the mass on "1"
counts as 1. Measured on the recorded unit 1089 (`python bench/followup.py`, 1600 items, 32
passes): half the calls; the predictions with and without the split correlate 0.985 (mean
difference 0.32 on the 0..10 scale); pass scores fall by 1.2 points on average (mean |change| 2.1,
at most 5.1): a small, measured loss for half the cost. ``ten_followup=True`` restores the
follow-up. Over chat a reply cannot be continued: a signed call asks for two tokens so the greedy
path shows the magnitude, and an unread branch counts as 1 (for "1") or -5 (for "-"), counted in
`Simulation.unresolved`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from vse.core.vocab import Api, Mode
from vse.llm.client import LLMClient, Usage
from vse.llm.errors import RequestDeferred
from vse.method.prompts import TARGET_NAME, simulate_one_messages, simulate_one_prefix, simulate_one_prompt
from vse.method.simulators.base import Run, SimContext, Simulation, SimulationError, Simulator
from vse.method.simulators.numbers import ValueReading, read_value


class OneItemSimulator(Simulator):
    """One item per call on a shared prefix; expected values; predictions shareable per item."""

    mode = Mode.ONE
    per_item = True

    def __init__(
        self,
        api: str = Api.COMPLETIONS,
        *,
        top_logprobs: int = 20,
        followup_threshold: float = 0.05,
        ten_followup: bool = False,
    ) -> None:
        super().__init__(api, top_logprobs=top_logprobs)
        self.followup_threshold = followup_threshold
        self.ten_followup = ten_followup

    def prefix_id(self, client: LLMClient, ctx: SimContext) -> str:
        """Identity of everything but the item: model, API, knobs and the exact prompt prefix."""
        if self.api == Api.COMPLETIONS:
            prefix: object = simulate_one_prefix(
                ctx.kind, ctx.examples, TARGET_NAME, ctx.explanation, signed=ctx.signed
            )
        else:
            prefix = simulate_one_messages(ctx.kind, ctx.examples, ctx.explanation, "", signed=ctx.signed)
        model = getattr(getattr(client, "config", None), "model", None)  # test fakes may carry no config
        blob = json.dumps(
            [model, self.api, self.top_logprobs, self.followup_threshold, self.ten_followup, ctx.signed, prefix],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _read(self, client: LLMClient, ctx: SimContext, text: str) -> tuple[ValueReading, int, Usage]:
        calls, usage = 0, Usage()
        seen: dict[str, Mapping[str, float] | None] = {}

        if self.api == Api.COMPLETIONS:
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
            reading = read_value(
                after, signed=ctx.signed, threshold=self.followup_threshold, ten_followup=self.ten_followup
            )
        except SimulationError as err:
            raise SimulationError(f"item {text!r}: {err}") from None
        return reading, calls, usage

    def simulate(self, client: LLMClient | None, ctx: SimContext, texts: Sequence[str], run: Run) -> Simulation:
        """Values for `texts`, in their order; the store's misses are sent `in_flight` at a time.

        Identical to predicting one text after the other, whatever `in_flight`: values are placed
        by position, calls and usage summed in text order, the store filled in text order, and a
        text that occurs twice is predicted once (its later copies read the store, as they would
        one after the other). Requests differ only in their order, and a cassette matches each by
        its bytes, so a recording replays with any `in_flight`. When a text cannot be read, the
        error of the first such text (in order) is raised and only the texts before it are stored,
        as one after the other; with `in_flight` > 1 the texts after it may already have been sent.
        """
        store = run.store
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
        outcomes = self._read_all(client, ctx, todo, run.in_flight)
        out = Simulation(values=[])
        for text, outcome in zip(todo, outcomes, strict=False):  # outcomes stop at the first error
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
        warmer = getattr(client, "warmer", None)
        if warmer is not None and in_flight > 1 and len(texts) > 1 and self.api == Api.COMPLETIONS:
            # Every prompt starts with this prefix: computed once and copied into every slot, each
            # prediction then costs its own few tokens (vse.llm.slots). Changes no request or reply.
            warmer.warm(simulate_one_prefix(ctx.kind, ctx.examples, TARGET_NAME, ctx.explanation, signed=ctx.signed))
        if in_flight == 1 or len(texts) <= 1:
            outcomes: list = []
            for text in texts:
                try:
                    outcomes.append(self._read(client, ctx, text))
                except Exception as err:  # noqa: BLE001 - handed back in order, raised by `predict`
                    outcomes.append(err)
                    if not isinstance(err, RequestDeferred):
                        break
            return _first_error_last(outcomes)
        pool = ThreadPoolExecutor(max_workers=min(in_flight, len(texts)), thread_name_prefix="vse-predict")
        try:
            futures = [pool.submit(self._read, client, ctx, text) for text in texts]
            for future in as_completed(futures):
                # A request held back for a batch is no failure: the pass's other requests are collected too.
                if future.exception() is not None and not isinstance(future.exception(), RequestDeferred):
                    for other in futures:
                        other.cancel()  # the queue runs in order: what is not started comes after
                    break
            outcomes = []
            for future in futures:
                if future.cancelled():
                    break
                err = future.exception()  # waits for the ones still running
                outcomes.append(err if err is not None else future.result())
                if err is not None and not isinstance(err, RequestDeferred):
                    break
            return _first_error_last(outcomes)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: nothing new is sent


def _first_error_last(outcomes: list) -> list:
    """``outcomes`` cut after the first error, as `_read_all` promises; only `RequestDeferred` (batch
    collection: nothing was sent) lets the texts after it be asked as well."""
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            return outcomes[: i + 1]
    return outcomes
