"""The table experiment: explain units by several methods, score every explanation by Algorithm 1."""

from __future__ import annotations

import json
from dataclasses import dataclass

from tqdm import tqdm

from vse.core.target import neuron_id, neuron_stem
from vse.core.vocab import Polarity
from vse.data.loader import draw_neurons
from vse.method.pipeline import explain_neuron, score_explanation
from vse.method.records import ScoreRecord
from vse.outputs.tables import all_explanations_table, best_of_table, render_scores
from vse.studies.cassette_llms import CassetteLLMs
from vse.studies.kind import MethodsStudy


@dataclass(frozen=True, kw_only=True)
class TableExperiment(MethodsStudy):
    """Explain neurons by several methods and score every explanation on several targets.

    name: folder name under cassettes/ and results/.
    model, layer: the layer whose units are explained.
    n_neurons, neuron_seed: how many evaluation units are drawn, and the draw's seed.
    methods: explanation methods (vse.method.pipeline.METHODS); clip-dissect gives one label, the others
        `n_explanations` each (best of N).
    targets: the target kinds every explanation is scored on (Table 1's columns).
    polarity: of the pairs shown and scored ("both" = signed).
    explain, score: the knobs. seed: root of every derived seed (vse.core.seeds).
    """

    polarity: str = Polarity.POSITIVE

    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> TableResult:
        units, records = run_table(self, llms, progress=progress)
        return TableResult(self.name, units, records)


@dataclass(frozen=True)
class TableResult:
    """Every score record of a table experiment."""

    name: str
    units: list[int]
    records: list[ScoreRecord]

    @property
    def table(self) -> str:
        return (
            "Best of N per method:\n\n"
            + best_of_table(self.records)
            + "\nEvery explanation:\n\n"
            + all_explanations_table(self.records)
        )

    @property
    def figure(self) -> str:
        return "\n![pass scores](scores.png)\n"

    def files(self) -> dict[str, str | bytes]:
        return {
            "results.jsonl": "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in self.records),
            "scores.png": render_scores(self.records, f"{self.name}: every explanation's simulation passes"),
        }


def run_table(
    exp: TableExperiment, open_llm: CassetteLLMs, *, progress: bool = True
) -> tuple[list[int], list[ScoreRecord]]:
    units = draw_neurons(exp.model, exp.layer, exp.n_neurons, exp.neuron_seed)
    records: list[ScoreRecord] = []
    for unit in tqdm(units, desc=exp.name, unit="neuron", disable=not progress):
        neuron = neuron_id(exp.model, exp.layer, unit)
        with open_llm(neuron_stem(exp.model, exp.layer, unit)) as llm:
            candidates = []
            for method in exp.methods:
                candidates += explain_neuron(
                    neuron,
                    method,
                    llm=llm,
                    n=exp.n_for(method),
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
