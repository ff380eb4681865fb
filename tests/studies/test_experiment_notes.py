"""The report's notes of the experiments (`vse.outputs.experiment_notes`) and the registry name the same ones."""

from __future__ import annotations

import pytest

from vse.outputs.experiment_notes import NOTES, PRIORITY
from vse.studies.registry import EXPERIMENTS, check_notes


def test_every_experiment_has_a_note_and_every_note_an_experiment():
    assert set(NOTES) == set(EXPERIMENTS)
    assert set(PRIORITY) <= set(EXPERIMENTS)
    check_notes()


def test_a_missing_or_stray_note_is_named():
    with pytest.raises(ValueError, match="experiments without a note: b.*notes of no experiment: c"):
        check_notes(["a", "b"], ["a", "c"], ["a"])
    with pytest.raises(ValueError, match="report priority names no experiment: z"):
        check_notes(["a"], ["a"], ["z"])
