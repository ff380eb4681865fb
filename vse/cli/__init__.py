"""The command line: one module per command group, thin over the library."""

from vse.cli.main import main

__all__ = ["main"]
