"""Dry-run pricing: the calls, tokens and price a run would take, from the requests it would send.

The caller feeds ``(endpoint, payload)`` pairs exactly as the prompt builders produce them (the
payloads `LLMClient` would POST); nothing is sent. Token counts are estimated from characters:
no tokenizer for the recording model (Qwen2.5) is available offline, and one per target model
would be needed anyway. The ratio `CHARS_PER_TOKEN` was measured on real traffic: over the 3,190
requests of the issue-3 recording (``bench/data/issue3-unit1089.json.gz``) the prompts hold 7,723,477 characters and the
server billed 2,681,743 prompt tokens, 2.880 characters a token (per request 2.78 to 3.09,
median 2.88; fitted on the even-numbered requests it predicts the odd ones' total within 0.01 %).
It is lower than English prose's ~4 because these prompts are lists of short class names,
tabs and digits. ``tests/llm/test_pricing.py`` recomputes it from the cassette.

Completion tokens are not known before the reply: the estimate uses each request's
``max_tokens`` as an upper bound (the recorded run used 3,274 of 3,367 allowed).

`paper_cost` is the paper's own formula (Section 3.2.3, "Using GPT-explanations as targets"):
neurons x API calls per neuron x average prompt length (k tokens) x price per 1k tokens, with
its figures 4096 x 25 x 2.5 x 0.0015 for AlexNet's last hidden layer. That product is 384 USD;
the paper prints 389.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

#: Characters per prompt token, measured on the issue-3 recording (bench/data/) (see module doc).
CHARS_PER_TOKEN = 2.880
#: The Batch API's price as a share of the same requests sent one by one: OpenAI bills a batch's input
#: and output tokens at half the synchronous rate (answers within 24 h).
BATCH_PRICE_FACTOR = 0.5
#: Tokens a chat template adds per message (role markers, separators); Qwen's
#: ``<|im_start|>role\n ... <|im_end|>\n`` is 5, OpenAI documents about 4.
CHAT_TOKENS_PER_MESSAGE = 5


@dataclass(frozen=True)
class DryRun:
    """The estimate for a list of requests.

    calls: requests; prompt_chars: characters of prompt text; prompt_tokens: estimated;
    max_completion_tokens: sum of ``max_tokens`` (an upper bound); price: (prompt_tokens +
    max_completion_tokens) / 1000 x price_per_1k, None without a price.
    """

    calls: int
    prompt_chars: int
    prompt_tokens: int
    max_completion_tokens: int
    price_per_1k: float | None
    price: float | None

    def __str__(self) -> str:
        s = (
            f"{self.calls} calls, ~{self.prompt_tokens} prompt tokens ({self.prompt_chars} characters / "
            f"{CHARS_PER_TOKEN}) + at most {self.max_completion_tokens} completion tokens"
        )
        if self.price is not None:
            s += f"; at {self.price_per_1k} per 1k tokens: {self.price:.2f}"
        return s

    @property
    def batch_price(self) -> float | None:
        """The price of the same requests sent through the Batch API (`BATCH_PRICE_FACTOR`)."""
        return None if self.price is None else self.price * BATCH_PRICE_FACTOR

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _prompt_text(endpoint: str, payload: dict[str, Any]) -> tuple[str, int]:
    """The prompt's text and the extra template tokens, for a completion or a chat request."""
    if endpoint.strip("/").endswith("chat/completions"):
        messages = payload.get("messages") or []
        text = "".join(str(m.get("content") or "") for m in messages)
        return text, CHAT_TOKENS_PER_MESSAGE * len(messages)
    prompt = payload.get("prompt", "")
    return ("".join(prompt) if isinstance(prompt, list) else str(prompt)), 0


def estimate_tokens(text: str, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    return math.ceil(len(text) / chars_per_token)


def dry_run(
    requests: Iterable[tuple[str, dict[str, Any]]],
    *,
    price_per_1k: float | None = None,
    chars_per_token: float = CHARS_PER_TOKEN,
) -> DryRun:
    """Count and price ``(endpoint, payload)`` requests without sending any."""
    calls = chars = prompt_tokens = completion = 0
    for endpoint, payload in requests:
        text, extra = _prompt_text(endpoint, payload)
        calls += 1
        chars += len(text)
        prompt_tokens += estimate_tokens(text, chars_per_token) + extra
        completion += int(payload.get("max_tokens") or 0)
    price = None if price_per_1k is None else (prompt_tokens + completion) / 1000 * price_per_1k
    return DryRun(calls, chars, prompt_tokens, completion, price_per_1k, price)


def paper_cost(
    neurons: int, calls_per_neuron: float = 25, avg_prompt_ktokens: float = 2.5, price_per_1k: float = 0.0015
) -> float:
    """The paper's estimate (Sec. 3.2.3): neurons x calls per neuron x avg. prompt length (k tokens) x price per 1k."""
    return neurons * calls_per_neuron * avg_prompt_ktokens * price_per_1k
