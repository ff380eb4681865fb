"""Run a recorded experiment: explain, score, write results and tables.

Every LLM call of one (experiment, neuron) goes through that neuron's cassette under
``cassettes/<experiment>/``. Replay (the default) needs no server and no key; a request that is
not in the cassette is an error naming the cassette. Recording appends what is missing, so an
interrupted recording resumes at the first neuron (or call) it lacks. Results are JSONL, one
record per (neuron, method, explanation, target); the Markdown table is derived from them.
Nothing printed or written depends on time or machine, so a replay gives the same bytes.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from vse.experiments import Experiment, baseline_explanation, evaluation_units, fewshot_neurons, load_target
from vse.explain import explain
from vse.llm.cassettes import CASSETTE_SUFFIX, use_cassette
from vse.llm.client import ClientConfig, LLMClient
from vse.paths import data_root, results_root
from vse.prompts import EXPLANATION_PREFIX
from vse.report import plot_scores
from vse.score import score_explanation

# The data's root, not the package's parent: after `pip install .` that is site-packages (vse.paths).
REPO = data_root()


@dataclass(frozen=True)
class Paths:
    cassettes: Path = REPO / "cassettes"
    results: Path = field(default_factory=results_root)  # ./results, never inside site-packages


def cassette_path(paths: Paths, exp: Experiment, unit: int) -> Path:
    return paths.cassettes / exp.name / f"{exp.model}__{exp.layer}__{unit}{CASSETTE_SUFFIX}"


def run_neuron(client: LLMClient, exp: Experiment, unit: int, *, progress: bool = True, checkpoint: Callable[[], None] | None = None) -> list[dict]:
    """Explain one unit best-of-N, score every explanation and baseline on every target."""
    target = load_target(exp.model, exp.layer, unit, exp.explain_kind)
    fewshot = fewshot_neurons(exp, exp.explain_kind)
    candidates: list[tuple[str, str, int | None]] = []  # (method, explanation, seed)
    for i in range(exp.n_explanations):
        e = explain(client, target, fewshot, exp.explain, seed=exp.seed * 100 + i)
        candidates.append((f"llm-{exp.explain_kind}", e.text, e.seed))
    for b in exp.baselines:
        candidates.append((b, baseline_explanation(exp, b, unit), None))
    records = []
    for kind in exp.score_kinds:
        scored = load_target(exp.model, exp.layer, unit, kind)
        kind_fewshot = fewshot_neurons(exp, kind)
        for method, text, seed in candidates:
            result = score_explanation(client, text, scored, kind_fewshot, exp.simulate, seed=exp.seed, progress=progress, checkpoint=checkpoint)
            records.append(
                {
                    "neuron": target.neuron,
                    "method": method,
                    "explanation_seed": seed,
                    "explanation": text,
                    "target": kind,
                    **result.summary(),
                    "passes": [p.__dict__ for p in result.passes],
                }
            )
    return records


def best_of(records: list[dict]) -> list[dict]:
    """Per (neuron, method, target) the best-scoring explanation (the paper's best of N)."""
    best: dict[tuple, dict] = {}
    for r in records:
        key = (r["neuron"], r["method"], r["target"])
        if key not in best or r["mean"] > best[key]["mean"]:
            best[key] = r
    return list(best.values())


def markdown_table(records: list[dict]) -> str:
    """One row per (neuron, method): the best explanation's score on each target."""
    targets = sorted({r["target"] for r in records})
    head = "| neuron | method | explanation | " + " | ".join(f"{t} score (±90% CI, passes)" for t in targets) + " | Acc | MSE | MAE |"
    lines = [head, "|" + "---|" * (len(targets) + 6)]
    rows: dict[tuple, dict] = {}
    for r in best_of(records):
        rows.setdefault((r["neuron"], r["method"]), {})[r["target"]] = r
    for (neuron, method), by_target in rows.items():
        first = by_target[targets[0]] if targets[0] in by_target else next(iter(by_target.values()))
        cells = []
        for t in targets:
            r = by_target.get(t)
            cells.append("" if r is None else f"{r['mean']:.2f} ± {r['half_width']:.2f} ({r['runs']}{', cap' if r['hit_cap'] else ''})")
        lines.append(
            f"| {neuron} | {method} | {EXPLANATION_PREFIX} {first['explanation']} | "
            + " | ".join(cells)
            + f" | {100 * first['accuracy']:.1f}% | {first['mse']:.2f} | {first['mae']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def all_explanations_table(records: list[dict]) -> str:
    """Every scored explanation, not only the best: best-of-N picks the luckiest of overlapping intervals."""
    lines = ["| neuron | method | seed | target | explanation | score ± 90% CI | passes | scores per pass |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        seed = "" if r["explanation_seed"] is None else r["explanation_seed"]
        passes = f"{r['runs']}{' (cap)' if r['hit_cap'] else ''}"
        scores = ", ".join(f"{s:.1f}" for s in r["scores"])
        lines.append(f"| {r['neuron']} | {r['method']} | {seed} | {r['target']} | {r['explanation']} | {r['mean']:.2f} ± {r['half_width']:.2f} | {passes} | {scores} |")
    return "\n".join(lines) + "\n"


def run_experiment(exp: Experiment, *, record: bool = False, client_config: ClientConfig | None = None, paths: Paths = Paths(), progress: bool = True) -> tuple[list[dict], str]:
    """Run (replay or record) every neuron of `exp`; write results/<name>/; return records and table."""
    config = client_config or ClientConfig(base_url="http://replay.invalid/v1", model="local", max_retries=0 if not record else 5)
    out = paths.results / exp.name
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    totals = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    units = evaluation_units(exp)
    if record:
        # `kill` / a CI timeout sends SIGTERM: turn it into SystemExit so the cassette is saved on the way out.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    for unit in tqdm(units, desc=exp.name, unit="neuron", disable=not progress):
        path = cassette_path(paths, exp, unit)
        if not record and not path.exists():
            raise FileNotFoundError(f"cassette {path} is missing: record it with `make record` (vse reproduce --record)")
        path.parent.mkdir(parents=True, exist_ok=True)
        with use_cassette(path, record=record) as cassette:
            client = LLMClient(config)
            # While recording, write the cassette after every pass: an interrupted recording
            # then resumes from the last finished pass instead of losing the neuron.
            records += run_neuron(client, exp, unit, progress=progress, checkpoint=cassette._save if record else None)
        totals["calls"] += client.calls
        totals["prompt_tokens"] += client.usage.prompt_tokens
        totals["completion_tokens"] += client.usage.completion_tokens
    _write(out / "config.json", json.dumps({"experiment": exp.to_json(), "units": units, "usage": totals}, indent=2, sort_keys=True) + "\n")
    _write(out / "results.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    table = "Best of N per method:\n\n" + markdown_table(records) + "\nEvery explanation:\n\n" + all_explanations_table(records)
    usage = f"LLM usage: {totals['calls']} calls, {totals['prompt_tokens']} prompt tokens, {totals['completion_tokens']} completion tokens\n"
    _write(out / "table.md", f"# {exp.name}\n\n{table}\n{usage}\n![pass scores](scores.png)\n")
    plot_scores(records, out / "scores.png", f"{exp.name}: every explanation's simulation passes")
    return records, table + "\n" + usage


def _exit_on_sigterm(signum, frame):  # pragma: no cover - exercised by hand
    sys.exit(128 + signum)


def _write(path: Path, text: str) -> None:
    # Temporary file + rename: a SIGTERM mid-write leaves the previous file, never a cut one.
    from vse.atomic import write_atomic

    write_atomic(path, text)
