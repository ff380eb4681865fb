"""What every kind of recorded experiment is: its shared fields, `run`, and what a run gives back.

`vse.studies.runner.run_experiment` runs any kind the same way: `kind.run(llms)` returns a result
whose `table` it prints and whose `files()` it writes to results/<name>/ beside config.json and
table.md. A kind knows its own files; the runner knows none of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Protocol

from vse.core.vocab import Display, Kind, Method, Mode
from vse.core.vocab import Protocol as ItemProtocol
from vse.method.explain import ExplainConfig
from vse.method.score import ScoreConfig
from vse.studies.cassette_llms import CassetteLLMs


class StudyResult(Protocol):
    """What one run of a kind gives back."""

    @property
    def units(self) -> list:
        """The units explained (config.json's "units")."""

    @property
    def table(self) -> str:
        """The Markdown the runner prints and puts in table.md."""

    @property
    def figure(self) -> str:
        """table.md's last lines: a link to the run's figure ("" when it has none)."""

    def files(self) -> dict[str, str | bytes]:
        """The kind's own files of results/<name>/, by file name (not config.json or table.md)."""


def heldout_explainer() -> ExplainConfig:
    """The matched studies' explainer: the even raw ranks of the top pairs shown, the odd ones held out."""
    return ExplainConfig(shown=Display.HELDOUT)


def one_item_scorer() -> ScoreConfig:
    """The matched studies' scorer: the paper's one-item LLM simulator, 25 pairs a few-shot neuron."""
    return ScoreConfig(mode=Mode.ONE, protocol=ItemProtocol.UNIFORM, n_fewshot_pairs=25)


@dataclass(frozen=True, kw_only=True)
class StudyKind(ABC):
    """The fields every kind has.

    name: folder under cassettes/ and results/. model: the network whose units are explained.
    neuron_seed: the seed of the units' draw. explain, score: the explanation and simulation knobs.
    seed: root of every derived seed (vse.core.seeds).
    """

    name: str
    model: str = "efficientnet_lite0"
    neuron_seed: int = 0
    # The display is pinned: a recorded experiment keeps its requests whatever the user-facing default.
    explain: ExplainConfig = field(default_factory=lambda: ExplainConfig(shown=Display.TOP))
    score: ScoreConfig = field(default_factory=ScoreConfig)
    seed: int = 0

    def to_json(self) -> dict:
        """config.json's "experiment": every field."""
        return asdict(self)

    @abstractmethod
    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> StudyResult:
        """Record or replay the experiment through `llms` (one cassette per stem)."""


@dataclass(frozen=True, kw_only=True)
class OneLayerStudy(StudyKind):
    """A kind whose units come from one layer."""

    layer: str = "_conv_head"


@dataclass(frozen=True, kw_only=True)
class MethodsStudy(OneLayerStudy):
    """Units drawn from one layer, explained by several methods, scored on several targets.

    n_neurons: how many units are drawn (with `neuron_seed`). methods: explanation methods
    (vse.method.pipeline.METHODS); clip-dissect gives one label, the others `n_explanations` each.
    targets: the target kinds every explanation is scored on.
    """

    n_neurons: int = 1
    methods: tuple[str, ...] = (Method.WEIGHT_LABEL, Method.CLIP_DISSECT)
    targets: tuple[str, ...] = (Kind.WEIGHT_LABEL,)
    n_explanations: int = 1

    def n_for(self, method: str) -> int:
        """Explanations per unit by `method`: clip-dissect gives its one label."""
        return 1 if method == Method.CLIP_DISSECT else self.n_explanations
