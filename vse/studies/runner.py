"""Run a recorded experiment: explain, score, write results and tables.

Every LLM call of one (experiment, neuron) goes through that neuron's cassette under
``cassettes/<experiment>/``. Replay (the default) needs no server and no key; a request that is
not in the cassette is an error naming the cassette. Recording appends what is missing and saves
after every simulation pass, so an interrupted recording resumes where it stopped. Results are
JSONL, one `ScoreRecord` per (neuron, method, explanation, target); tables are derived from them.
Nothing printed or written depends on time or machine, so a replay gives the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from vse.atomic import write_set
from vse.data.loader import draw_neurons
from vse.llm.cassettes import CASSETTE_SUFFIX, save_now, use_cassette
from vse.llm.client import ClientConfig, LLMClient, Usage
from vse.method.pipeline import LLM, explain_neuron, score_explanation
from vse.method.records import ScoreRecord
from vse.outputs.paper_tables import cells_csv, method_table, neuron_table, render_explanation_scores, rows_csv, to_csv
from vse.outputs.tables import all_explanations_table, best_of_table, render_scores
from vse.paths import data_root, results_root
from vse.studies.pooled import Study, run_study, summary_json
from vse.studies.registry import TableExperiment
from vse.studies.simulator import SimulatorStudy, run_simulator_study
from vse.studies.simulator import markdown as simulator_markdown
from vse.studies.simulator import summary_json as simulator_summary_json
from vse.studies.strategy import StrategyStudy, render_runs, run_strategy_study, runs_csv
from vse.studies.strategy import markdown as strategy_markdown
from vse.studies.strategy import summary_rows as strategy_summary

# The data's root, not the package's parent: after `pip install .` that is site-packages (vse.paths).
REPO = data_root()
REPLAY_URL = "http://replay.invalid/v1"


@dataclass(frozen=True)
class Paths:
    cassettes: Path = REPO / "cassettes"
    results: Path = field(default_factory=results_root)  # ./results, never inside site-packages


@dataclass
class Opener:
    """Opens one cassette per (experiment, stem) and gives an `LLM` on it; sums the usage."""

    name: str
    api: str
    record: bool
    config: ClientConfig
    paths: Paths
    in_flight: int | None = 1  # one-item predictions sent at once (None: the server's slots, see LLM.from_client)
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    stems: list[str] = field(default_factory=list)  # the cassettes opened, in order (for tracing)

    def path(self, stem: str) -> Path:
        return self.paths.cassettes / self.name / f"{stem}{CASSETTE_SUFFIX}"

    @contextlib.contextmanager
    def __call__(self, stem: str) -> Iterator[LLM]:
        path = self.path(stem)
        if stem not in self.stems:
            self.stems.append(stem)
        if not self.record and not path.exists():
            raise FileNotFoundError(
                f"cassette {path} is missing: record it with `make record` (vse reproduce --record)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with use_cassette(path, record=self.record) as cassette:
            client = LLMClient(self.config)
            if not self.record:
                # A replay sends nothing: skip requests' per-call proxy lookup in the environment.
                client.session.trust_env = False
            llm = LLM.from_client(client, self.api)
            if self.in_flight is not None:
                llm.in_flight = self.in_flight
            # While recording, write the cassette after every pass: an interrupted recording
            # then resumes from the last finished pass instead of losing the neuron.
            llm.checkpoint = (lambda: save_now(cassette)) if self.record else None
            try:
                yield llm
            finally:
                self.calls += client.calls
                self.usage = self.usage + client.usage


def run_table(exp: TableExperiment, open_llm: Opener, *, progress: bool = True) -> tuple[list[int], list[ScoreRecord]]:
    units = draw_neurons(exp.model, exp.layer, exp.n_neurons, exp.neuron_seed)
    records: list[ScoreRecord] = []
    for unit in tqdm(units, desc=exp.name, unit="neuron", disable=not progress):
        neuron = f"{exp.model}/{exp.layer}/{unit}"
        with open_llm(f"{exp.model}__{exp.layer}__{unit}") as llm:
            candidates = []
            for method in exp.methods:
                n = 1 if method == "clip-dissect" else exp.n_explanations
                candidates += explain_neuron(
                    neuron,
                    method,
                    llm=llm,
                    n=n,
                    polarity=exp.polarity,
                    config=exp.explain,
                    seed=exp.seed,
                    progress=progress,
                )
            for target in exp.targets:
                for c in candidates:
                    records.append(
                        score_explanation(
                            neuron,
                            c.explanation,
                            target,
                            llm=llm,
                            config=exp.score,
                            polarity=exp.polarity,
                            method=c.method,
                            explanation_seed=c.seed,
                            seed=exp.seed,
                            progress=progress,
                            checkpoint=llm.checkpoint,
                        )
                    )
    return units, records


def study_tables(exp: Study, result: dict) -> str:
    """table.md of a study: the method tables (both protocols), the neuron table, the comparison."""
    rows = result["scores"]
    n = exp.n_explanations
    parts = []
    for protocol, what in (
        ("uniform", "the paper's protocol: the pool's random items"),
        ("top-and-random-heldout", "the neuron's held-out top items plus the random items it was not shown"),
    ):
        cell = (
            f"the mean over {len(result['units'])} neurons of the best of {n} explanations' score (the mean of all {n})"
            if n > 1
            else f"the mean over {len(result['units'])} neurons (the same again: one explanation each)"
        )
        parts.append(f"Method table, {protocol} ({what}); each cell: {cell}:\n\n" + method_table(rows, protocol))
    for method, target in (("weight-label", "weight-label"),):
        t = neuron_table(rows, method, target)
        if t:
            parts.append(
                f"Neuron table ({method} explanations on the {target} target, uniform; Acc: rounded prediction equals the true 0..10 value):\n\n"
                + t
            )
    parts.append("Matched vs mismatched (each neuron's first explanation of each method):\n\n" + result["table"])
    return "\n".join(parts)


def run_experiment(
    exp: TableExperiment | Study | StrategyStudy,
    *,
    record: bool = False,
    client_config: ClientConfig | None = None,
    paths: Paths = Paths(),
    progress: bool = True,
    in_flight: int = 1,
) -> str:
    """Run (replay or record) `exp`; write results/<name>/; return its table. in_flight: one-item
    predictions sent at once while recording (results and cassettes do not depend on it)."""
    config = client_config or ClientConfig(base_url=REPLAY_URL, model="local", max_retries=0 if not record else 5)
    api = exp.score.api
    opener = Opener(exp.name, api, record, config, paths, in_flight=in_flight if record else 1)
    out = paths.results / exp.name
    files: dict[str, str | bytes] = {}
    previous = signal.getsignal(signal.SIGTERM)
    if record:
        # `kill` / a CI timeout sends SIGTERM: turn it into SystemExit so the cassette is saved on the way out.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if isinstance(exp, SimulatorStudy):
            from vse.method.simulators.embedding import EmbeddingStore

            store = EmbeddingStore(paths.cassettes / exp.name / "embeddings.npz", record=record)
            try:
                result = run_simulator_study(exp, opener, store, progress=progress)
            finally:
                store.save()  # recording: what was embedded so far survives an interruption
            units = sorted({r["neuron"] for r in result["explanations"]})
            table = (
                simulator_markdown(result["rows"])
                + f"\nEmbeddings replay from `cassettes/{exp.name}/embeddings.npz`.\n"
            )
            files["summary.json"] = simulator_summary_json(result["rows"])
            files["explanations.jsonl"] = "".join(json.dumps(r, sort_keys=True) + "\n" for r in result["explanations"])
            files["per-unit.csv"] = to_csv(result["per_unit"])
        elif isinstance(exp, Study):
            result = run_study(exp, opener, progress=progress)
            units = result["units"]
            table = study_tables(exp, result)
            files["explanations.jsonl"] = "".join(json.dumps(r, sort_keys=True) + "\n" for r in result["explanations"])
            files["summary.json"] = summary_json(result["rows"])
            files["comparison.csv"] = to_csv([r.to_json() for r in result["rows"]])
            files["scores.csv"] = rows_csv(result["scores"])
            files["methods.csv"] = cells_csv(result["scores"])
            if exp.figures:
                files["scores.png"] = render_explanation_scores(
                    result["scores"], f"{exp.name}: every explanation's score"
                )
                # What the HTML report lists beside each neuron's top-image grid (vse.outputs.report).
                files["neurons.jsonl"] = "".join(
                    json.dumps(
                        dict(r.to_json(), neuron=f"{exp.model}/{exp.layer}/{r.unit}", mean=r.to_json()["corr"]),
                        sort_keys=True,
                    )
                    + "\n"
                    for r in result["scores"]
                )
        elif isinstance(exp, StrategyStudy):
            result = run_strategy_study(exp, opener, progress=progress)
            units = [result["unit"]]
            rows = strategy_summary(exp, result["runs"])
            rec = result["explanation"]
            table = (
                f'Neuron {rec["neuron"]}, its {rec["method"]} explanation: "{rec["explanation"]}"; target {exp.target}; '
                f"{exp.n_runs} runs per variant, each of {exp.n_held} held-out top items + {exp.n_random} random items (uniform: the random ones only); "
                "every variant sees the same items and few-shot draws in a run.\n\n" + strategy_markdown(rows)
            )
            files["explanation.json"] = json.dumps(rec, indent=2, sort_keys=True) + "\n"
            files["runs.csv"] = runs_csv(result["runs"])
            files["summary.csv"] = to_csv(rows)
            files["runs.png"] = render_runs(exp, result["runs"])
        else:
            units, records = run_table(exp, opener, progress=progress)
            table = (
                "Best of N per method:\n\n"
                + best_of_table(records)
                + "\nEvery explanation:\n\n"
                + all_explanations_table(records)
            )
            files["results.jsonl"] = "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in records)
            files["scores.png"] = render_scores(records, f"{exp.name}: every explanation's simulation passes")
    finally:
        signal.signal(signal.SIGTERM, previous)
    usage = f"LLM usage: {opener.calls} calls, {opener.usage.prompt_tokens} prompt tokens, {opener.usage.completion_tokens} completion tokens\n"
    totals = {
        "calls": opener.calls,
        "prompt_tokens": opener.usage.prompt_tokens,
        "completion_tokens": opener.usage.completion_tokens,
    }
    cassettes = [f"cassettes/{exp.name}/{stem}{CASSETTE_SUFFIX}" for stem in opener.stems]
    files["config.json"] = (
        json.dumps(
            {"experiment": exp.to_json(), "units": units, "usage": totals, "cassettes": cassettes},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    usage += "\nEvery number above replays from: " + ", ".join(f"`{c}`" for c in cassettes) + "\n"
    plot = (
        "\n![pass scores](scores.png)\n"
        if "scores.png" in files
        else ("\n![runs](runs.png)\n" if "runs.png" in files else "")
    )
    files["table.md"] = f"# {exp.name}\n\n{table}\n{usage}{plot}"
    # One set: a reader never sees config.json from one run beside table.md from another.
    write_set(out, files)
    return table + "\n" + usage


def _exit_on_sigterm(signum, frame):  # pragma: no cover - exercised by hand
    sys.exit(128 + signum)


__all__ = ["Paths", "run_experiment", "run_table"]
