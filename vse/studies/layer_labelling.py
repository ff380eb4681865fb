"""Label many units of a layer: concurrent, resumable, shardable, one JSONL record per unit.

`label_units` runs ``work(unit, base_url) -> LabelRecord`` (`vse.method.label_record`) for every unit
not yet done, on a thread pool, and appends each finished record to ``out`` as it completes. It knows nothing about
LLMs or prompts: the caller's ``work`` does the calls (one `LLMClient` per thread, see
`per_thread`), so the same loop serves explain-only, explain+score, or anything else per unit.

Crash safety. Each record is one line written by a single ``os.write`` on a file opened with
``O_APPEND``, then ``fsync``-ed: the kernel appends the whole buffer at once, so ``kill -9``
loses at most the units in flight and never leaves half a record behind another. Should a
partial last line ever exist (a full disk, a power cut mid-write), resuming ignores it and
truncates it away before appending, so it can never glue onto the next record. One process
writes an ``out`` file at a time (an ``flock`` enforces it; give each shard its own file).

Resuming. A unit whose latest record has no ``"status"``, or ``"status": "dead"`` or ``"unscorable"``, is
done and skipped.
A failed unit (``work`` raised) is recorded as ``{"unit", "status": "failed", "error"}`` so the
failure is visible, and retried by the next run; `read_records` gives each unit's latest record.
A unit explained but not scored (``"status": "explained"``: its scoring failed) keeps its explanations
in its record: the next run scores those (`kept_explanations`) instead of paying for them again.
A dead unit (``"status": "dead"``: its values are constant, e.g. it never fires on the probe set) is
found before any LLM call, costs none, and does not fail the run (`UnitStatus`). An unscorable unit
(``"status": "unscorable"``: explained, but the scoring protocol has nothing to correlate, e.g. every item the
explainer did not see is 0) keeps its explanations and its reason in words, is final like a dead one, and does
not fail the run either; the summary names each one.

Stopping. An error of a type in ``stop_on`` (the CLI passes `LLMEndpointDown`: the circuit breaker
says the endpoint is gone) is not one unit's failure but the run's: nothing is recorded for the
unit, no further unit starts, the units in flight finish or fail fast, and `RunStopped` says how
many units are done. Every record written before stays; a rerun resumes from there.

Sharding. ``shard=(I, N)`` keeps the units at positions ``p`` with ``p % N == I`` of ``units``,
so N machines running the same command with I = 0..N-1 cover every unit exactly once.

The work of `vse label` on one unit and the whole run through this loop are in `vse.studies.label_work`.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vse.core.vocab import UnitStatus
from vse.errors import UserError
from vse.method.label_record import LabelRecord
from vse.method.records import ExplanationRecord

FAILED = UnitStatus.FAILED


class OutputBusy(UserError):
    """Another process is writing this labelling file (two runs on one ``--out``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"{path} is being written by another labelling run right now: wait for it to finish, "
            "or give this run its own --out (each shard its own file)"
        )


class RunStopped(Exception):
    """The run stopped early because of ``cause`` (an error in ``stop_on``); resumable.

    done: units of this run's list done in ``out`` (this run's and earlier ones'); total: units in
    this run's list; done_now: finished in this run; resume: the command that resumes (set by the CLI).
    """

    def __init__(
        self, cause: BaseException, *, done: int, total: int, done_now: int, out: str, resume: str | None = None
    ) -> None:
        self.cause = cause
        self.done = done
        self.total = total
        self.done_now = done_now
        self.out = out
        self.resume = resume
        super().__init__()

    def __str__(self) -> str:
        hint = getattr(self.cause, "hint", None)
        cause = f"{self.cause} ({hint})" if isinstance(hint, str) and hint else str(self.cause)
        text = (
            f"stopped: {cause}. {self.done} of {self.total} units are done in {self.out} ({self.done_now} in this run)"
        )
        return text + (f"; resume with: {self.resume}" if self.resume else "; rerun the same command to resume")


