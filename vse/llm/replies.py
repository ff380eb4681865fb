"""What a call hands back: the first choice's text and token logprobs, and the tokens billed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """Tokens billed for one or more calls (the cost)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class TokenLogprob:
    """One token position: the token, its logprob, and the top alternatives the server sent.

    `logprob` is NaN (and `top` empty) where the server sends null: the first prompt token of
    an `echo` reply, and where an echoed token's logprob is unknown (see `LLMClient.complete`).
    `top` keys are the token strings exactly as sent: a digit may carry a leading space, or the
    space may come as a token of its own (Qwen: " 4" -> " ", "4"; "10" -> "1", "0"); strip
    when reading numbers. llama.cpp adds the chosen token to `top`, so it may hold one entry
    more than asked for; its end-of-text token shows as "".
    """

    token: str
    logprob: float
    top: dict[str, float]


@dataclass(frozen=True)
class Completion:
    """The first choice of a reply.

    `text` is the generated text only (with `echo`, the prompt is split off into
    `prompt_tokens`). `tokens` are the generated tokens' logprobs (empty without logprobs).
    """

    text: str
    tokens: list[TokenLogprob]
    usage: Usage
    finish_reason: str | None
    prompt_tokens: list[TokenLogprob] | None = None
