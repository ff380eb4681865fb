"""The one simulator interface: given an explanation, predict a neuron's values for texts.

A `Simulator` turns (explanation, few-shot examples, texts) into predicted values: a `Simulation`.
The scoring loop only calls `Simulator.predict`; what a simulator supports (signed values, the
chat API, sharing predictions item by item through a `PredictionStore`) is declared on its class.

A new simulator is one module beside this one (a `Simulator` subclass), a `vse.core.vocab.Mode`
member naming it, and one line in `vse.method.simulators.make_simulator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from vse.core.vocab import Api, Mode, choices
from vse.llm.client import LLMClient, Usage
from vse.method.prediction_store import PredictionStore
from vse.method.prompts import Example

#: The simulation modes, as command lines and config files spell them.
MODES = choices(Mode)
#: The endpoints a simulator (or the explainer) can use.
APIS = choices(Api)


class SimulationError(ValueError):
    """A simulation reply could not be turned into values (after retries, where they apply)."""


@dataclass
class Simulation:
    """What one simulation pass produced.

    values: one predicted value per requested text (expected values or sampled integers).
    calls: LLM calls made (retries and follow-ups included).
    usage: tokens those calls used.
    retries: replies rejected and asked again (list modes).
    unresolved: one-item branches ("1" vs "10", a minus sign) above the follow-up threshold that
        could not be read and were approximated (chat; see vse.method.simulators.numbers.read_value).
    """

    values: list[float]
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    retries: int = 0
    unresolved: int = 0


@dataclass(frozen=True)
class SimContext:
    """Everything a prediction depends on besides the item.

    kind: the pair kind of the target ("weight-label", ...): it picks the prompt's wording.
    examples: the few-shot neurons as shown (pairs drawn once per scoring run).
    explanation: the text that completes "the main thing this neuron does is find".
    signed: values are -10..10 (App. C.3.2) instead of 0..10.
    """

    kind: str
    examples: tuple[Example, ...]
    explanation: str
    signed: bool = False


@dataclass(frozen=True)
class Run:
    """How one `Simulator.predict` call runs: its sampling seed, the prediction store, the calls in flight."""

    seed: int = 0
    store: PredictionStore | None = None
    in_flight: int = 1


class Simulator:
    """Predicts values for texts from an explanation. Subclasses declare what they support.

    mode: its `vse.core.vocab.Mode`.
    per_item: a prediction depends on the item alone (given the context), so a store may keep it.
    signed_ok: handles signed (-10..10) targets.
    apis: the endpoints it can use.
    """

    mode: ClassVar[str]
    per_item: ClassVar[bool] = False
    signed_ok: ClassVar[bool] = True
    apis: ClassVar[tuple[str, ...]] = APIS

    def __init__(self, api: str = Api.COMPLETIONS, *, top_logprobs: int = 20) -> None:
        if api not in APIS:
            raise ValueError(f"api {api!r} is not one of {APIS}")
        if api not in self.apis:
            raise ValueError(f"simulation mode '{self.mode}' has no {api} form (it needs {', '.join(self.apis)})")
        self.api = api
        self.top_logprobs = top_logprobs

    def check(self, ctx: SimContext) -> None:
        if ctx.signed and not self.signed_ok:
            raise ValueError(f"simulation mode '{self.mode}' cannot predict signed values")

    def predict(
        self,
        client: LLMClient | None,
        ctx: SimContext,
        texts: Sequence[str],
        *,
        seed: int = 0,
        store: PredictionStore | None = None,
        in_flight: int = 1,
    ) -> Simulation:
        """Values for ``texts``, in their order, from ``ctx``'s explanation (`simulate` does the work).

        seed: the sampling seed of modes that sample. store: where per-item predictions are kept and
        looked up first (per-item modes). in_flight: item predictions sent at once (one-item mode).
        """
        self.check(ctx)
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        return self.simulate(client, ctx, texts, Run(seed, store, in_flight))

    def simulate(self, client: LLMClient | None, ctx: SimContext, texts: Sequence[str], run: Run) -> Simulation:
        """The simulator's own prediction, ``ctx`` already checked."""
        raise NotImplementedError
