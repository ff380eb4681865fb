"""The ``list`` and ``list-logprobs`` simulators: the paper's layout, the whole list in one reply.

- ``list``: the model writes the whole filled list in one reply; a reply that does not give
  exactly one integer per expected line, in order, is retried (fresh seed, non-zero temperature)
  and after ``max_retries`` recorded as a failure.
- ``list-logprobs``: the same call with ``logprobs``; the prediction at each value slot is the
  *expected value* over the number tokens (as OpenAI's neuron-explainer does), read by
  `vse.method.simulators.numbers.values_from_generated`.

Chat and completions share one retry loop (`simulate_list`, through `vse.method.retry`).
"""

from __future__ import annotations

from collections.abc import Sequence

from vse.core.vocab import Api, Mode
from vse.llm.client import LLMClient
from vse.method.prompts import TARGET_NAME, simulate_list_messages, simulate_list_prompt
from vse.method.retry import Rejected, first_usable
from vse.method.simulators.base import Run, SimContext, Simulation, SimulationError, Simulator
from vse.method.simulators.numbers import parse_value_list, values_from_generated


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

    def attempt(k: int) -> Simulation:
        temperature = 0.0 if k == 0 else retry_temperature
        if chat:
            completion = client.chat(prompt, max_tokens=max_tokens, temperature=temperature, seed=seed + k)  # type: ignore[arg-type]
            text = completion.text.replace("<start>", "", 1)
        else:
            completion = client.complete(
                prompt,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed + k,
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
        except SimulationError as err:
            out.retries += 1
            raise Rejected(f"attempt {k + 1}: {err}") from None
        return out

    result, reasons = first_usable(max_retries + 1, attempt)
    if result is None:
        raise SimulationError("; ".join(reasons))
    return result


class ListSimulator(Simulator):
    """The whole list in one reply: sampled integers (``list``) or expected values (``list-logprobs``)."""

    mode = Mode.LIST

    def __init__(self, api: str = Api.COMPLETIONS, *, top_logprobs: int = 20, logprobs: bool = False) -> None:
        super().__init__(api, top_logprobs=top_logprobs)
        self.logprobs = logprobs
        self.mode = Mode.LIST_LOGPROBS if logprobs else Mode.LIST

    def simulate(self, client: LLMClient | None, ctx: SimContext, texts: Sequence[str], run: Run) -> Simulation:
        low = -10 if ctx.signed else 0
        if self.api == Api.COMPLETIONS:
            prompt = simulate_list_prompt(
                ctx.kind, ctx.examples, TARGET_NAME, ctx.explanation, texts, signed=ctx.signed
            )
            return simulate_list(
                client, prompt, texts, logprobs=self.logprobs, seed=run.seed, top_logprobs=self.top_logprobs, low=low
            )
        messages = simulate_list_messages(ctx.kind, ctx.examples, ctx.explanation, texts, signed=ctx.signed)
        return simulate_list(client, messages, texts, logprobs=self.logprobs, seed=run.seed, low=low, chat=True)
