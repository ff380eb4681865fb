"""vse.outputs.compare: last-bit noise told apart from a changed result, file by file."""

import json

from vse.outputs.compare import Verdict, compare_trees


def jsonl(*records) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()


BASE = {
    "exp/results.jsonl": jsonl({"neuron": "m/l/1", "mean": 3.728827027256608, "mae": 1.684, "passes": 3}),
    "exp/table.md": b"| neuron | mean |\n|---|---|\n| m/l/1 | 3.73 |\n",
    "exp/scores.csv": b"unit,corr\n1,21.1547\n",
    "exp/scores.png": b"\x89PNG...",
}


def test_the_same_bytes_are_identical():
    c = compare_trees(BASE, dict(BASE))
    assert c.verdict is Verdict.IDENTICAL
    assert c.summary() == "identical: 4 files, byte for byte"


def test_last_bit_noise_and_rounding_flips_are_within_tolerance():
    got = dict(BASE)
    got["exp/results.jsonl"] = jsonl({"neuron": "m/l/1", "mean": 3.728827027256609, "mae": 1.6839, "passes": 3})
    got["exp/table.md"] = b"| neuron | mean |\n|---|---|\n| m/l/1 | 3.72 |\n"
    got["exp/scores.png"] = b"\x89PNG,,,"
    c = compare_trees(BASE, got)
    assert c.verdict is Verdict.WITHIN_TOLERANCE, c.summary()
    assert c.numbers_within_tolerance == 1 and c.rounding_flips == 2
    assert 0 < c.largest_rel_difference < 1e-15
    assert c.images_differ == ["exp/scores.png"]
    assert "1 numbers differ within relative tolerance" in c.summary()


def test_a_changed_number_is_named_by_file_record_and_field():
    got = dict(BASE)
    got["exp/results.jsonl"] = jsonl({"neuron": "m/l/1", "mean": 3.9, "mae": 1.684, "passes": 4})
    c = compare_trees(BASE, got)
    assert c.verdict is Verdict.DIFFERENT
    where = sorted(str(d) for d in c.differences)
    assert where == [
        "exp/results.jsonl: record 1.mean: expected 3.728827027256608, got 3.9",
        "exp/results.jsonl: record 1.passes: expected 3, got 4",
    ]


def test_text_csv_and_missing_files_are_compared_too():
    got = dict(BASE)
    got["exp/table.md"] = b"| neuron | mean |\n|---|---|\n| m/l/2 | 3.73 |\n"
    got["exp/scores.csv"] = b"unit,corr\n1,25.0\n"
    del got["exp/scores.png"]
    c = compare_trees(BASE, got)
    text = "\n".join(str(d) for d in c.differences)
    assert "exp/table.md: line 3" in text
    assert "exp/scores.csv: row 2, column 'corr', number 1: expected 21.1547, got 25.0" in text
    assert "exp/scores.png: (file): expected present, got missing" in text
    assert c.verdict is Verdict.DIFFERENT


def test_a_relative_tolerance_can_be_widened():
    before, after = {"a.json": b'{"x": 1.0}'}, {"a.json": b'{"x": 1.0000001234567}'}
    assert compare_trees(before, after).verdict is Verdict.DIFFERENT
    assert compare_trees(before, after, rel_tol=1e-6).verdict is Verdict.WITHIN_TOLERANCE
