"""Simulators: predict a neuron's values from an explanation, behind one interface.

- `base`: the interface (`Simulator`, `SimContext`, the `Simulation` a pass produces).
- `numbers`: reading numbers (the one logprob reader every mode uses, and the list parser).
- one module per simulator: `one_item` (``one``, the paper's), `whole_list` (``list``,
  ``list-logprobs``), `echo`, `embedding` (no LLM).
- `make_simulator` (here): a mode's name to its simulator.

A new simulator is one module, a `vse.core.vocab.Mode` member and one line in `make_simulator`.
"""

from __future__ import annotations

from vse.core.vocab import Api, Mode
from vse.method.simulators.base import APIS, MODES, SimContext, Simulation, SimulationError, Simulator
from vse.method.simulators.echo import EchoSimulator
from vse.method.simulators.embedding import EmbeddingSimulator, EmbeddingStore
from vse.method.simulators.one_item import OneItemSimulator
from vse.method.simulators.whole_list import ListSimulator


def make_simulator(
    mode: str,
    api: str = Api.COMPLETIONS,
    *,
    top_logprobs: int = 20,
    ten_followup: bool = False,
    embeddings: EmbeddingStore | None = None,
) -> Simulator:
    """The simulator for a mode name; a clear error for an unknown mode or an impossible pairing.

    ten_followup: one-item mode's follow-up call that splits "1" into 1 and 10 (`ScoreConfig.split_ten`).
    embeddings: the `EmbeddingStore` the ``embedding`` mode reads (no LLM).
    """
    if mode == Mode.EMBEDDING:
        if embeddings is None:
            raise ValueError(
                "simulation mode 'embedding' needs an embedding store (vse.method.simulators.embedding.EmbeddingStore)"
            )
        return EmbeddingSimulator(embeddings)
    if mode == Mode.ONE:
        return OneItemSimulator(api, top_logprobs=top_logprobs, ten_followup=ten_followup)
    if mode in (Mode.LIST, Mode.LIST_LOGPROBS):
        return ListSimulator(api, top_logprobs=top_logprobs, logprobs=mode == Mode.LIST_LOGPROBS)
    if mode == Mode.ECHO:
        if api == Api.CHAT:
            raise ValueError(
                "simulation mode 'echo' needs prompt logprobs, which /chat/completions does not offer: "
                "use --api completions"
            )
        return EchoSimulator(api, top_logprobs=top_logprobs)
    raise ValueError(f"simulation mode {mode!r} is not one of {MODES}")


__all__ = [
    "APIS",
    "MODES",
    "EchoSimulator",
    "EmbeddingSimulator",
    "ListSimulator",
    "OneItemSimulator",
    "SimContext",
    "Simulation",
    "SimulationError",
    "Simulator",
    "make_simulator",
]
