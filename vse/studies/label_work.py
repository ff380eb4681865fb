"""The work of `vse label`: one unit explained (and with ``--score`` the fair best of its explanations scored),
and a whole layer of such units run through `vse.studies.layer_labelling.label_units`.

A unit whose values are constant is found before any LLM call and recorded as ``dead`` (`dead_reason`); a
unit the scoring protocol cannot score (`vse.method.score.Unscorable`: e.g. every item the explainer did not
see has one value) keeps its explanations and is recorded as ``unscorable`` with the reason in words
(`LABEL_REMEDIES` says what to do in `vse label`'s options): final, not a failure; a unit whose scoring fails
otherwise keeps its explanations (``explained``), which the next run scores without explaining again; an
endpoint that is gone or refuses every request stops the run (`STOP_ON`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from vse.core.target import Target, neuron_id
from vse.core.vocab import TARGET_KINDS, Api, Kind, Mode, Polarity, Protocol, UnitStatus, Unscorability
from vse.data import loader
from vse.llm.errors import LLMEndpointDown, LLMEndpointRejected
from vse.method import pipeline
from vse.method.best_of import best_of_n
from vse.method.label_record import LabelRecord, UnitUsage
from vse.method.records import ExplanationRecord
from vse.method.score import ScoreConfig, Unscorable
from vse.method.simulators.embedding import EmbeddingStore
from vse.studies.layer_labelling import LabelSummary, kept_explanations, label_units

#: An endpoint that is gone or refuses every request stops the whole run: never one unit's failure.
STOP_ON: tuple[type[BaseException], ...] = (LLMEndpointDown, LLMEndpointRejected)


#: What to do about an unscorable unit, in `vse label`'s own options (`vse.method.score.REMEDIES` words them
#: for `vse score` and `vse validate`).
LABEL_REMEDIES: dict[Unscorability, str] = {
    Unscorability.UNSEEN: "give a larger probe set, or score with --simulator one --n 1, whose uniform passes "
    "include the shown items",
    Unscorability.SPLIT: "give a larger probe set, or label with --n 1, which scores its one explanation on every "
    "item the explainer did not see",
    Unscorability.DRAWS: "give a larger probe set, or score with --simulator embedding, which uses each item the "
    "explainer did not see once",
}


def dead_reason(target: Target) -> str | None:
    """Why a unit has nothing to explain or score, or None: its scaled values (what a prompt shows and a
    score correlates with) are all equal, so an explanation would be read from nothing and no score exists."""
    if len(np.unique(target.values)) > 1:
        return None
    where = "on the probe set" if target.kind == Kind.CAPTION_ACTIVATION else f"in its {target.kind} weights"
    if not np.any(target.raw):
        return f"no non-zero value {where}"
    if target.polarity == Polarity.POSITIVE and float(np.max(target.raw)) <= 0:
        return f"no positive value {where}"
    return f"constant values {where}"


def make_work(
    model: str,
    layer: str,
    method: str,
    *,
    score: bool,
    target: str,
    n: int,
    client_for,
    api: str = Api.COMPLETIONS,
    source=None,
    in_flight: int | None = None,
    embeddings=None,
    kept: dict[int, tuple[ExplanationRecord, ...]] | None = None,
):
    """The per-unit work: explain the unit (``n`` explanations); with ``--score``, the fair best of them
    (chosen on held-in items, reported on held-out ones) scored.

    ``embeddings``: an `EmbeddingStore`: score with the embedding simulator over every unseen item (what
    the simulator study recommends); None: the paper's LLM simulator and Algorithm 1.

    ``source``: a `vse.data.loader.Source` naming a probe folder (``--probe``), else the fixtures.
    ``in_flight``: one-item predictions each worker sends at once (None: what the server takes, two a slot
    of vse's local server; `LLM.from_client`).
    ``kept``: explanations an earlier run kept per unit (`kept_explanations`): scored, not made again.

    Before any call, the unit's values are loaded (the method's kind, and the scored one with ``score``):
    constant values make a ``dead`` record (`dead_reason`) and cost nothing. A scoring failure makes an
    ``explained`` record that keeps the explanations; an error of `STOP_ON` still stops the run. A unit the
    protocol cannot score (`Unscorable`, found before any scoring call) makes an ``unscorable`` record that
    keeps the explanations and says why, and what to do (`LABEL_REMEDIES`)."""
    where = {} if source is None else {"source": source}
    kinds = [k for k in dict.fromkeys([method, *([target] if score else [])]) if k in TARGET_KINDS]
    kept = kept or {}

    def work(unit: int, base_url: str) -> LabelRecord:
        neuron = neuron_id(model, layer, unit)
        record = LabelRecord(unit, neuron=neuron, method=method, target=target if score else None)
        for kind in kinds:
            reason = dead_reason(loader.load_target(neuron, kind, source=source or loader.FIXTURES))
            if reason is not None:
                return replace(record, status=UnitStatus.DEAD, kind=kind, dead=reason, usage=UnitUsage())
        client = client_for(base_url)
        before, calls_before = client.usage, client.calls
        llm = pipeline.LLM.from_client(client, api)
        if in_flight is not None:
            llm.in_flight = in_flight
        candidates = kept.get(unit) or tuple(
            pipeline.explain_neuron(neuron, method, llm=llm, n=n, progress=False, **where)
        )
        record = replace(record, explanations=candidates)
        if score:
            how = dict(where)
            if embeddings is not None:
                llm.embeddings, how["config"] = (
                    embeddings,
                    ScoreConfig(api=api, mode=Mode.EMBEDDING, protocol=Protocol.RECALL_FREE),
                )
            else:  # `--simulator one`: the paper's LLM simulator and Algorithm 1
                how["config"] = ScoreConfig(api=api, mode=Mode.ONE, protocol=Protocol.UNIFORM)
            try:
                # The fair best of the unit's explanations (one: scored on every unseen item), with every
                # candidate's held-in score kept in the record (`vse.method.best_of`).
                best = best_of_n(
                    candidates, target, llm=llm, progress=False, score_fn=pipeline.score_explanation, **how
                )
                record = replace(record, scores=(best,))
            except STOP_ON:
                raise
            except Unscorable as exc:  # not a failure: the unit's values leave the protocol nothing to correlate
                reason = exc.instead(LABEL_REMEDIES).reason
                record = replace(record, status=UnitStatus.UNSCORABLE, unscorable=reason)
            # The explanations are paid for: keep them, so that the next run only scores.
            except Exception as exc:  # noqa: BLE001
                record = replace(record, status=UnitStatus.EXPLAINED, error=f"{type(exc).__name__}: {exc}")
        # The client is this thread's own (per_thread), so the difference is this unit's cost.
        used = client.usage
        usage = UnitUsage(
            used.prompt_tokens - before.prompt_tokens,
            used.completion_tokens - before.completion_tokens,
            client.calls - calls_before,
        )
        return replace(record, usage=usage)

    return work


def label_layer(
    model: str,
    layer: str,
    method: str,
    units: Sequence[int],
    *,
    out: str | Path,
    client_for: Callable[[str], Any],
    base_urls: Sequence[str],
    score: bool = False,
    target: str,
    n: int = 1,
    api: str = Api.COMPLETIONS,
    embedding_simulator: bool = True,
    source=None,
    in_flight: int | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
) -> LabelSummary:
    """Label ``units`` of MODEL/LAYER into ``out`` (`make_work` through `label_units`).

    With ``score`` and ``embedding_simulator``, the embedding simulator scores, its embeddings kept in
    ``out`` with the suffix ``.embeddings.npz`` (saved however the run ends: they serve a resumed run).
    A dead endpoint (the client's circuit breaker is open), or one that refuses every request
    (401/403/404: key, URL, model), stops the run with `RunStopped`: it is not one unit's failure."""
    embeddings = None
    if score and embedding_simulator:
        embeddings = EmbeddingStore(Path(out).with_suffix(".embeddings.npz"), record=True)
    work = make_work(
        model,
        layer,
        method,
        score=score,
        target=target,
        n=n,
        client_for=client_for,
        api=api,
        source=source,
        in_flight=in_flight,
        embeddings=embeddings,
        kept=kept_explanations(out),
    )
    try:
        return label_units(
            units,
            work,
            out=Path(out),
            workers=workers,
            base_urls=base_urls,
            shard=shard,
            progress=progress,
            stop_on=STOP_ON,
        )
    finally:
        if embeddings is not None:
            embeddings.save()  # what was embedded so far serves the resumed run too
