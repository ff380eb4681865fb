"""One unit's line of a `vse label` JSONL file: the record every writer and reader of labels uses.

`vse.studies.layer_labelling` writes it (one line per unit, appended as the unit finishes) and reads
it back to resume; the atlas (`vse.outputs.atlas.from_records`) reads it to draw cards. Its JSON is
flat and only holds what the unit's outcome has:

- done (no ``status``): ``explanations`` and, with ``--score``, ``scores`` (the fair best of them);
- ``explained``: explanations kept, scoring failed (``error``); the next run scores them;
- ``dead``: the values of ``kind`` are constant (``dead`` says how); nothing explained, no call;
- ``unscorable``: explanations kept, but the scoring protocol has nothing to correlate on ``target``
  (``unscorable`` says why in words and what to do: `vse.method.score.Unscorable`); final, not retried;
- ``failed``: ``error`` only; the next run does the unit again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vse.core.vocab import UnitStatus
from vse.method.best_of import BestOfN
from vse.method.records import ExplanationRecord

__all__ = ["UNFINISHED", "LabelRecord", "UnitUsage"]

#: Statuses a rerun does the unit again for (an ``explained`` unit: only its scoring).
UNFINISHED = frozenset({UnitStatus.FAILED, UnitStatus.EXPLAINED})


@dataclass(frozen=True)
class UnitUsage:
    """What one unit cost: tokens and calls to the LLM."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def to_json(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "calls": self.calls}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnitUsage:
        return cls(*(int(data.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "calls")))


@dataclass(frozen=True)
class LabelRecord:
    """One unit's outcome (see the module doc). status None: done."""

    unit: int
    status: UnitStatus | None = None
    neuron: str | None = None
    method: str | None = None
    target: str | None = None
    explanations: tuple[ExplanationRecord, ...] | None = None
    scores: tuple[BestOfN, ...] | None = None
    usage: UnitUsage | None = None
    error: str | None = None
    kind: str | None = None  # dead: whose values are constant
    dead: str | None = None  # dead: how (`vse.studies.label_work.dead_reason`)
    unscorable: str | None = None  # unscorable: why, and what to do (`vse.method.score.Unscorable.reason`)

    @property
    def finished(self) -> bool:
        """Done, dead or unscorable: a rerun skips the unit."""
        return self.status not in UNFINISHED

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit}
        for key in ("neuron", "method", "target", "error", "kind", "dead", "unscorable"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.status is not None:
            out["status"] = self.status.value
        if self.explanations is not None:
            out["explanations"] = [e.to_json() for e in self.explanations]
        if self.scores is not None:
            out["scores"] = [s.to_json() for s in self.scores]
        if self.usage is not None:
            out["usage"] = self.usage.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelRecord:
        """A record as written (keys of no field are ignored); raises ValueError, KeyError or TypeError on a
        line that is not one."""
        data = dict(data)
        unit = int(data.pop("unit"))
        status = data.pop("status", None)
        expl, scores, usage = data.pop("explanations", None), data.pop("scores", None), data.pop("usage", None)
        known = {k: data.pop(k, None) for k in ("neuron", "method", "target", "error", "kind", "dead", "unscorable")}
        return cls(
            unit=unit,
            status=None if status is None else UnitStatus(status),
            explanations=None if expl is None else tuple(ExplanationRecord.from_json(e) for e in expl),
            scores=None if scores is None else tuple(BestOfN.from_json(s) for s in scores),
            usage=None if usage is None else UnitUsage.from_json(usage),
            **known,
        )
