"""The llama-server binary: built once from the pinned llama.cpp source, cached, or named by the user.

The source is the one the llama-cpp-python 0.3.36 sdist carries (llama.cpp commit 0c1e570); the
build is cached under the model cache directory keyed by the source's and the flags' hashes
(`build_llama_server`), or the binary is taken from ``--llama-server PATH`` / ``$VSE_LLAMA_SERVER``
(`find_llama_server`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from vse.llm.errors import ServerStartError
from vse.llm.model_files import default_cache_dir

log = logging.getLogger(__name__)

_CHUNK = 4 << 20

#: The source: llama-cpp-python 0.3.36's sdist carries llama.cpp (commit 0c1e570, tools/server
#: included) under vendor/llama.cpp. Pinned by its sha256; the URL is looked up on PyPI.
SDIST_PACKAGE = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_FILE = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SDIST_SUBDIR = "llama_cpp_python-0.3.36/vendor/llama.cpp"
LLAMA_CPP_COMMIT = "0c1e570"
#: The cmake configuration. GGML_NATIVE=OFF: a portable binary (AVX2 baseline), not one tuned to
#: the build machine. BUILD_SHARED_LIBS=OFF: llama and ggml linked in, so the cached binary needs
#: no libllama.so beside it (only the system's C/C++ and OpenMP runtimes). The commit is passed
#: explicitly so the binary reports it even where git cannot read the sdist's metadata.
BUILD_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_OPENSSL=OFF",
    f"-DLLAMA_BUILD_COMMIT={LLAMA_CPP_COMMIT}",
    "-DLLAMA_BUILD_NUMBER=0",
)
#: Environment variable naming a llama-server binary to use instead of building one.
LLAMA_SERVER_ENV = "VSE_LLAMA_SERVER"
_PIP_SIMPLE = "https://pypi.org/simple/{package}/"
_DEBIAN_TOOLS = "sudo apt-get install -y cmake build-essential"


class ServerBuildError(ServerStartError):
    """llama-server could not be built (missing tools, a failed download or compile)."""


@dataclass(frozen=True)
class LlamaServerBinary:
    """A llama-server executable and what is known of how it was made.

    commit: llama.cpp's commit as the binary reports it (None if it does not say).
    flags: the cmake flags, for a binary vse built; None for one the user supplied.
    """

    path: Path
    commit: str | None
    flags: tuple[str, ...] | None

    @property
    def built_by_vse(self) -> bool:
        return self.flags is not None


def build_key() -> str:
    """The cache folder name of a build: the source's hash and the flags' hash."""
    flags = hashlib.sha256("\n".join(BUILD_FLAGS).encode()).hexdigest()
    return f"{SDIST_SHA256[:12]}-{flags[:12]}"


def server_build_dir(cache_dir: Path | None = None) -> Path:
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "llama-server" / build_key()


def missing_build_tools() -> list[str]:
    """What building needs and PATH lacks: cmake, make, a C and a C++ compiler."""
    missing = []
    if not shutil.which("cmake"):
        missing.append("cmake")
    if not (shutil.which("make") or shutil.which("gmake")):
        missing.append("make")
    if not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        missing.append("a C compiler (cc/gcc/clang)")
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler (c++/g++/clang++)")
    return missing


def _sdist_url() -> str:
    """The sdist's download URL, from PyPI's JSON simple index (what pip reads)."""
    index = _PIP_SIMPLE.format(package=SDIST_PACKAGE)
    try:
        resp = requests.get(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60)
        resp.raise_for_status()
        files = resp.json()["files"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise ServerBuildError(f"cannot read PyPI's index {index} to find {SDIST_FILE}: {exc}") from exc
    for entry in files:
        if entry.get("filename") == SDIST_FILE:
            if entry.get("hashes", {}).get("sha256") != SDIST_SHA256:
                raise ServerBuildError(
                    f"PyPI lists {SDIST_FILE} with sha256 {entry.get('hashes')}, not the pinned {SDIST_SHA256}"
                )
            return str(entry["url"])
    raise ServerBuildError(f"PyPI's index {index} has no {SDIST_FILE}")


def _download_sdist(dest: Path) -> Path:
    """Download and verify the pinned sdist into ``dest`` (reused when already there and intact)."""
    target = dest / SDIST_FILE
    if target.is_file() and _sha256_file(target) == SDIST_SHA256:
        return target
    url = _sdist_url()
    h = hashlib.sha256()
    tmp = target.with_name(target.name + ".partial")
    try:
        with requests.get(url, stream=True, timeout=60) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("Content-Length") or 0) or None
            with (
                tmp.open("wb") as out,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=f"download {SDIST_FILE}",
                    file=sys.stderr,
                    mininterval=1.0,
                ) as bar,
            ):
                for chunk in resp.iter_content(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        tmp.unlink(missing_ok=True)
        raise ServerBuildError(f"cannot download {url}: {exc}") from exc
    if h.hexdigest() != SDIST_SHA256:
        tmp.unlink(missing_ok=True)
        raise ServerBuildError(f"{SDIST_FILE} from {url} has sha256 {h.hexdigest()}, not the pinned {SDIST_SHA256}")
    os.replace(tmp, target)
    return target


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _unpack_source(sdist: Path, dest: Path) -> Path:
    """Extract vendor/llama.cpp from the sdist into ``dest``; returns the source folder."""
    prefix = SDIST_SUBDIR + "/"
    with tarfile.open(sdist, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) or m.name == SDIST_SUBDIR]
        tar.extractall(dest, members=members, filter="data")
    source = dest / SDIST_SUBDIR
    if not (source / "CMakeLists.txt").is_file():
        raise ServerBuildError(f"{sdist.name} has no {SDIST_SUBDIR}/CMakeLists.txt")
    return source


_PERCENT = re.compile(rb"^\[\s*(\d+)%\]")


def _run_logged(cmd: list[str], log: Path, desc: str, cwd: Path, *, bar: bool = True) -> None:
    """Run a build step, its output appended to ``log``; cmake's ``[ NN%]`` lines drive a bar
    (``bar=False``: one line on stderr instead, for a step that prints no percentages)."""
    if not bar:
        print(f"{desc} ...", file=sys.stderr, flush=True)
    with (
        log.open("ab") as logf,
        tqdm(total=100, desc=desc, unit="%", file=sys.stderr, mininterval=1.0, disable=not bar) as bar_,
    ):
        logf.write(b"$ " + " ".join(cmd).encode() + b"\n")
        logf.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            logf.write(line)
            m = _PERCENT.match(line)
            if m:
                bar_.update(max(0, int(m.group(1)) - bar_.n))
        code = proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise ServerBuildError(f"{desc} failed (exit {code}); log {log}:\n{tail}")


def build_llama_server(cache_dir: Path | None = None, *, jobs: int | None = None) -> LlamaServerBinary:
    """The cached llama-server built from the pinned source, building it first if needed.

    Lives in ``<cache dir>/llama-server/<source hash>-<flags hash>/`` (the binary and a
    ``build.json``). Built in a temporary folder beside it and renamed into place when done, under
    a file lock, so an interrupted build leaves nothing half-made and two processes never build at
    once. 10-20 minutes on 2 cores (only the ``llama-server`` target is compiled). The compiler's
    output goes to ``<cache dir>/llama-server/<key>.build.log``, kept when a build fails.
    """
    final = server_build_dir(cache_dir)
    found = _cached_build(final)
    if found is not None:
        return found
    missing = missing_build_tools()
    if missing:
        raise ServerBuildError(
            f"cannot build llama-server: {', '.join(missing)} not found on PATH; on Debian/Ubuntu: "
            f"{_DEBIAN_TOOLS} (or point vse at a llama-server you have: --llama-server PATH or "
            f"{LLAMA_SERVER_ENV}=PATH)"
        )
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # another process may be building the same: wait for it
        found = _cached_build(final)
        if found is not None:
            return found
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
        try:
            t0 = time.monotonic()
            sdist = _download_sdist(root)
            source = _unpack_source(sdist, work)
            log_file = root / f"{final.name}.build.log"
            log_file.unlink(missing_ok=True)
            build = work / "build"
            _run_logged(
                ["cmake", "-S", str(source), "-B", str(build), *BUILD_FLAGS],
                log_file,
                "configure llama.cpp",
                work,
                bar=False,
            )
            n = jobs or os.cpu_count() or 2
            _run_logged(
                ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(n)],
                log_file,
                "build llama-server",
                work,
            )
            binary = build / "bin" / "llama-server"
            if not binary.is_file():
                raise ServerBuildError(f"the build finished without {binary}; log {log_file}")
            staged = work / "out"
            # The whole bin/ folder: with BUILD_SHARED_LIBS=OFF that is the binary alone, but a
            # library built shared anyway sits beside it, where the binary's rpath ($ORIGIN) looks.
            shutil.copytree(build / "bin", staged, symlinks=True)
            info = {
                "source": SDIST_FILE,
                "source_sha256": SDIST_SHA256,
                "commit": LLAMA_CPP_COMMIT,
                "flags": list(BUILD_FLAGS),
                "build_seconds": round(time.monotonic() - t0, 1),
            }
            (staged / "build.json").write_text(json.dumps(info, indent=1) + "\n")
            os.replace(staged, final)
            sdist.unlink(missing_ok=True)  # 76 MB, needed again only for another set of flags
            log_file.unlink(missing_ok=True)
            log.info("built llama-server in %.0f s: %s", info["build_seconds"], final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    found = _cached_build(final)
    assert found is not None
    return found


def _cached_build(folder: Path) -> LlamaServerBinary | None:
    binary = folder / "llama-server"
    try:
        info = json.loads((folder / "build.json").read_text())
    except (OSError, ValueError):
        return None
    if not os.access(binary, os.X_OK) or info.get("source_sha256") != SDIST_SHA256:
        return None
    return LlamaServerBinary(binary, str(info.get("commit")), tuple(info.get("flags") or BUILD_FLAGS))


#: ``--version`` says "version: 0.5.0-dev (build 1, commit 0c1e570)"; older builds "version: 4589 (0c1e570)".
_VERSION = re.compile(r"version:.*\bcommit ([0-9a-f]{7,40})\)|version:\s*\d+\s*\(([0-9a-f]{7,40})\)")


def binary_commit(path: Path) -> str | None:
    """The llama.cpp commit a llama-server binary reports (``--version``), or None."""
    try:
        proc = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _VERSION.search(proc.stdout + proc.stderr)
    return (m.group(1) or m.group(2)) if m else None


def find_llama_server(
    path: Path | str | None = None, cache_dir: Path | None = None, *, build: bool = True
) -> LlamaServerBinary:
    """The llama-server to run: ``path`` (``--llama-server``), else ``$VSE_LLAMA_SERVER``, else vse's
    cached build (built now if ``build``; else a `ServerBuildError`)."""
    given, origin = (path, "--llama-server") if path else (os.environ.get(LLAMA_SERVER_ENV), LLAMA_SERVER_ENV)
    if given:
        binary = Path(given).expanduser()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise ServerStartError(f"{origin} names {binary}, which is not an executable file")
        return LlamaServerBinary(binary, binary_commit(binary), None)
    if not build:
        found = _cached_build(server_build_dir(cache_dir))
        if found is None:
            raise ServerBuildError(
                f"llama-server is not built yet (vse llm build-server builds it into {server_build_dir(cache_dir)})"
            )
        return found
    return build_llama_server(cache_dir)
