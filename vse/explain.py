"""Explanation generation: show the LLM a neuron's strongest pairs, let it finish the sentence.

Following the paper (App. B.1.2 / B.2.2, "Top" strategy): the target's and the few-shot
neurons' highest pairs are shown in ascending order, so the strongest come last, right before
the sentence the model completes. Best-of-N: N explanations are drawn at a non-zero
temperature with seeds 0..N-1 (fixed seeds keep the requests, and so the cassettes, identical
from run to run); the scoring loop then keeps the best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from vse.llm.client import LLMClient, Usage
from vse.prompts import Example, explain_prompt, parse_explanation
from vse.sampling import top
from vse.targets import Target


@dataclass(frozen=True)
class ExplainConfig:
    """Knobs of explanation generation (defaults: the paper's App. B.2.2 choices).

    n_pairs: how many of the target's (and each few-shot neuron's) top pairs are shown.
    temperature: sampling temperature; > 0 so that best-of-N has N different candidates.
    max_tokens: the longest explanation the model may write.
    max_retries: further attempts (new seed) when a reply holds no usable explanation.
    """

    n_pairs: int = 25
    temperature: float = 0.7
    max_tokens: int = 60
    max_retries: int = 2


@dataclass(frozen=True)
class FewShotNeuron:
    """A hand-labelled neuron used as a worked example (never an evaluation neuron)."""

    target: Target
    explanation: str


@dataclass(frozen=True)
class Explanation:
    """One generated explanation: the text that completes "the main thing this neuron does is find"."""

    text: str
    seed: int
    usage: Usage
    calls: int


def top_examples(fewshot: Sequence[FewShotNeuron], n_pairs: int) -> list[Example]:
    return [Example(f.target.name, f.target.pairs(top(f.target.values, n_pairs)), f.explanation) for f in fewshot]


def build_prompt(target: Target, fewshot: Sequence[FewShotNeuron], config: ExplainConfig) -> str:
    return explain_prompt(
        target.kind,
        top_examples(fewshot, config.n_pairs),
        target.name,
        target.pairs(top(target.values, config.n_pairs)),
        signed=target.signed,
    )


def explain(client: LLMClient, target: Target, fewshot: Sequence[FewShotNeuron], config: ExplainConfig, *, seed: int) -> Explanation:
    """One explanation of `target`; an empty reply is retried with the next seeds, then raises."""
    prompt = build_prompt(target, fewshot, config)
    usage, calls, errors = Usage(), 0, []
    for attempt in range(config.max_retries + 1):
        s = seed + 1000 * attempt  # retries get seeds that no first attempt uses
        reply = client.complete(prompt, max_tokens=config.max_tokens, temperature=config.temperature, seed=s, stop=["\n", "<end>"])
        usage, calls = usage + reply.usage, calls + 1
        try:
            return Explanation(parse_explanation(reply.text), seed=s, usage=usage, calls=calls)
        except ValueError as err:
            errors.append(str(err))
    raise ValueError(f"{target.neuron}: no usable explanation after {calls} calls: {'; '.join(errors)}")
