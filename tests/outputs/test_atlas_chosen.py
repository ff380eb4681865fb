"""The atlas card says why best of N kept an explanation: its held-in score against the candidates it beat."""

from __future__ import annotations

from vse.method.records import ExplanationRecord, Provenance, ScoreRecord
from vse.outputs.atlas import cards_from_records, render_card

PROV = Provenance("m", "completions", None, None, "h", (), 0)
TEXTS = ["dogs and wolves", "animals", "dogs on grass"]


def _said(text: str) -> dict:
    return ExplanationRecord("m/l/3", "weight-label", "positive", text, 0, 1, 100, 10, PROV).to_json()


def _best(chosen: int, held_in: list[float | None]) -> dict:
    record = ScoreRecord(
        mean=12.5, half_width=0.0, passes=1, hit_cap=False, scores=[12.5], accuracy=0.5, mse=1.0, mae=1.0,
        failed_passes=0, calls=0, prompt_tokens=0, completion_tokens=0, neuron="m/l/3", method="weight-label",
        explanation=TEXTS[chosen], explanation_seed=0, target="weight-label", polarity="positive", provenance=PROV,
    ).to_json()  # fmt: skip
    candidates = [
        {"explanation": t, "seed": i, "held_in": h} for i, (t, h) in enumerate(zip(TEXTS, held_in, strict=True))
    ]
    return {
        **record,
        "best_of": {
            "n": len(TEXTS),
            "chosen": chosen,
            "split_seed": 0,
            "held_in_items": 480,
            "held_out_items": 482,
            "candidates": candidates,
        },
    }


def _card(chosen: int, held_in: list[float | None]):
    records = [
        {"unit": 3, "neuron": "m/l/3", "explanations": [_said(t) for t in TEXTS], "scores": [_best(chosen, held_in)]}
    ]
    cards, failed = cards_from_records(records)
    assert not failed
    return cards[0]


def test_the_winner_shows_its_held_in_score_against_the_candidates_it_beat():
    card = _card(2, [3.1, -0.4, 7.25])
    [winner] = [e for e in card.explanations if e.scores]
    assert winner.text == "dogs on grass"
    c = winner.scores[0].chosen
    assert c is not None and c.held_in == 7.25 and c.beaten == (3.1, -0.4)
    assert (c.held_in_items, c.held_out_items) == (480, 482)
    html = render_card(card)
    assert "chosen from 3 candidates by its score on 480 held-in items, 7.25 against 3.10, -0.40" in html
    assert "the score shown is on the other 482 items" in html


def test_one_candidate_or_unrecorded_held_in_scores_say_nothing():
    card = _card(0, [None, None, None])
    assert all(s.chosen is None for e in card.explanations for s in e.scores)
    assert "chosen from" not in render_card(card)
