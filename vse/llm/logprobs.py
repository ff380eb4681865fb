"""The logprobs of a reply, whatever its shape: the one place they are read (`parse_logprobs`), and
the repair of llama-cpp-python's shifted ``echo`` layout."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from vse.llm.replies import TokenLogprob, Usage

# Named after the client, whose warnings these were before the split: log filters keep working.
log = logging.getLogger("vse.llm.client")


def _top_from_list(entries: Sequence[Mapping[str, Any]] | None) -> dict[str, float]:
    top: dict[str, float] = {}
    for entry in entries or ():
        top.setdefault(str(entry["token"]), float(entry["logprob"]))
    return top


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def parse_logprobs(logprobs: Mapping[str, Any] | None) -> tuple[list[TokenLogprob], list[int | None]]:
    """`choices[0].logprobs` of any reply, whatever its shape: the one place logprobs are read.

    Three shapes reach vse:
    - legacy completions (OpenAI, llama-cpp-python): parallel lists ``tokens``, ``token_logprobs``,
      ``top_logprobs`` (one dict per token) and ``text_offset``;
    - chat completions: ``{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}``;
    - llama.cpp's ``llama-server`` answers ``/v1/completions`` in the chat shape too (entries also
      carry the token ``id``), not in the legacy one.

    Returns the tokens and their text offsets (None where the reply has none: the chat shape).
    """
    if not logprobs:
        return [], []
    if "content" in logprobs:
        tokens = parse_chat_logprobs(logprobs)
        return tokens, [None] * len(tokens)
    return parse_legacy_logprobs(logprobs)


def parse_chat_logprobs(logprobs: Mapping[str, Any] | None) -> list[TokenLogprob]:
    """The chat shape: ``{"content": [{token, logprob, bytes, top_logprobs: [...]}]}`` (see `parse_logprobs`)."""
    if not logprobs:
        return []
    return [
        TokenLogprob(str(item["token"]), _float(item.get("logprob")), _top_from_list(item.get("top_logprobs")))
        for item in logprobs.get("content") or ()
    ]


def parse_legacy_logprobs(logprobs: Mapping[str, Any] | None) -> tuple[list[TokenLogprob], list[int | None]]:
    """The legacy shape: parallel lists ``tokens``, ``token_logprobs``, ``top_logprobs`` (dicts,
    null for an echoed first token) and ``text_offset`` (see `parse_logprobs`).

    Returns the tokens and their text offsets (None where the server sent none).
    """
    if not logprobs:
        return [], []
    tokens = logprobs.get("tokens") or []
    lps = logprobs.get("token_logprobs") or [None] * len(tokens)
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    offsets = logprobs.get("text_offset") or [None] * len(tokens)
    if not (len(lps) == len(tops) == len(tokens)):
        raise ValueError(
            f"logprobs lists differ in length: {len(tokens)} tokens, {len(lps)} logprobs, {len(tops)} tops"
        )
    out = [
        TokenLogprob(str(tok), _float(lp), {str(k): float(v) for k, v in (top or {}).items()})
        for tok, lp, top in zip(tokens, lps, tops, strict=True)
    ]
    return out, list(offsets) + [None] * (len(out) - len(offsets))


def echo_is_shifted(tokens: list[TokenLogprob], usage: Usage) -> bool:
    """Whether an echo reply has llama-cpp-python's off-by-one layout.

    For a model without a BOS token (Qwen), llama-cpp-python 0.3.x pairs token i with the
    distribution computed *after* token i (the one predicting token i+1), and so drops the
    last generated token: the reply lists one token fewer than ``usage`` counts. (When the
    model stops at once, ``completion_tokens`` is 0 and the layout cannot be told apart; it is
    then left as sent.)
    """
    return usage.completion_tokens >= 1 and len(tokens) == usage.prompt_tokens + usage.completion_tokens - 1


def unshift_echo(
    tokens: list[TokenLogprob], offsets: list[int | None], full_text: str, k: int
) -> tuple[list[TokenLogprob], list[int | None]]:
    """Rebuild the OpenAI layout from the shifted one: position i gets the alternatives sent at
    position i-1, and the missing last token is recovered from the text.

    The server's own logprob for each token is from the wrong position; the right one is
    known only when the token is among the alternatives, else it is NaN. llama.cpp adds the
    (mis-scored) token itself to each position's alternatives; that entry is dropped.
    """
    joined = "".join(t.token for t in tokens)
    if not full_text.startswith(joined):
        log.warning("echo reply looks shifted but its tokens do not spell the text; left as sent")
        return tokens, offsets
    strings = [t.token for t in tokens] + [full_text[len(joined) :]]
    fixed = [TokenLogprob(strings[0], float("nan"), {})]
    for i in range(1, len(strings)):
        prev = tokens[i - 1]
        top = dict(prev.top)
        if len(top) > k:
            top.pop(prev.token, None)
        fixed.append(TokenLogprob(strings[i], top.get(strings[i], float("nan")), top))
    return fixed, list(offsets) + [len(joined)]
