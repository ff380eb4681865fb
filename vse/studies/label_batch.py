"""`vse label --batch` and ``--batch-import``: a run's requests as a Batch API input file, the output's
replies into the run's cassette, and ``--replay`` to finish the run offline from it (docs/labelling.md).

One mechanism serves both: `collect` does the run's own work (`vse.studies.label_work.make_work`, what
`vse label` does to each unit) against the run's cassette, replay-only, through a
`vse.llm.batch.CollectingClient`: every request the cassette answers is replayed, every one it lacks is
held back and noted, never sent. So the requests are the run's own bytes by construction (no separate
plan to keep in step), and their ids (`vse.llm.batch.content_id`) are found again by the same command:
``--batch-import`` needs neither the input file nor any state besides the cassette.

Rounds. A request that depends on a reply can only be known once that reply is in the cassette: the
first round holds the explanations; with ``--score --simulator one`` the next rounds hold the LLM
simulator's predictions (a round per pass of Algorithm 1 and candidate, a pass's items together). The
default embedding scorer sends no LLM request, so without ``--simulator one`` one round is all. A round
with nothing left to send says so, and ``--replay`` then finishes the run from the cassette.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vse.core.vocab import Api, UnitStatus
from vse.llm.batch import BatchRequest, CollectingClient, ImportReport, import_replies, write_batch_input
from vse.llm.cassettes import use_cassette
from vse.llm.client import ClientConfig
from vse.llm.errors import RequestDeferred
from vse.llm.pricing import BATCH_PRICE_FACTOR, DryRun, dry_run
from vse.studies import label_work
from vse.studies.layer_labelling import done_units, kept_explanations

#: The base URL of a collection or a replay: never contacted (a cassette matches without scheme and host).
REPLAY_URL = "http://replay.invalid/v1"
#: How many custom ids a report line names before it says how many more.
SHOWN_IDS = 5


def cassette_for(out: str | Path) -> Path:
    """The run's cassette, next to its label file: ``labels/X.jsonl`` -> ``labels/X.cassette.json.gz``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".cassette.json.gz")


@dataclass(frozen=True)
class Collected:
    """A run's requests against its cassette: ``pending`` (the cassette lacks them; in unit order, sorted
    within a unit) and ``recorded`` (ids it answers); ``units``: the units whose work ran (not already
    done in the label file, not dead)."""

    pending: tuple[BatchRequest, ...]
    recorded: frozenset[str]
    units: int


def collect(
    model: str,
    layer: str,
    method: str,
    units: Sequence[int],
    *,
    out: str | Path,
    cassette: str | Path,
    llm_model: str | None,
    score: bool = False,
    llm_simulator: bool = False,
    target: str,
    n: int = 1,
    api: str = Api.COMPLETIONS,
    source=None,
) -> Collected:
    """The requests of ``vse label`` on ``units`` that ``cassette`` answers and those it lacks, sending none.

    Units already done in ``out`` are skipped and kept explanations reused, as a rerun would.
    ``llm_simulator``: with ``score``, the paper's LLM simulator (``--simulator one``); the embedding
    simulator sends no LLM request, so it is not run here (it runs in the ``--replay``)."""
    client = CollectingClient(ClientConfig.from_env(base_url=REPLAY_URL, model=llm_model, max_retries=0))
    work = label_work.make_work(
        model,
        layer,
        method,
        score=score and llm_simulator,
        target=target,
        n=n,
        client_for=lambda _url: client,
        api=api,
        source=source,
        in_flight=1,  # one at a time: a held-back request does not stop the others (pipeline._each_asked)
        kept=kept_explanations(out),
    )
    done = done_units(out)
    pending: list[BatchRequest] = []
    ran = 0
    with use_cassette(cassette, record=False):
        for unit in units:
            if unit in done:
                continue
            before = set(client.pending)
            try:
                record = work(unit, REPLAY_URL)
                ran += record.status != UnitStatus.DEAD
            except RequestDeferred:
                ran += 1
            new = [client.pending[k] for k in sorted(set(client.pending) - before)]
            pending += new
    return Collected(tuple(pending), frozenset(client.recorded), ran)


