"""Records to cards: the explanations and scores of `vse label` lines, explanation and score records
and a results folder's files, grouped per neuron (images and pairs come later, from `sources`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path

from vse.atomic import read_jsonl
from vse.core.target import neuron_id, parse_neuron_id
from vse.core.vocab import USER_METHOD, Polarity, UnitStatus
from vse.method.best_of import BestOfN
from vse.method.label_record import LabelRecord
from vse.method.records import ScoreRecord
from vse.outputs.atlas.cards import Card, Chosen, Dead, Explanation, Score, SimItem, Unscored, neuron_key

#: The explanation length the committed experiments allowed (ExplainConfig.max_tokens when they were
#: recorded): a record that used all of it in one call was cut off by the model's budget.
RECORDED_MAX_TOKENS = 60
N_SIM_ITEMS = 60  # items of one pass in the true-vs-simulated plot (a pass has 40-50)


def _num(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def cut_reason(rec: Mapping, max_tokens: int | None = RECORDED_MAX_TOKENS) -> str:
    """Why an explanation record's text stops mid-sentence, "" if it does not (as far as is known).

    A new record says so itself (``"cut": true``, from the reply's ``finish_reason == "length"``).
    An older one is judged from its cost: one call whose completion used all ``max_tokens`` can
    only have ended at the budget (a reply that stops at the newline uses fewer). Texts without a
    record of their cost (a score record) are not judged: punctuation alone cannot tell ("birds and
    insects" is a whole answer to "the main thing this neuron does is find").
    """
    if rec.get("cut") == "trimmed":
        return "trimmed: the token budget stopped the model mid-sentence; kept up to its last full sentence"
    if rec.get("cut"):
        return "cut off by the token budget (finish_reason = length)"
    tokens, calls = rec.get("completion_tokens"), rec.get("calls")
    if max_tokens and isinstance(tokens, int) and calls == 1 and tokens >= max_tokens:
        return f"cut off by the token budget ({tokens} of max_tokens {max_tokens} used)"
    return ""


def _sim_items(items, true, predicted) -> tuple[SimItem, ...]:
    # A record is shown as it was written: lists of unequal length show the items all three have.
    return tuple(SimItem(int(i), float(t), float(p)) for i, t, p in zip(items, true, predicted, strict=False))[
        :N_SIM_ITEMS
    ]


#: A `ScoreRecord`'s JSON keys: a record with other keys is read key by key (`_Collector.loose_score`).
_SCORE_RECORD_KEYS = frozenset(f.name for f in fields(ScoreRecord))


def _as_score_record(rec: Mapping) -> ScoreRecord | None:
    """``rec`` as the `ScoreRecord` it is (what `vse score`, `vse label` and the table studies write), else None."""
    if set(rec) != _SCORE_RECORD_KEYS:
        return None
    try:
        return ScoreRecord.from_json(dict(rec))
    except (KeyError, TypeError, ValueError):
        return None


def why_chosen(best: BestOfN) -> Chosen | None:
    """A best of N's winner against the candidates it beat on the held-in items (None: one candidate, or
    held-in scores not recorded)."""
    scores = [c.held_in for c in best.candidates]
    if len(scores) < 2 or any(x is None for x in scores):
        return None
    beaten = tuple(float(x) for i, x in enumerate(scores) if i != best.chosen)
    return Chosen(float(scores[best.chosen]), beaten, best.held_in_items, best.held_out_items)


class _Collector:
    """Explanations and scores of many records, grouped per neuron and explanation, in first-seen order."""

    def __init__(self, max_tokens: int | None) -> None:
        self.max_tokens = max_tokens
        self.data: dict[str, dict[tuple[str, str, str], dict]] = {}
        self.failed: list[str] = []
        self.dead: dict[str, Dead] = {}
        self.unscorable: dict[str, Unscored] = {}

    def _entry(self, neuron: str, method: str, polarity: str, text: str) -> dict:
        parse_neuron_id(neuron)
        per = self.data.setdefault(neuron, {})
        return per.setdefault((str(method), str(polarity or Polarity.POSITIVE), str(text)), {"cut": "", "scores": []})

    def explanation(self, rec: Mapping) -> None:
        e = self._entry(
            rec["neuron"], rec.get("method", ""), rec.get("polarity", Polarity.POSITIVE), rec.get("explanation", "")
        )
        e["cut"] = e["cut"] or cut_reason(rec, self.max_tokens)

    def score(self, rec: Mapping) -> None:
        record = _as_score_record(rec)
        if record is None:
            self.loose_score(rec)
        else:
            self.score_record(record)

    def score_record(self, record: ScoreRecord, chosen: Chosen | None = None) -> None:
        kept = [d for d in record.details if d.items]
        items = _sim_items(kept[0].items, kept[0].true, kept[0].predicted) if kept else ()
        score = Score(
            record.target,
            record.provenance.protocol,
            _num(record.mean),
            _num(record.half_width),
            record.passes if isinstance(record.passes, int) else None,
            bool(record.hit_cap),
            items,
            len(kept),
            str(record.provenance.simulator or ""),
            chosen,
        )
        self._add_score(record.neuron, record.method, record.polarity, record.explanation, score)

    def _add_score(self, neuron: str, method: str, polarity: str, text: str, score: Score) -> None:
        if method == USER_METHOD:  # `vse score` / `vse label` name no method: the explanation's own, when it is known
            known = [m for (m, p, t) in self.data.get(neuron, {}) if (p, t) == (polarity, text)]
            method = known[0] if known else method
        self._entry(neuron, method, polarity, text)["scores"].append(score)

    def loose_score(self, rec: Mapping) -> None:
        """A score in another shape than a `ScoreRecord` (a study's per-neuron rows), read key by key."""
        neuron, method = rec["neuron"], rec.get("method", "")
        polarity, text = rec.get("polarity", Polarity.POSITIVE), rec.get("explanation", "")
        prov = rec.get("provenance") if isinstance(rec.get("provenance"), Mapping) else {}
        protocol = str(rec.get("protocol") or prov.get("protocol") or "")
        details = [d for d in rec.get("details") or () if isinstance(d, Mapping) and d.get("items")]
        items: tuple[SimItem, ...] = ()
        if details:
            d = details[0]
            items = _sim_items(d["items"], d["true"], d["predicted"])
        self._add_score(
            neuron,
            method,
            polarity,
            text,
            Score(
                str(rec.get("target", "")),
                protocol,
                _num(rec.get("mean")),
                _num(rec.get("half_width")),
                rec.get("passes") if isinstance(rec.get("passes"), int) else None,
                bool(rec.get("hit_cap")),
                items,
                len(details),
                str(rec.get("simulator") or prov.get("simulator") or ""),
            ),
        )

    def label(self, rec: LabelRecord) -> None:
        """A `vse label` line: a unit's explanations and scores, or why it has none."""
        if rec.status == UnitStatus.FAILED:
            self.failed.append(f"unit {rec.unit}: {rec.error or 'failed'}")
            return
        if rec.status == UnitStatus.DEAD and rec.neuron is not None:
            parse_neuron_id(rec.neuron)
            self.dead[rec.neuron] = Dead(rec.method or "", rec.dead or "constant values")
            return
        if rec.status == UnitStatus.UNSCORABLE and rec.neuron is not None:  # explanations shown, with why no score
            parse_neuron_id(rec.neuron)
            self.unscorable[rec.neuron] = Unscored(rec.target or "", rec.unscorable or "no reason recorded")
        if rec.status == UnitStatus.EXPLAINED:  # its explanations are shown below, unscored
            self.failed.append(f"unit {rec.unit}: explained, not scored: {rec.error or 'failed'}")
        for e in rec.explanations or ():
            self.explanation(e.to_json())
        for s in rec.scores or ():
            self.score_record(s.record, why_chosen(s))

    def add(self, rec: Mapping) -> None:
        if not isinstance(rec, Mapping):
            return
        if "unit" in rec and ("status" in rec or "explanations" in rec):
            try:
                label = LabelRecord.from_json(dict(rec))
            except (KeyError, TypeError, ValueError) as exc:
                self.failed.append(f"unit {rec.get('unit')}: not a `vse label` record ({exc})")
                return
            self.label(label)
        elif not isinstance(rec.get("neuron"), str):
            return
        elif rec.get("target"):
            self.score(rec)
        elif "explanation" in rec:
            self.explanation(rec)

    def cards(self) -> list[Card]:
        out = []
        for neuron in sorted(self.data.keys() | self.dead.keys(), key=neuron_key):
            expls = tuple(
                Explanation(m, p, t, v["cut"], tuple(v["scores"])) for (m, p, t), v in self.data.get(neuron, {}).items()
            )
            # A unit explained in one file and found dead in another (a new probe set) shows both.
            out.append(Card(neuron, expls, dead=self.dead.get(neuron), unscorable=self.unscorable.get(neuron)))
        return out


def cards_from_records(
    records: Iterable[Mapping], *, max_tokens: int | None = RECORDED_MAX_TOKENS
) -> tuple[list[Card], list[str]]:
    """Cards (explanations and scores only, sorted by model, layer, unit) from any mix of records:
    `vse label` lines, `ExplanationRecord`s, `ScoreRecord`s and a study's per-neuron rows.
    Also returns the failed units' errors (a failed `vse label` line), so a page can list them."""
    c = _Collector(max_tokens)
    for rec in records:
        c.add(rec)
    return c.cards(), c.failed


def read_objects(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file (other values are skipped); a bad line is an error naming the file and line."""
    return [rec for rec in read_jsonl(path) if isinstance(rec, dict)]


def folder_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def folder_records(folder: Path) -> list[dict]:
    """Every explanation and score an experiment folder holds, as records `vse.outputs.atlas.cards_from_records` reads:
    explanations.jsonl / explanation.json (with their cost, so cut ones are known), results.jsonl (scores
    with their passes), neurons.jsonl (a study's per-neuron scores) or else scores.csv (the same, as CSV).
    Records without a polarity get the experiment's."""
    exp = folder_config(folder).get("experiment") or {}
    model, layer = exp.get("model"), exp.get("layer")
    records: list[dict] = []
    for name in ("explanations.jsonl", "results.jsonl", "neurons.jsonl"):
        if (folder / name).is_file():
            records += [r for r in read_objects(folder / name) if isinstance(r.get("neuron"), str)]
    if (folder / "explanation.json").is_file():
        one = json.loads((folder / "explanation.json").read_text(encoding="utf-8"))
        records += [one] if isinstance(one, dict) else []
    if not (folder / "neurons.jsonl").is_file() and (folder / "scores.csv").is_file() and model and layer:
        with (folder / "scores.csv").open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if {"unit", "method", "explanation", "target", "corr"} <= set(row):
                    records.append(
                        {
                            "neuron": neuron_id(model, layer, row["unit"]),
                            "method": row["method"],
                            "explanation": row["explanation"],
                            "target": row["target"],
                            "protocol": row.get("protocol", ""),
                            "mean": float(row["corr"]) if row["corr"] else None,
                        }
                    )
    polarity = exp.get("polarity", Polarity.POSITIVE)
    return [r if "polarity" in r else {**r, "polarity": polarity} for r in records]
