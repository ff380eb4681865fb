"""One place where the CLI turns failures into one clear line and an exit status.

Every command runs under `VseGroup` (the top-level ``vse`` group's class), whose `invoke`
catches the project's error classes and prints ``vse: error: <message>`` on stderr:

- exit 2: bad input (`vse.errors.UserError`, any `ValueError`: an unknown experiment, layer or
  neuron id, a bad base URL, a malformed file the user named), like click's own usage errors;
- exit 1: the environment or the LLM (`vse.llm.errors.LLMError`: a refused connection, a
  cassette miss, a damaged cassette; `OSError`: a missing file, no permission, a full disk;
  an optional dependency that is not installed).

Anything else is a bug and keeps its traceback. ``vse --debug ...`` (or ``VSE_DEBUG=1``) re-raises
every error with its traceback, for bug reports.
"""

from __future__ import annotations

import os

import click

from vse.errors import UserError

DEBUG_KEY = "vse.debug"
EXIT_INPUT = 2
EXIT_ENVIRONMENT = 1


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[DEBUG_KEY] = bool(value) or os.environ.get("VSE_DEBUG", "") not in ("", "0")
    return value


#: The ``--debug`` option of the top-level group (not passed to the group's function).
debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
    help="Show the full traceback of an error (also VSE_DEBUG=1).",
)


def _one_line(text: str) -> str:
    # Several lines (a cassette miss says what and then how to fix it) become one.
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def classify(exc: BaseException) -> tuple[int, str] | None:
    """(exit status, message) for an error that is the user's or the environment's; None for a bug."""
    from vse.llm.errors import LLMError

    if isinstance(exc, UserError):
        return EXIT_INPUT, str(exc)
    if isinstance(exc, LLMError):
        return EXIT_ENVIRONMENT, str(exc)
    if isinstance(exc, ModuleNotFoundError):
        # The vision commands need the optional extras; the replay does not.
        return EXIT_ENVIRONMENT, (f"{exc} (the vision commands need the vision extras: pip install -e '.[vision]', "
                                  "or `make test` which installs them)")
    if isinstance(exc, ImportError):
        return EXIT_ENVIRONMENT, str(exc)
    if isinstance(exc, OSError):
        if exc.strerror and exc.filename is not None:
            return EXIT_ENVIRONMENT, f"{exc.strerror}: {exc.filename}"
        return EXIT_ENVIRONMENT, str(exc) or type(exc).__name__
    if isinstance(exc, (ValueError, IndexError)) and str(exc):
        return EXIT_INPUT, str(exc)
    try:
        import requests
    except ImportError:  # pragma: no cover - a core dependency
        return None
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

