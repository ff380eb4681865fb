"""vse.studies.layer_labelling: concurrency, resume, failures, shards, and a kill -9 of a real labelling run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from vse.core.vocab import UnitStatus
from vse.method.label_record import LabelRecord, UnitUsage
from vse.studies.label_work import dead_reason
from vse.studies.layer_labelling import (
    OutputBusy,
    done_units,
    label_units,
    parse_shard,
    per_thread,
    read_records,
    shard_units,
)

REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def test_labels_every_unit_once_and_resumes(tmp_path):
    out = tmp_path / "l.jsonl"
    s = label_units(
        range(10),
        lambda u, url: LabelRecord(u, usage=UnitUsage(3, 1)),
        out=out,
        workers=3,
        base_urls=["a"],
        progress=False,
    )
    assert (s.done, s.skipped, s.failed, s.prompt_tokens, s.completion_tokens) == (10, 0, 0, 30, 10)
    assert sorted(r["unit"] for r in _lines(out)) == list(range(10))
    calls = []
    s = label_units(
        range(12), lambda u, url: calls.append(u) or LabelRecord(u), out=out, base_urls=["a"], progress=False
    )
    assert (s.done, s.skipped) == (2, 10) and sorted(calls) == [10, 11]
    assert Counter(r["unit"] for r in _lines(out)) == Counter(range(12))


def test_failures_are_recorded_then_retried(tmp_path):
    out = tmp_path / "l.jsonl"

    def flaky(u, url):
        if u % 3 == 0:
            raise RuntimeError(f"server said no to {u}")
        return LabelRecord(u)

    s = label_units(range(6), flaky, out=out, workers=2, base_urls=["a"], progress=False)
    assert (s.done, s.failed) == (4, 2)
    failed = {r["unit"]: r for r in _lines(out) if r.get("status") == "failed"}
    assert set(failed) == {0, 3} and "server said no to 3" in failed[3]["error"]
    assert done_units(out) == {1, 2, 4, 5}
    s = label_units(range(6), lambda u, url: LabelRecord(u, method="m"), out=out, base_urls=["a"], progress=False)
    assert (s.done, s.skipped, s.failed) == (2, 4, 0)
    latest = read_records(out)
    assert latest[0] == LabelRecord(0, method="m") and latest[3] == LabelRecord(3, method="m")


def test_dead_units_are_done_and_counted_explained_ones_are_retried(tmp_path):
    out = tmp_path / "l.jsonl"

    def work(u, url):
        if u == 0:
            return LabelRecord(u, status=UnitStatus.DEAD, dead="no non-zero value on the probe set")
        if u == 1:
            return LabelRecord(u, status=UnitStatus.EXPLAINED, explanations=(), usage=UnitUsage(5))
        return LabelRecord(u, usage=UnitUsage(3))

    s = label_units(range(3), work, out=out, base_urls=["a"], progress=False)
    assert (s.done, s.dead, s.failed, s.prompt_tokens) == (1, 1, 1, 8)  # the explained unit's tokens count
    assert "dead 1 (no LLM call)" in str(s)
    assert done_units(out) == {0, 2}
    s = label_units(range(3), lambda u, url: LabelRecord(u), out=out, base_urls=["a"], progress=False)
    assert (s.done, s.skipped, s.dead, s.failed) == (1, 2, 0, 0)


def test_dead_reason_reads_the_scaled_values():
    import numpy as np

    from vse.core.target import Target

    def target(raw, kind="caption-activation"):
        return Target("m/l/0", kind, tuple("abc"), np.asarray(raw, dtype=float))

    assert dead_reason(target([0, 0, 0])) == "no non-zero value on the probe set"
    assert dead_reason(target([-1, -2, 0])) == "no positive value on the probe set"  # positive polarity: all 0
    assert dead_reason(target([2, 2, 2], "weight-label")) == "constant values in its weight-label weights"
    assert dead_reason(target([0, 0, 1e-3])) is None


def test_a_record_without_its_unit_is_a_failure(tmp_path):
    s = label_units([1], lambda u, url: LabelRecord(2), out=tmp_path / "l.jsonl", base_urls=["a"], progress=False)
    assert s.failed == 1 and s.done == 0


def test_partial_last_line_is_ignored_and_truncated(tmp_path):
    out = tmp_path / "l.jsonl"
    out.write_bytes(b'{"unit": 0}\n{"unit": 1, "text": "half a rec')
    assert done_units(out) == {0}
    label_units(range(3), lambda u, url: LabelRecord(u), out=out, base_urls=["a"], progress=False)
    assert [r["unit"] for r in _lines(out)] == [0, 1, 2]


def test_workers_run_concurrently_and_share_base_urls(tmp_path):
    seen, lock, active, peak = Counter(), threading.Lock(), [0], [0]

    def work(u, url):
        with lock:
            seen[url] += 1
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return LabelRecord(u)

    t = time.perf_counter()
    s = label_units(range(16), work, out=tmp_path / "l.jsonl", workers=4, base_urls=["a", "b"], progress=False)
    assert s.done == 16 and peak[0] == 4
    assert time.perf_counter() - t < 16 * 0.05 * 0.6  # serial would take 0.8 s
    assert set(seen) == {"a", "b"} and sum(seen.values()) == 16


def test_shards_partition_units():
    units = list(range(100, 110))
    parts = [shard_units(units, (i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == units and parts[1] == [101, 104, 107]
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_a_second_writer_on_the_same_file_is_refused(tmp_path):
    out = tmp_path / "l.jsonl"
    started, release = threading.Event(), threading.Event()

    def slow(u, url):
        started.set()
        release.wait(5)
        return LabelRecord(u)

    t = threading.Thread(target=label_units, args=([0], slow), kwargs=dict(out=out, base_urls=["a"], progress=False))
    t.start()
    try:
        assert started.wait(5)
        with pytest.raises(OutputBusy, match="another labelling run"):
            label_units([1], lambda u, url: LabelRecord(u), out=out, base_urls=["a"], progress=False)
    finally:
        release.set()
        t.join()


def test_per_thread_gives_each_thread_its_own_object():
    get = per_thread(lambda url: object())
    mine = get("x")
    assert get("x") is mine and get("y") is not mine
    other = []
    t = threading.Thread(target=lambda: other.append(get("x")))
    t.start()
    t.join()
    assert other[0] is not mine


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_kill_9_mid_run_then_resume(tmp_path):
    """A real run: a labelling subprocess calling vse's LLMClient against the stub server, killed with SIGKILL."""
    stub = subprocess.Popen(
        [sys.executable, "-m", "bench.stub_server", "--delay", "0.05", "--max-requests", "2000", "--lifetime", "120"],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = stub.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        out = tmp_path / "layer.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "bench.throughput",
            "label",
            "--base-url",
            url,
            "--units",
            "80",
            "--workers",
            "4",
            "--calls",
            "2",
            "--out",
            str(out),
        ]
        run = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 12):
            assert run.poll() is None, run.stderr.read().decode()
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)
        assert run.wait(10) == -signal.SIGKILL
        before = out.read_bytes()
        n_before = before.count(b"\n")
        assert 12 <= n_before < 80, "the kill must land mid-run"
        assert before.endswith(b"\n"), "a killed run left a half-written line"

        done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])  # the summary printed by `label`
        assert summary["skipped"] == n_before and summary["done"] == 80 - n_before and summary["failed"] == 0
        records = _lines(out)
        assert Counter(r["unit"] for r in records) == Counter(range(80))  # each unit exactly once
        assert all(r["usage"]["calls"] == 2 and r["usage"]["prompt_tokens"] > 0 for r in records)
    finally:
        stub.kill()
        stub.wait()
