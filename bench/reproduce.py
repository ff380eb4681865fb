"""Where `vse reproduce` spends its time: each experiment, the report, and (with --profile) the functions.

Replays every experiment (or those named) into a scratch results folder, one after the other in this
process, and prints a table of wall and CPU seconds per step. The committed results/ are not touched;
with --compare the scratch tree is compared byte for byte with results/ (a speed-up must not change a
byte). The whole command, as a user runs it, is timed from outside with /usr/bin/time or hyperfine:

    .venv/bin/python bench/reproduce.py [--experiment NAME ...] [--compare] [--profile FILE]
    /usr/bin/time -v .venv/bin/vse reproduce   # in a scratch copy of the clone

The machine this ran on is shared: quote CPU seconds (user + sys) beside wall seconds, and compare
before and after in the same session (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import cProfile
import filecmp
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _differences(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two trees (missing on either side, or other bytes)."""
    out = []
    names = {p.relative_to(a) for p in a.rglob("*") if p.is_file()} | {
        p.relative_to(b) for p in b.rglob("*") if p.is_file()
    }
    for rel in sorted(names):
        pa, pb = a / rel, b / rel
        if not (pa.is_file() and pb.is_file() and filecmp.cmp(pa, pb, shallow=False)):
            out.append(str(rel))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", action="append", default=[], help="only this experiment (repeatable)")
    parser.add_argument("--compare", action="store_true", help="compare the scratch results with results/")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile dump here, print the top 25")
    args = parser.parse_args(argv)

    t0 = _clock()
    from vse.outputs.report import report_files
    from vse.studies import registry
    from vse.studies.runner import Paths, current_paths, run_experiment

    imported = _clock()
    rows = [("import", imported[0] - t0[0], imported[1] - t0[1])]
    # By default the experiments with a committed results folder: one registered before its cassettes
    # are recorded has nothing to replay yet.
    names = args.experiment or [n for n in registry.EXPERIMENTS if (ROOT / "results" / n).is_dir()]
    skipped = [n for n in registry.EXPERIMENTS if n not in names]
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="vse-bench-") as tmp:
        paths = Paths(current_paths().cassettes, Path(tmp) / "results")
        if profiler:
            profiler.enable()
        for name in names:
            start = _clock()
            run_experiment(registry.get_experiment(name), paths=paths, progress=False)
            end = _clock()
            rows.append((name, end[0] - start[0], end[1] - start[1]))
        start = _clock()
        report = report_files(paths.results)
        for rel, data in report.items():
            (paths.results / rel).parent.mkdir(parents=True, exist_ok=True)
            (paths.results / rel).write_bytes(data)
        end = _clock()
        rows.append((f"report ({len(report)} files)", end[0] - start[0], end[1] - start[1]))
        if profiler:
            profiler.disable()
        different = _differences(ROOT / "results", paths.results) if args.compare else []
        if args.experiment and args.compare:  # only the replayed experiments' folders can be compared
            different = [d for d in different if d.split("/")[0] in args.experiment]
    total_wall, total_cpu = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print("| step | wall s | CPU s |\n|---|---|---|")
    for name, wall, cpu in sorted(rows, key=lambda r: -r[2]):
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    print(f"| **total** | **{total_wall:.2f}** | **{total_cpu:.2f}** |")
    if skipped:
        print(f"not replayed: {', '.join(skipped)}")
    if args.compare:
        print("results/: byte-identical" if not different else f"results/: {len(different)} files differ:")
        for rel in different[:20]:
            print(f"  {rel}")
    if profiler:
        profiler.dump_stats(args.profile)
        pstats.Stats(str(args.profile), stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
