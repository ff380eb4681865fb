"""A user's runs inside the clone write nothing git would show: cassettes of live calls go
under ./vse-runs/, the probe cache under .vse-cache/, labels under labels/, all ignored by .gitignore."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def test_the_default_user_cassette_is_not_among_the_committed_cassettes():
    from vse.cli import options

    assert options.DEFAULT_CASSETTES.parts[0] == "vse-runs"
    assert not options.DEFAULT_CASSETTES.is_absolute()
    ignored = git(
        REPO,
        "check-ignore",
        "--no-index",
        "vse-runs/cassettes/a__explain.json.gz",
        ".vse-cache/m.npz",
        "labels/m__l__weight-label.jsonl",
        "sub/vse-runs/cassettes/x.json.gz",
    ).split()
    assert len(ignored) == 4, ignored


def test_explain_and_label_inside_a_clone_leave_git_status_clean(tmp_path):
    clone = tmp_path / "clone"
    (clone / "cassettes" / "exp").mkdir(parents=True)
    shutil.copy(REPO / ".gitignore", clone / ".gitignore")
    (clone / "cassettes" / "exp" / "x.json.gz").write_bytes(b"committed")
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "init")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    stub = subprocess.Popen(
        [sys.executable, "-m", "bench.stub_server", "--delay", "0", "--lifetime", "60"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = stub.stdout.readline().strip()
        vse = [sys.executable, "-c", "from vse.cli.main import main; main()"]
        for args in (
            ["explain", "efficientnet_lite0/_conv_head/3", "--method", "weight-label", "--base-url", url],
            [
                "label",
                "efficientnet_lite0/_conv_head",
                "--method",
                "weight-label",
                "--units",
                "0:2",
                "--base-url",
                url,
                "--no-progress",
            ],
        ):
            done = subprocess.run(vse + args, cwd=clone, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
    finally:
        stub.kill()
        stub.wait()
    assert list((clone / "vse-runs" / "cassettes").glob("efficientnet_lite0___conv_head__3__explain-*.json.gz"))
    assert list((clone / "labels").glob("*.jsonl"))
    assert git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    assert sorted(p.name for p in (clone / "cassettes" / "exp").iterdir()) == ["x.json.gz"]
