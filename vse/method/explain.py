"""Explanation generation: show the LLM a neuron's strongest pairs, let it finish the sentence.

Following the paper (App. B.1.2 / B.2.2, "Top" strategy): the target's and the few-shot
neurons' highest pairs are shown in ascending order, so the strongest come last, right before
the sentence the model completes. Best of N: N explanations are drawn at a non-zero temperature,
candidate k with the seed `vse.core.seeds.llm_seed(seed, "explain", k)` (fixed seeds keep the requests,
and so the cassettes, identical from run to run); the scoring loop then keeps the best.

``shown="heldout"`` shows only the even ranks of the top 2n pairs (`vse.core.protocols.heldout_shown`),
so that the held-out protocol can score the odd ranks as items the explainer never saw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vse.core.protocols import heldout_shown
from vse.core.sampling import top
from vse.core.target import Target
from vse.core.vocab import Api, Display, RankBy, choices
from vse.llm.client import LLMClient, Usage
from vse.method import defaults
from vse.method.prompts import Example, explain_messages, explain_prompt, parse_chat_explanation, parse_explanation
from vse.method.retry import Rejected, first_usable

#: The explanation budget of new runs (`vse explain`, `vse label`, any call without a pinned config). The
#: recorded experiments allowed 60 tokens (and keep it, so their cassettes replay): 14 of their 200
#: explanation replies stopped there mid-sentence (finish_reason "length"), while the longest reply that
#: ended on its own used 55. New runs get twice that, and a reply still cut off is trimmed to its last
#: full sentence (see `trim_to_sentence`).
NEW_MAX_TOKENS = 120


@dataclass(frozen=True)
class ExplainConfig:
    """Knobs of explanation generation (defaults: the paper's App. B.2.2 choices).

    n_pairs: how many of the target's (and each few-shot neuron's) top pairs are shown.
    temperature: sampling temperature; > 0 so that best-of-N has N different candidates.
    max_tokens: the longest explanation the model may write.
    max_retries: further attempts (new seed) when a reply holds no usable explanation.
    shown: "top" (the paper) or "heldout" (every other rank, see the module doc).
    api: "completions" (plain few-shot text) or "chat" (messages); the LLM's endpoint wins
        (`vse.method.llm.on_llm_endpoint`).
    rank_by: how "top" is ordered: "raw" (the raw activations or weights; the default) or
        "scaled" (the 0..10 integers, ties broken by item index: what the experiments recorded
        before the simulator study used, kept so their cassettes replay). On dense units most of the top 50
        scale to the same few integers, so ranking the integers orders ties by class index.
    trim: a reply stopped by ``max_tokens`` is cut back to its last full sentence (new runs,
        `new_run_config`); the recorded experiments keep their replies as they were.
    """

    n_pairs: int = 25
    temperature: float = 0.7
    max_tokens: int = 60
    max_retries: int = 2
    shown: Display = defaults.DISPLAY
    api: Api = defaults.API
    rank_by: RankBy = defaults.RANK_BY
    trim: bool = False

    def __post_init__(self) -> None:
        if self.shown not in choices(Display):
            raise ValueError(f"shown must be 'top' or 'heldout', got {self.shown!r}")
        if self.rank_by not in choices(RankBy):
            raise ValueError(f"rank_by must be 'raw' or 'scaled', got {self.rank_by!r}")
        if self.api not in choices(Api):
            raise ValueError(f"api {self.api!r} is not one of {choices(Api)}")
        # Strings are accepted and stored as members; members are strings, so the JSON is the same.
        for name, enum in (("shown", Display), ("api", Api), ("rank_by", RankBy)):
            object.__setattr__(self, name, enum(getattr(self, name)))


def new_run_config(api: Api = defaults.API, **fields) -> ExplainConfig:
    """The explainer of a new run (`vse explain`, `vse label`, `vse validate`, the API without a config, the
    defaults study): the `NEW_MAX_TOKENS` budget and replies cut off trimmed; ``fields`` override the rest."""
    return ExplainConfig(api=api, max_tokens=NEW_MAX_TOKENS, trim=True, **fields)


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
    cut: str = ""  # "" (ended on its own), "unfinished" (stopped by max_tokens), "trimmed" (stopped, then trimmed)


def shown_indices(target: Target, config: ExplainConfig) -> np.ndarray:
    """The target's pairs the explainer sees, ascending (strongest last)."""
    values = target.strength if config.rank_by == RankBy.RAW else target.values
    if config.shown == Display.HELDOUT:
        return heldout_shown(values, config.n_pairs)
    return top(values, config.n_pairs)


def top_examples(fewshot: Sequence[FewShotNeuron], n_pairs: int, rank_by: str = RankBy.RAW) -> list[Example]:
    return [
        Example(
            f.target.name,
            f.target.pairs(top(f.target.strength if rank_by == RankBy.RAW else f.target.values, n_pairs)),
            f.explanation,
        )
        for f in fewshot
    ]


def build_prompt(target: Target, fewshot: Sequence[FewShotNeuron], config: ExplainConfig) -> str | list[dict]:
    """The request content: a prompt string (completions) or a message list (chat)."""
    examples = top_examples(fewshot, config.n_pairs, config.rank_by)
    pairs = target.pairs(shown_indices(target, config))
    if config.api == Api.CHAT:
        return explain_messages(target.kind, examples, target.name, pairs, signed=target.signed)
    return explain_prompt(target.kind, examples, target.name, pairs, signed=target.signed)


def trim_to_sentence(text: str) -> str | None:
    """``text`` up to its last sentence end (".", "!" or "?" followed by a space or the end), or None if
    it has none: what is kept of an explanation the token budget cut off mid-sentence."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    return text[: ends[-1]].strip() if ends else None


def explain(
    client: LLMClient,
    target: Target,
    fewshot: Sequence[FewShotNeuron],
    config: ExplainConfig,
    *,
    seed: int,
) -> Explanation:
    """One explanation of `target`; an empty reply is retried with new seeds, then raises.

    A reply stopped by ``max_tokens`` (finish_reason "length") is marked ``cut="unfinished"``; with
    ``config.trim`` it is cut back to its last full sentence when it has one (``cut="trimmed"``)."""
    prompt = build_prompt(target, fewshot, config)
    usage, calls = Usage(), 0

    def attempt(k: int) -> Explanation:
        nonlocal usage, calls
        s = seed + 1000 * k  # retries get seeds that no first attempt uses
        if config.api == Api.CHAT:
            reply = client.chat(
                prompt, max_tokens=config.max_tokens, temperature=config.temperature, seed=s, stop=["\n"]
            )
            parse = parse_chat_explanation
        else:
            reply = client.complete(
                prompt, max_tokens=config.max_tokens, temperature=config.temperature, seed=s, stop=["\n", "<end>"]
            )
            parse = parse_explanation
        usage, calls = usage + reply.usage, calls + 1
        try:
            text = parse(reply.text)
        except ValueError as err:
            raise Rejected(str(err)) from None
        cut = ""
        if reply.finish_reason == "length":
            cut = "unfinished"
            short = trim_to_sentence(text) if config.trim else None
            if short:
                text, cut = short, "trimmed"
        return Explanation(text, seed=s, usage=usage, calls=calls, cut=cut)

    result, reasons = first_usable(config.max_retries + 1, attempt)
    if result is None:
        raise ValueError(f"{target.neuron}: no usable explanation after {calls} calls: {'; '.join(reasons)}")
    return result
