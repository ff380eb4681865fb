"""Run a recorded experiment: explain, score, write results and tables.

Every LLM call of one (experiment, neuron) goes through that neuron's cassette under
``cassettes/<experiment>/``. Replay (the default) needs no server and no key; a request that is
not in the cassette is an error naming the cassette. Recording appends what is missing and saves
after every simulation pass, so an interrupted recording resumes where it stopped. Results are
JSONL, one `ScoreRecord` per (neuron, method, explanation, target); tables are derived from them.
Nothing printed or written depends on time or machine, so a replay gives the same bytes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from vse.atomic import write_atomic, write_set
from vse.llm.cassettes import CASSETTE_SUFFIX
from vse.llm.client import ClientConfig
from vse.outputs.compare import REL_TOL, Comparison, compare_trees, read_tree
from vse.outputs.report import report_files
from vse.studies import registry
from vse.studies.cassette_llms import CassetteLLMs, Paths
from vse.studies.kind import StudyKind

REPLAY_URL = "http://replay.invalid/v1"
_PATHS = Paths()  # where `make reproduce` reads and writes, fixed at import (tests swap it)


def current_paths() -> Paths:
    """Where replays read cassettes and write results unless told otherwise."""
    return _PATHS


def run_experiment(
    exp: StudyKind,
    *,
    record: bool = False,
    client_config: ClientConfig | None = None,
    paths: Paths | None = None,
    progress: bool = True,
    in_flight: int = 1,
) -> str:
    """Run (replay or record) `exp`; write results/<name>/; return its table. in_flight: one-item
    predictions sent at once while recording (results and cassettes do not depend on it)."""
    paths = paths or _PATHS
    config = client_config or ClientConfig(base_url=REPLAY_URL, model="local", max_retries=0 if not record else 5)
    llms = CassetteLLMs(exp.name, exp.score.api, record, config, paths, in_flight=in_flight if record else 1)
    previous = signal.getsignal(signal.SIGTERM)
    if record:
        # `kill` / a CI timeout sends SIGTERM: turn it into SystemExit so the cassette is saved on the way out.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        result = exp.run(llms, progress=progress)
    finally:
        signal.signal(signal.SIGTERM, previous)
    files = result.files()
    table = result.table
    usage = (
        f"LLM usage: {llms.calls} calls, {llms.usage.prompt_tokens} prompt tokens, "
        f"{llms.usage.completion_tokens} completion tokens\n"
    )
    totals = {
        "calls": llms.calls,
        "prompt_tokens": llms.usage.prompt_tokens,
        "completion_tokens": llms.usage.completion_tokens,
    }
    cassettes = [f"cassettes/{exp.name}/{stem}{CASSETTE_SUFFIX}" for stem in llms.stems]
    files["config.json"] = (
        json.dumps(
            {"experiment": exp.to_json(), "units": result.units, "usage": totals, "cassettes": cassettes},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    usage += "\nEvery number above replays from: " + ", ".join(f"`{c}`" for c in cassettes) + "\n"
    files["table.md"] = f"# {exp.name}\n\n{table}\n{usage}{result.figure}"
    # One set: a reader never sees config.json from one run beside table.md from another.
    write_set(paths.results / exp.name, files)
    return table + "\n" + usage


def reproduce(
    names: Sequence[str] = (),
    *,
    record: bool = False,
    client_config: ClientConfig | None = None,
    paths: Paths | None = None,
    progress: bool = True,
    in_flight: int = 1,
    workers: int | None = None,
) -> Iterator[tuple[str, str]]:
    """Run every experiment in ``names`` (default: all), yielding (name, table) in that order as each
    finishes, then write the HTML report and its images, derived from every results folder.

    workers: processes that replay experiments side by side (default: `replay_workers`; a recording
    always runs one experiment at a time). Each experiment's files are the same whichever process
    writes them: nothing in a replay depends on another experiment, the process or the order.
    """
    paths = paths or _PATHS
    names = tuple(names or registry.EXPERIMENTS)
    n = 1 if record else replay_workers(len(names)) if workers is None else workers
    if n > 1:
        yield from _replay_side_by_side(names, paths, n)
    else:
        for name in names:
            exp = registry.get_experiment(name)
            yield (
                name,
                run_experiment(
                    exp,
                    record=record,
                    client_config=client_config,
                    paths=paths,
                    progress=progress,
                    in_flight=in_flight,
                ),
            )
    for rel, data in report_files(paths.results).items():
        write_atomic(paths.results / rel, data)


#: At most this many replay processes (each holds its experiment's cassettes, ~250 MB at most).
MAX_REPLAY_WORKERS = 4


def replay_workers(n_experiments: int) -> int:
    """Processes for a replay of ``n_experiments``: one per CPU this process may use, at most
    `MAX_REPLAY_WORKERS`; 1 where processes cannot be forked (a replay is CPU-bound Python: threads
    would not overlap)."""
    if not sys.platform.startswith("linux"):  # fork is Linux's default; spawn would re-import vse per process
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, n_experiments, MAX_REPLAY_WORKERS))


def _replay_side_by_side(names: Sequence[str], paths: Paths, workers: int) -> Iterator[tuple[str, str]]:
    """Replay ``names`` in ``workers`` forked processes, the largest cassette folders first (the
    longest replays: started first, they do not finish alone at the end); yield in ``names``' order.

    An experiment whose process fails is replayed again here, so its error is raised as a replay in
    one process raises it (vse's errors are not all picklable; the traceback stays whole).
    """
    by_size = sorted(names, key=lambda name: -_folder_bytes(paths.cassettes / name))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {name: pool.submit(_replay_or_none, name, paths) for name in by_size}
        for name in names:
            table = futures[name].result()
            if table is None:
                table = run_experiment(registry.get_experiment(name), paths=paths, progress=False)
            yield name, table


def _replay_or_none(name: str, paths: Paths) -> str | None:
    """`run_experiment` in a worker process; None when it failed (the parent replays it to raise)."""
    try:
        return run_experiment(registry.get_experiment(name), paths=paths, progress=False)
    except Exception:
        return None


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0


def check_replay(names: Sequence[str] = (), *, against: Path, rel_tol: float = REL_TOL) -> Comparison:
    """Replay ``names`` (default: all) into a scratch folder and compare every number with ``against``.

    Only the replayed experiments' folders are compared (and the report, when every experiment is
    replayed); ``against`` is left untouched.
    """
    with tempfile.TemporaryDirectory(prefix="vse-check-") as tmp:
        scratch = Path(tmp) / "results"
        for _ in reproduce(names, paths=Paths(_PATHS.cassettes, scratch), progress=False):
            pass
        got = read_tree(scratch)
    expected = read_tree(against)
    if names:
        keep = tuple(f"{n}/" for n in names)
        got = {k: v for k, v in got.items() if k.startswith(keep)}
        expected = {k: v for k, v in expected.items() if k.startswith(keep)}
    return compare_trees(expected, got, rel_tol)


def _exit_on_sigterm(signum, frame):  # pragma: no cover - exercised by hand
    sys.exit(128 + signum)


__all__ = ["CassetteLLMs", "Paths", "check_replay", "current_paths", "replay_workers", "reproduce", "run_experiment"]