@dataclass(frozen=True)
class LabelSummary:
    """What one `label_units` call did.

    done: units finished in this run; skipped: units already done (or dead) in ``out`` before it;
    failed: units not finished in this run (``work`` raised, or scoring failed with the explanations
    kept): recorded, retried next time;
    dead: units found dead in this run (constant values: nothing explained, no LLM call; not a failure);
    unscorable: units explained in this run that the protocol cannot score (not a failure), and
    ``unscorable_units`` each one's (unit, reason in words);
    prompt_tokens, completion_tokens: summed from this run's records' ``usage``, 0 if absent;
    wall_s: seconds from start to end; out: the JSONL file.
    """

    done: int
    skipped: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    out: str
    dead: int = 0
    unscorable: int = 0
    unscorable_units: tuple[tuple[int, str], ...] = ()

    def __str__(self) -> str:
        rate = self.done / self.wall_s if self.wall_s > 0 else 0.0
        unscorable = f", unscorable {self.unscorable} (explained, not scored)" if self.unscorable else ""
        return (
            f"labelled {self.done} units ({rate:.2f}/s), dead {self.dead} (no LLM call){unscorable}, "
            f"skipped {self.skipped} already done, failed {self.failed}; "
            f"tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion; "
            f"{self.wall_s:.1f} s -> {self.out}"
        )

    def report(self) -> str:
        """The summary line, then one line per unscorable unit with its reason, and a last line when no unit of
        this run could be scored (every one dead or unscorable: the probe set is too small or too narrow)."""
        lines = [str(self)]
        lines += [f"unit {unit} is unscorable: {reason}" for unit, reason in self.unscorable_units]
        if self.unscorable and not self.done and not self.failed:
            lines.append(
                f"no unit of this run could be scored ({self.dead} dead, {self.unscorable} unscorable): the probe "
                "set is too small or too alike for this layer; give more, and more varied, images"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must be I/N with integers, e.g. 0/4: {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard I/N needs 0 <= I < N: {text!r}")
    return i, n


def shard_units(units: Sequence[int], shard: tuple[int, int] | None) -> list[int]:
    if shard is None:
        return list(units)
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard (I, N) needs 0 <= I < N: {shard}")
    return [u for p, u in enumerate(units) if p % n == i]


def _read_lines(path: Path) -> tuple[list[LabelRecord], int]:
    """The complete records in ``path`` and the byte length of its complete-line prefix.

    A line without its newline (only possible at the end) is not a complete record and is left out;
    a line that is not a `LabelRecord` is kept in the file and ignored here.
    """
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict):
                records.append(LabelRecord.from_json(data))
        except (ValueError, KeyError, TypeError):
            continue  # never written by label_units; kept in the file, ignored here
    return records, end


def read_records(path: str | Path) -> dict[int, LabelRecord]:
    """Each unit's latest record in a labelling JSONL (a success after a failure replaces it)."""
    latest: dict[int, LabelRecord] = {}
    for rec in _read_lines(Path(path))[0]:
        if not rec.finished and rec.unit in latest and latest[rec.unit].finished:
            continue  # a stale failure never hides a success
        latest[rec.unit] = rec
    return latest


def done_units(path: str | Path) -> set[int]:
    """Units finished or dead in ``out``: the ones a rerun skips."""
    return {u for u, rec in read_records(path).items() if rec.finished}


def kept_explanations(path: str | Path) -> dict[int, tuple[ExplanationRecord, ...]]:
    """The explanations kept for each unfinished unit of ``out`` (its latest ``explained`` record's), which
    a rerun scores instead of explaining the unit again. A later plain failure (the rerun's scoring
    crashed before writing) does not lose them: they stay until the unit is done."""
    kept: dict[int, tuple[ExplanationRecord, ...]] = {}
    for rec in _read_lines(Path(path))[0]:
        if rec.status == UnitStatus.EXPLAINED and rec.explanations is not None:
            kept[rec.unit] = rec.explanations
        elif rec.finished:
            kept.pop(rec.unit, None)
    return kept


class _Appender:
    """An exclusive, append-only JSONL writer: one ``os.write`` + ``fsync`` per record."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise OutputBusy(path) from None
        # Under the lock: drop a partial last line (never produced by a whole os.write) so the next
        # record starts on a line of its own.
        _, complete = _read_lines(path)
        if os.fstat(self.fd).st_size != complete:
            os.ftruncate(self.fd, complete)
        self.lock = threading.Lock()  # fsync ordering only; O_APPEND already makes writes whole

    def append(self, record: LabelRecord) -> None:
        line = (json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        n = os.write(self.fd, line)
        if n != len(line):  # a regular file only writes short when the disk is full
            raise OSError(f"short write ({n} of {len(line)} bytes): disk full?")
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)  # releases the flock


def per_thread(factory: Callable[[str], Any]) -> Callable[[str], Any]:
    """``get(base_url)`` returning this thread's own object for that URL, made once by ``factory``.

    For `LLMClient`: its running usage counters are not thread-safe, and a `requests.Session`
    should not be shared across threads, so each worker thread gets its own client.
    """
    local = threading.local()

    def get(base_url: str) -> Any:
        cache = local.__dict__.setdefault("cache", {})
        if base_url not in cache:
            cache[base_url] = factory(base_url)
        return cache[base_url]

    return get


def label_units(
    units: Sequence[int],
    work: Callable[[int, str], LabelRecord],
    *,
    out: str | Path,
    workers: int = 1,
    base_urls: Sequence[str],
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    stop_on: tuple[type[BaseException], ...] = (),
) -> LabelSummary:
    """Run ``work(unit, base_url)`` for every unit of this shard not done in ``out``; see the module doc.

    An error of a type in ``stop_on`` stops the run: `RunStopped`, with every finished record kept.

    Base URLs are handed out through a queue of ``workers`` slots filled round-robin
    (slot k -> ``base_urls[k % len(base_urls)]``): a worker takes a free slot, so each server
    gets a fixed share of the concurrency and a slow server holds only its own slots.
    """
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1: {workers}")
    if not base_urls:
        raise ValueError("at least one base URL is needed")
    out = Path(out)
    start = time.perf_counter()
    mine = shard_units(units, shard)
    if len(set(mine)) != len(mine):
        raise ValueError("units contain duplicates")
    writer = _Appender(out)
    try:
        done = done_units(out)
        todo = [u for u in mine if u not in done]
        skipped = len(mine) - len(todo)
        slots: queue.Queue[str] = queue.Queue()
        for k in range(workers):
            slots.put(base_urls[k % len(base_urls)])

        stop = threading.Event()
        causes: list[BaseException] = []

        def run_one(unit: int) -> LabelRecord | None:
            if stop.is_set():
                return None  # queued before the stop: not started, not recorded
            url = slots.get()
            try:
                try:
                    rec = work(unit, url)
                    if not isinstance(rec, LabelRecord) or rec.unit != unit:
                        raise ValueError(f"work({unit}) must return a LabelRecord of unit {unit}")
                    if rec.status == FAILED:
                        raise ValueError(f"work({unit}) returned a record with status 'failed'")
                except stop_on as exc:
                    # Not this unit's failure but the run's (the endpoint is gone): record nothing.
                    causes.append(exc)
                    stop.set()
                    return None
                # Any error in one unit's work (a failed call after the client's retries, an
                # unparseable reply, a bug) is recorded against that unit, not fatal to the layer.
                except Exception as exc:  # noqa: BLE001
                    rec = LabelRecord(unit, status=FAILED, error=f"{type(exc).__name__}: {exc}")
                writer.append(rec)
                return rec
            finally:
                slots.put(url)

        n_done = n_failed = n_dead = prompt = completion = 0
        unscorable: list[tuple[int, str]] = []
        bar = tqdm(total=len(todo), desc=f"label {out.name}", unit="unit", file=sys.stderr, disable=not progress)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vse-label")
        try:
            # Submit at most 2 x workers ahead, so an interrupt leaves little queued and memory stays flat.
            it = iter(todo)
            pending: set[Future] = set()
            while True:
                while len(pending) < 2 * workers and not stop.is_set():
                    unit = next(it, None)
                    if unit is None:
                        break
                    pending.add(pool.submit(run_one, unit))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    rec = fut.result()
                    if rec is None:
                        continue
                    if rec.status == UnitStatus.DEAD:
                        n_dead += 1
                    elif rec.status == UnitStatus.UNSCORABLE:
                        unscorable.append((rec.unit, rec.unscorable or "no reason recorded"))
                    elif not rec.finished:
                        n_failed += 1
                    else:
                        n_done += 1
                    if rec.usage is not None:  # an explained unit's explanations were paid for too
                        prompt += rec.usage.prompt_tokens
                        completion += rec.usage.completion_tokens
                    bar.update(1)
                    bar.set_postfix(failed=n_failed, refresh=False)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
    finally:
        writer.close()
    if causes:
        done_now = n_done + n_dead + len(unscorable)
        raise RunStopped(causes[0], done=skipped + done_now, total=len(mine), done_now=done_now, out=str(out))
    summary = LabelSummary(
        n_done,
        skipped,
        n_failed,
        prompt,
        completion,
        time.perf_counter() - start,
        str(out),
        dead=n_dead,
        unscorable=len(unscorable),
        unscorable_units=tuple(sorted(unscorable)),
    )
    if progress:
        print(summary.report(), file=sys.stderr)
    return summary
