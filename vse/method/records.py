"""The records every result is made of: one typed record per explanation, one per score.

`vse explain` writes `ExplanationRecord`s, `vse score` and the experiments write `ScoreRecord`s;
tables, plots and tests read these fields, never loose dict keys. Both carry a `Provenance`, so
one JSONL line says how it was made.

Words used throughout: a *method* produces an explanation (caption-activation, weight-label,
weight-clip, weight-explanation, clip-dissect); a *target* is the kind of pairs an explanation is
scored on; a *pass* is one simulation of a set of items; a *protocol* chooses a pass's items;
*polarity* is positive, negative (flipped) or both (signed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from vse import __version__
from vse.method import prompts as P


def prompts_hash() -> str:
    """sha256 (first 16 hex digits) of every prompt builder's output on a fixed example.

    It changes exactly when the text a model is sent changes (any kind, either API), and not when
    a comment in the code does.
    """
    ex = [P.Example("1", (P.Pair("a", 0), P.Pair("b", 10)), "things")]
    pairs = [P.Pair("c", 3)]
    rendered = []
    for kind in sorted(P.KIND_WORDING):
        for signed in (False, True):
            rendered += [
                P.explain_prompt(kind, ex, "2", pairs, signed=signed),
                P.explain_messages(kind, ex, "2", pairs, signed=signed),
                P.simulate_list_prompt(kind, ex, P.TARGET_NAME, "e", ["c"], signed=signed),
                P.simulate_one_prompt(P.simulate_one_prefix(kind, ex, P.TARGET_NAME, "e", signed=signed), "c"),
                P.simulate_echo_prompt(kind, ex, P.TARGET_NAME, "e", ["c"], signed=signed),
                P.simulate_one_messages(kind, ex, "e", "c", signed=signed),
                P.simulate_list_messages(kind, ex, "e", ["c"], signed=signed),
            ]
    return hashlib.sha256(json.dumps(rendered, sort_keys=True).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Provenance:
    """How a result was made.

    llm: the model id the server reports (GET /models), or the configured name if it reports none.
    api: "completions" or "chat".
    llm_file_sha256: sha256 of the local model file (the local llama.cpp server only).
    server: the local server software and version (the local server only).
    prompts_sha256: `prompts_hash()` when the result was made.
    simulator: simulation mode ("one", "list", ...), empty for explanations.
    protocol: scoring protocol, empty for explanations.
    fewshot: the few-shot neurons' ids.
    seed: the run's root seed (vse.core.seeds derives every stream from it).
    vse_version: the package version.
    """

    llm: str
    api: str
    llm_file_sha256: str | None
    server: str | None
    prompts_sha256: str
    fewshot: tuple[str, ...]
    seed: int
    simulator: str = ""
    protocol: str = ""
    vse_version: str = __version__


@dataclass
class ExplanationRecord:
    """One explanation of one neuron.

    neuron: ``MODEL/LAYER/INDEX``. method: how it was made. polarity: of the pairs shown.
    explanation: completes "the main thing this neuron does is find". seed: the LLM sampling seed
    (None for clip-dissect). calls/prompt_tokens/completion_tokens: what it cost.
    cut: "" when the reply ended on its own; "unfinished" when ``max_tokens`` stopped it mid-sentence;
    "trimmed" when it was stopped and then cut back to its last full sentence (left out of the JSON when "").
    shown: the indices of the pairs the explainer was shown, ascending, and display: the rule that
    picked them ("top" or "heldout"). A scorer on the same kind of pairs leaves out exactly those
    (`vse.method.best_of`). Empty for records written before they were kept, and for clip-dissect
    (left out of the JSON when empty, so those records read and write as they always did).
    """

    neuron: str
    method: str
    polarity: str
    explanation: str
    seed: int | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    provenance: Provenance
    cut: str = ""
    shown: tuple[int, ...] = ()
    display: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("cut", "shown", "display"):
            if not data[key]:
                del data[key]
        if self.shown:
            data["shown"] = list(self.shown)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExplanationRecord:
        data = dict(data)
        prov = dict(data.pop("provenance"))
        prov["fewshot"] = tuple(prov.get("fewshot", ()))
        data["shown"] = tuple(int(i) for i in data.get("shown", ()))
        names = {f.name for f in fields(cls)}
        return cls(provenance=Provenance(**prov), **{k: v for k, v in data.items() if k in names})


@dataclass
class PassRecord:
    """One simulation pass: which items, the truth, the predictions, the score (None if failed)."""

    index: int
    items: list[int]
    true: list[int]
    predicted: list[float]
    score: float | None
    calls: int
    redraws: int
    error: str | None = None


@dataclass
class ScoreResult:
    """Algorithm 1's outcome for one explanation on one target (`vse.method.score.score_target`).

    mean, half_width: the score (100 x Pearson) and its 90% t-interval half-width over passes.
    passes: the number of successful passes; hit_cap: the pass cap ended the loop first.
    scores: each pass's score. accuracy/mse/mae: predictions vs truth over every pass.
    calls/prompt_tokens/completion_tokens: LLM cost of this scoring (store hits cost nothing).
    details: every pass (items, truth, predictions).
    """

    mean: float
    half_width: float
    passes: int
    hit_cap: bool
    scores: list[float]
    accuracy: float
    mse: float
    mae: float
    failed_passes: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    details: list[PassRecord] = field(default_factory=list, repr=False)


#: A score record's JSON keys in the order records have always been written (readers that do not
#: sort keys see the same lines).
_SCORE_KEYS = (
    "neuron",
    "method",
    "explanation",
    "explanation_seed",
    "target",
    "polarity",
    *(f.name for f in fields(ScoreResult) if f.name != "details"),
    "provenance",
    "details",
)


@dataclass(kw_only=True)
class ScoreRecord(ScoreResult):
    """One explanation scored on one target of one neuron: who and what (neuron, method,
    explanation, its seed, target, polarity), Algorithm 1's outcome (`ScoreResult`'s fields) and
    how it was made (provenance). Written and read as one flat JSON object (`to_json`, `from_json`).
    """

    neuron: str
    method: str
    explanation: str
    explanation_seed: int | None
    target: str
    polarity: str
    provenance: Provenance

    @classmethod
    def of(cls, result: ScoreResult, **identity: Any) -> ScoreRecord:
        """``result`` with the neuron, explanation and provenance it scored (keyword arguments)."""
        return cls(**{f.name: getattr(result, f.name) for f in fields(ScoreResult)}, **identity)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: data[k] for k in _SCORE_KEYS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoreRecord:
        data = dict(data)
        prov = dict(data.pop("provenance"))
        prov["fewshot"] = tuple(prov.get("fewshot", ()))
        details = [PassRecord(**d) for d in data.pop("details", ())]
        names = {f.name for f in fields(cls)}
        return cls(provenance=Provenance(**prov), details=details, **{k: v for k, v in data.items() if k in names})

    def line(self) -> str:
        """How the CLI prints it: score ± half-width (passes) beside Acc/MSE/MAE."""
        cap = ", cap" if self.hit_cap else ""
        return (
            f"{self.mean:.2f} ± {self.half_width:.2f} ({self.passes}{cap})  "
            f"Acc {100 * self.accuracy:.1f}%  MSE {self.mse:.2f}  MAE {self.mae:.2f}"
        )