def estimate(requests: Sequence[BatchRequest], price_per_1k: float | None) -> DryRun:
    """Calls, tokens and price of ``requests`` (`vse.llm.pricing.dry_run`), nothing sent."""
    return dry_run(((r.endpoint, json.loads(r.body)) for r in requests), price_per_1k=price_per_1k)


def write_batch(collected: Collected, path: str | Path, price_per_1k: float | None) -> tuple[Path | None, DryRun]:
    """Write the pending requests as a Batch API input file (none: nothing written) and price them."""
    est = estimate(collected.pending, price_per_1k)
    if not collected.pending:
        return None, est
    return write_batch_input(collected.pending, path), est


def batch_summary(collected: Collected, path: Path | None, est: DryRun, cassette: Path, model: str) -> list[str]:
    """What ``--batch`` says: the file, its requests and their price one by one and through the Batch API."""
    held = len(collected.recorded)
    if path is None:
        return [
            f"nothing to send: the cassette {cassette} answers all {held} requests of the {collected.units} "
            "unit(s) left; finish the run offline with the same command and --replay"
        ]
    lines = [
        f"wrote {len(collected.pending)} requests of {collected.units} unit(s) to {path} "
        f"(model {model!r} in every body; {held} more already in {cassette})",
        f"{est.calls} calls, ~{est.prompt_tokens} prompt tokens"
        f" + at most {est.max_completion_tokens} completion tokens",
    ]
    if est.price is not None:
        lines.append(
            f"at {est.price_per_1k} per 1k tokens: {est.price:.2f} sent one by one, "
            f"{est.batch_price:.2f} through the Batch API ({BATCH_PRICE_FACTOR:.0%} of the price)"
        )
    lines.append(
        "next: upload it as a batch (endpoint "
        + ", ".join(sorted({f"/v1/{r.endpoint}" for r in collected.pending}))
        + "), download its output, then the same command with --batch-import OUTPUT.jsonl"
    )
    return lines


def import_batch(collected: Collected, outputs: Sequence[str | Path], cassette: str | Path) -> ImportReport:
    """Append the replies of ``outputs`` to the run's pending requests to ``cassette`` (`import_replies`).

    Two mistakes raise ValueError (nothing is written then): output files with no line at all, and files
    none of whose lines is this run's (another run's output, or this one's with other options), which would
    otherwise end in a report that imported nothing and a zero exit."""
    pending = {r.custom_id: r for r in collected.pending}
    report = import_replies(pending, outputs, cassette, recorded=collected.recorded)
    names = ", ".join(str(p) for p in outputs)
    if not (report.imported or report.already or report.errors or report.unknown):
        raise ValueError(f"{names}: no Batch API output line (an empty file?): give the batch's downloaded output")
    if report.unknown and not (report.imported or report.already or report.errors):
        raise ValueError(
            f"{names}: none of its {len(report.unknown)} line(s) answers a request of this command: the output of "
            "another run, or of --batch with other options (units, --n, --method, --model, --score, --api)?"
        )
    return report


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def import_summary(report: ImportReport) -> list[str]:
    """What ``--batch-import`` says: one line for what was imported, one for errors, missing and unknown lines."""
    lines = [
        f"imported {len(report.imported)} replies into {report.cassette} ({len(report.already)} already there, skipped)"
    ]
    if report.errors:
        why = "; ".join(f"{cid}: {reason}" for cid, reason in report.errors[:SHOWN_IDS])
        more = f"; and {len(report.errors) - SHOWN_IDS} more" if len(report.errors) > SHOWN_IDS else ""
        lines.append(f"errors: {len(report.errors)} line(s) not imported ({why}{more})")
    if report.missing:
        lines.append(f"missing: {len(report.missing)} request(s) have no output line ({_ids(report.missing)})")
    if report.unknown:
        lines.append(
            f"not this run's: {len(report.unknown)} output line(s) answer no request of this command "
            f"({_ids(report.unknown)}): was --batch run with other options?"
        )
    if report.errors or report.missing:
        lines.append("the same command with --batch writes what is still missing; --replay runs what is there")
    else:
        lines.append("next: the same command with --batch (anything left to send?), or with --replay to finish")
    return lines
