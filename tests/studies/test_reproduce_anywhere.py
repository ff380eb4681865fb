"""`vse reproduce` writes the committed bytes under every numerical environment one machine can show.

Each environment replays every experiment in a subprocess, in a folder of its own, and must find
results/ byte for byte. The environments change what a BLAS or SIMD-dependent sum would change:
OpenBLAS's kernel (Prescott, the generic one, safe on any x86 CPU; no other kernel is forced, since
an older OpenBLAS crashes on some processors with a kernel they lack), its thread count and cache
size, and NumPy's SIMD level (every dispatched feature this CPU has, taken away). The environment
as given replays with NumPy's BLAS functions refusing calls from vse (replay_without_blas.py),
which no environment variable on one machine can stand in for. The four replays run at once
(about 3 minutes of CPU in all on 2 cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vse.outputs.compare import compare_trees, read_tree

REPO = Path(__file__).resolve().parents[2]
NO_BLAS = Path(__file__).with_name("replay_without_blas.py")


def _dispatched_features() -> str:
    """NumPy's dispatched SIMD targets this CPU supports (disabling an unsupported one is an error)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))


ENVIRONMENTS = {
    "as given, BLAS refused": ({}, [], True),
    "OPENBLAS_CORETYPE=Prescott": ({"OPENBLAS_CORETYPE": "Prescott"}, [], False),
    "one thread, small L2, no CORETYPE": (
        {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_L2_SIZE": "131072"},
        ["OPENBLAS_CORETYPE"],
        False,
    ),
    "NumPy without its wider SIMD": ({"NPY_DISABLE_CPU_FEATURES": _dispatched_features()}, [], False),
}


@pytest.fixture(scope="module")
def replays(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    procs = {}
    for name, (extra, unset, no_blas) in ENVIRONMENTS.items():
        cwd = tmp_path_factory.mktemp("replay")
        env = {k: v for k, v in os.environ.items() if k not in unset}
        env |= extra | {"PYTHONPATH": str(REPO)}
        code = [str(NO_BLAS)] if no_blas else ["-c", "from vse.cli.main import main; main(['reproduce'])"]
        procs[name] = (
            cwd,
            subprocess.Popen(
                [sys.executable, *code], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            ),
        )
    out = {}
    for name, (cwd, proc) in procs.items():
        _, err = proc.communicate(timeout=1200)
        out[name] = (cwd, subprocess.CompletedProcess(proc.args, proc.returncode, "", err))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("environment", list(ENVIRONMENTS))
def test_every_experiment_replays_to_the_committed_bytes(replays, environment):
    cwd, proc = replays[environment]
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = read_tree(cwd / "results")
    expected = read_tree(REPO / "results")
    assert got and set(got) == set(expected), sorted(set(got) ^ set(expected))[:10]
    if got != expected:
        pytest.fail(f"under {environment}: {compare_trees(expected, got).summary()}")
