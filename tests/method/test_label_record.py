"""vse.method.label_record: every shape of a `vse label` line reads back to the JSON it was written from."""

from __future__ import annotations

import pytest

from vse.core.vocab import UnitStatus
from vse.method.best_of import BestOfN, Candidate
from vse.method.label_record import LabelRecord, UnitUsage
from vse.method.records import ExplanationRecord, Provenance, ScoreRecord

PROV = Provenance("m", "completions", None, None, "h", ("m/l/9",), 0)
SAID = ExplanationRecord("m/l/3", "weight-label", "positive", "dogs", 7, 1, 100, 12, PROV, shown=(1, 4), display="top")
SCORED = ScoreRecord(
    mean=21.5, half_width=0.0, passes=1, hit_cap=False, scores=[21.5], accuracy=0.5, mse=1.0, mae=1.0,
    failed_passes=0, calls=0, prompt_tokens=0, completion_tokens=0, neuron="m/l/3", method="weight-label",
    explanation="dogs", explanation_seed=7, target="weight-label", polarity="positive", provenance=PROV,
)  # fmt: skip
BEST = BestOfN(SCORED, [Candidate("dogs", 7, 30.0), Candidate("cats", 8, 10.0)], 0, 0, 480, 481)


@pytest.mark.parametrize(
    "record",
    [
        LabelRecord(3, status=UnitStatus.FAILED, error="RuntimeError: no"),
        LabelRecord(
            3,
            status=UnitStatus.DEAD,
            neuron="m/l/3",
            method="caption-activation",
            kind="caption-activation",
            dead="no non-zero value on the probe set",
            usage=UnitUsage(),
        ),  # fmt: skip
        LabelRecord(3, neuron="m/l/3", method="weight-label", explanations=(SAID,), usage=UnitUsage(100, 12, 1)),
        LabelRecord(
            3,
            status=UnitStatus.EXPLAINED,
            neuron="m/l/3",
            method="weight-label",
            target="weight-label",
            explanations=(SAID,),
            error="ValueError: x",
            usage=UnitUsage(100, 12, 1),
        ),  # fmt: skip
        LabelRecord(
            3,
            status=UnitStatus.UNSCORABLE,
            neuron="m/l/3",
            method="weight-label",
            target="weight-label",
            explanations=(SAID,),
            unscorable="all 23 items the explainer did not see have the same value (0); give a larger probe set",
            usage=UnitUsage(100, 12, 1),
        ),  # fmt: skip
        LabelRecord(
            3,
            neuron="m/l/3",
            method="weight-label",
            target="weight-label",
            explanations=(SAID,),
            scores=(BEST,),
            usage=UnitUsage(100, 12, 1),
        ),  # fmt: skip
    ],
)
def test_every_shape_round_trips(record):
    data = record.to_json()
    again = LabelRecord.from_json(data)
    assert again.to_json() == data
    assert again.finished == (record.status not in (UnitStatus.FAILED, UnitStatus.EXPLAINED))


def test_a_dead_line_says_only_what_it_has():
    data = LabelRecord(3, status=UnitStatus.DEAD, neuron="m/l/3", method="m", kind="k", dead="d").to_json()
    assert data == {"unit": 3, "status": "dead", "neuron": "m/l/3", "method": "m", "kind": "k", "dead": "d"}


def test_an_unscorable_line_is_final_and_keeps_its_explanations():
    rec = LabelRecord(3, status=UnitStatus.UNSCORABLE, neuron="m/l/3", explanations=(SAID,), unscorable="why; do")
    data = rec.to_json()
    assert data["status"] == "unscorable" and data["unscorable"] == "why; do" and "error" not in data
    assert rec.finished and LabelRecord.from_json(data).explanations == (SAID,)


def test_a_plain_score_record_reads_as_a_best_of_one():
    best = BestOfN.from_json(SCORED.to_json())
    assert best.record == SCORED and [c.explanation for c in best.candidates] == ["dogs"]


def test_a_line_that_is_not_a_record_is_refused():
    with pytest.raises((KeyError, ValueError, TypeError)):
        LabelRecord.from_json({"unit": 1, "status": "maybe"})
    with pytest.raises((KeyError, ValueError, TypeError)):
        LabelRecord.from_json({"status": "failed"})
