"""The ``echo`` simulator: every value slot of the list layout scored from prompt logprobs.

The list layout with placeholder values is sent once with ``echo``, so the server returns prompt
logprobs: every value slot in one forward pass (llama.cpp: ``--logits_all true``; slow on a CPU).
No continuation is visible, so the mass on "1" counts as 1. Completions only (chat has no echo).
"""

from __future__ import annotations

from collections.abc import Sequence

from vse.core.vocab import Api, Mode
from vse.llm.client import LLMClient
from vse.method.prompts import TARGET_NAME, simulate_echo_prompt
from vse.method.simulators.base import Run, SimContext, Simulation, SimulationError, Simulator
from vse.method.simulators.numbers import expected_value, number_distribution, value_slots


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


class EchoSimulator(Simulator):
    """Prompt logprobs: every value slot in one forward pass. Completions only (chat has no echo)."""

    mode = Mode.ECHO
    signed_ok = False
    apis = (Api.COMPLETIONS,)

    def simulate(self, client: LLMClient | None, ctx: SimContext, texts: Sequence[str], run: Run) -> Simulation:
        prompt = simulate_echo_prompt(ctx.kind, ctx.examples, TARGET_NAME, ctx.explanation, texts)
        return simulate_echo(client, prompt, texts, top_logprobs=self.top_logprobs)
