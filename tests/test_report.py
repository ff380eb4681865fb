from vse.report import plot_scores
from vse.run import best_of, markdown_table

RECORDS = [
    {"neuron": "m/l/1", "method": "llm-weight-label", "explanation_seed": 0, "explanation": "dogs", "target": "weight-label", "scores": [10.0, 20.0, 30.0], "mean": 20.0, "half_width": 16.9, "runs": 3, "hit_cap": False, "accuracy": 0.5, "mse": 4.0, "mae": 1.5},
    {"neuron": "m/l/1", "method": "llm-weight-label", "explanation_seed": 1, "explanation": "cats", "target": "weight-label", "scores": [30.0, 40.0, 50.0], "mean": 40.0, "half_width": 16.9, "runs": 8, "hit_cap": True, "accuracy": 0.25, "mse": 5.0, "mae": 2.0},
    {"neuron": "m/l/1", "method": "clip-dissect", "explanation_seed": None, "explanation": "raspberry", "target": "weight-label", "scores": [0.0, 1.0, -1.0], "mean": 0.0, "half_width": 1.7, "runs": 3, "hit_cap": False, "accuracy": 0.1, "mse": 9.0, "mae": 3.0},
]


def test_best_of_keeps_the_highest_mean_per_method():
    best = best_of(RECORDS)
    assert {(r["method"], r["explanation"]) for r in best} == {("llm-weight-label", "cats"), ("clip-dissect", "raspberry")}


def test_markdown_table_rows_and_cap_flag():
    table = markdown_table(RECORDS)
    lines = table.strip().splitlines()
    assert len(lines) == 4
    assert "| m/l/1 | llm-weight-label | the main thing this neuron does is find cats | 40.00 ± 16.90 (8, cap) | 25.0% | 5.00 | 2.00 |" in lines
    assert "| m/l/1 | clip-dissect | the main thing this neuron does is find raspberry | 0.00 ± 1.70 (3) | 10.0% | 9.00 | 3.00 |" in lines


def test_plot_is_deterministic(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plot_scores(RECORDS, a, "t")
    plot_scores(RECORDS, b, "t")
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() == b.read_bytes()
