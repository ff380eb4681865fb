"""The LLMs of a recorded experiment: one cassette per (experiment, stem), an `LLM` on each."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vse.llm.cassettes import CASSETTE_SUFFIX, ReplaySession, save_now, use_cassette
from vse.llm.client import ClientConfig, LLMClient, Usage
from vse.method.llm import LLM
from vse.paths import data_root, results_root

# The data's root, not the package's parent: after `pip install .` that is site-packages (vse.paths).
REPO = data_root()


@dataclass(frozen=True)
class Paths:
    cassettes: Path = REPO / "cassettes"
    results: Path = field(default_factory=results_root)  # ./results, never inside site-packages


@dataclass
class CassetteLLMs:
    """Opens one cassette per (experiment, stem) (``cassettes/<name>/<stem>.json.gz``) and gives an `LLM`
    on it, recording or replaying; sums the calls and the usage over every cassette opened."""

    name: str
    api: str
    record: bool
    config: ClientConfig
    paths: Paths
    in_flight: int | None = 1  # one-item predictions sent at once (None: what the server takes, LLM.from_client)
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    stems: list[str] = field(default_factory=list)  # the cassettes opened, in order (for tracing)

    @property
    def folder(self) -> Path:
        """The experiment's cassette folder (a study keeps its other recorded state there too)."""
        return self.paths.cassettes / self.name

    def path(self, stem: str) -> Path:
        return self.folder / f"{stem}{CASSETTE_SUFFIX}"

    @contextlib.contextmanager
    def __call__(self, stem: str) -> Iterator[LLM]:
        path = self.path(stem)
        if stem not in self.stems:
            self.stems.append(stem)
        if not self.record and not path.exists():
            raise FileNotFoundError(
                f"cassette {path} is missing: record it with `make record` (vse reproduce --record)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with use_cassette(path, record=self.record) as cassette:
            # A replay sends nothing: its requests go straight to the cassette, not through requests' stack.
            client = LLMClient(self.config, session=None if self.record else ReplaySession(cassette))
            llm = LLM.from_client(client, self.api, warm_slots=self.record)
            if self.in_flight is not None:
                llm.in_flight = self.in_flight
            # While recording, write the cassette after every pass: an interrupted recording
            # then resumes from the last finished pass instead of losing the neuron.
            llm.checkpoint = (lambda: save_now(cassette)) if self.record else None
            try:
                yield llm
            finally:
                self.calls += client.calls
                self.usage = self.usage + client.usage
