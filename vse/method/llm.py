"""`LLM`: the language model a run talks to, bundled with what the run needs around it.

A client (cassette-aware), the server's identity (for provenance), the run's prediction store,
how many one-item predictions go out at once, and, optionally, the cassette: live calls are
recorded there, and ``record=False`` replays it offline.

Which endpoint (``completions`` or ``chat``) a call uses is the LLM's: `ExplainConfig.api` and
`ScoreConfig.api` are kept because recorded ``config.json`` files name them, and
`on_llm_endpoint` sets them to the LLM's before any call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from vse.core.vocab import Api
from vse.llm.cassettes import use_cassette
from vse.llm.client import ClientConfig, LLMClient
from vse.llm.server import MODEL_FILE, MODEL_SHA256, describe_server, server_in_flight
from vse.llm.slots import SlotWarmer
from vse.method import defaults
from vse.method.explain import ExplainConfig
from vse.method.prediction_store import PredictionStore
from vse.method.records import Provenance, prompts_hash
from vse.method.score import ScoreConfig
from vse.method.simulators.embedding import ENCODER, EmbeddingStore


@dataclass
class LLM:
    """A client plus the server's identity, for provenance.

    client: the thin HTTP client (cassette-aware through `requests`); None for an LLM that only
        carries the embedding simulator's store (`embedding_only`), which calls no server.
    api: "completions" or "chat" (the endpoint explanations and simulations use).
    reported_model: the model id the server reports (or the configured name).
    llm_file_sha256, server, server_slots: set when the server is vse's local llama.cpp server.
    store: the run's prediction store (shared by every score made with this LLM).
    checkpoint: saves the cassette; the scoring loop calls it after every pass while recording.
    in_flight: one-item predictions sent at once (`vse.method.score.predict_items`); results do not
        depend on it. `from_client` sets it to what the server says it takes (vse's llama-server: two a
        slot, `vse.llm.server.IN_FLIGHT_PER_SLOT`), else to its slots when it reports them (a server
        started by an older vse), else 1; ``--in-flight`` sets it for a remote endpoint.
    """

    client: LLMClient | None
    api: Api = defaults.API
    reported_model: str = ""
    llm_file_sha256: str | None = None
    server: str | None = None
    #: the server's parallel slots when it reports them (vse's llama-server does), else None
    server_slots: int | None = None
    #: requests the server says it takes at once (vse's llama-server: a waiting one per slot), else None
    server_in_flight: int | None = None
    store: PredictionStore = field(default_factory=PredictionStore)
    checkpoint: Callable[[], None] | None = None  # called after every pass (recording saves there)
    in_flight: int = 1
    #: the embedding simulator's store, when it is used
    embeddings: EmbeddingStore | None = None

    @classmethod
    def embedding_only(cls, embeddings: EmbeddingStore, api: str = defaults.API) -> LLM:
        """An LLM for the embedding simulator alone: no server and no calls, so no client.

        Scoring with it needs ``ScoreConfig(mode=Mode.EMBEDDING)`` (the default); explaining needs
        a server (`open`). Provenance names the encoder as the model.
        """
        return cls(None, api, reported_model=ENCODER, embeddings=embeddings)

    @classmethod
    @contextlib.contextmanager
    def open_embeddings(cls, path: Path | str, *, record: bool = True, api: str = defaults.API) -> Iterator[LLM]:
        """`embedding_only` around the store at ``path`` (``*.embeddings.npz``) for a block: with
        ``record``, missing embeddings are computed and saved at the end; otherwise a text the store
        lacks is an error."""
        llm = cls.embedding_only(EmbeddingStore(Path(path), record=record), api)
        try:
            yield llm
        finally:
            llm.embeddings.save()

    @classmethod
    def from_client(cls, client: LLMClient, api: str = defaults.API, *, warm_slots: bool = False) -> LLM:
        """warm_slots: on a live llama-server with several slots, compute each simulation's shared
        prompt prefix once and copy it into every slot (`vse.llm.slots`); never on a replay.
        ``VSE_WARM_SLOTS=0`` in the environment turns it off (the bench's baseline)."""
        llm = cls(client, api)
        llm.identify()
        llm.in_flight = llm.server_in_flight or llm.server_slots or 1
        if warm_slots and (llm.server_slots or 0) > 1 and os.environ.get("VSE_WARM_SLOTS", "1") != "0":
            client.warmer = SlotWarmer.probe(client.session, client.config.base_url)
        return llm

    def identify(self) -> None:
        """Ask the server what it serves (GET /models); recorded in the cassette like any call."""
        if self.client is None:
            raise ValueError("this LLM has no client: it only carries an embedding store (LLM.embedding_only)")
        self.reported_model = self.client.config.model
        try:
            # Through the client, so the breaker, timeouts, retries and cassette misses apply as to any call.
            data = self.client.get_json("models").get("data")
        except Exception:  # noqa: BLE001 - identity is best effort; a server without /models is fine
            data = None
        entry = data[0] if data and isinstance(data, list) and isinstance(data[0], dict) else {}
        if entry.get("id"):
            # llama-cpp-python reports the model file's path: keep its name, never a local path.
            self.reported_model = Path(str(entry["id"])).name
        if self.reported_model == MODEL_FILE:
            self.llm_file_sha256 = MODEL_SHA256
            # From the recorded reply only (llama-server's tags name its build, slots and
            # context), so a replay names the server the recording used.
            self.server, self.server_slots = describe_server(entry)
            self.server_in_flight = server_in_flight(entry)

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        base_url: str | None = None,
        *,
        model: str | None = None,
        api: str = defaults.API,
        cassette: Path | str | None = None,
        record: bool = True,
        max_retries: int = 5,
        in_flight: int | None = None,
    ) -> Iterator[LLM]:
        """An LLM for a block: with a cassette, live calls are recorded (``record``) or replayed.

        in_flight: one-item predictions sent at once (None: what the server takes, see `from_client`)."""
        config = ClientConfig.from_env(base_url=base_url, model=model, max_retries=max_retries if record else 0)
        with contextlib.ExitStack() as stack:
            if cassette is not None:
                Path(cassette).parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(use_cassette(cassette, record=record))
            llm = cls.from_client(LLMClient(config), api, warm_slots=record)
            if in_flight is not None:
                llm.in_flight = in_flight
            yield llm

    def provenance(self, fewshot: Sequence[str], seed: int, *, simulator: str = "", protocol: str = "") -> Provenance:
        return Provenance(
            llm=self.reported_model,
            api=self.api,
            llm_file_sha256=self.llm_file_sha256,
            server=self.server,
            prompts_sha256=prompts_hash(),
            fewshot=tuple(fewshot),
            seed=seed,
            simulator=simulator,
            protocol=protocol,
        )


_Config = TypeVar("_Config", ExplainConfig, ScoreConfig)


def on_llm_endpoint(config: _Config, llm: LLM) -> _Config:
    """`config` with its ``api`` set to the LLM's: the LLM's endpoint wins.

    The configs keep an ``api`` field because recorded ``config.json`` files name it, but the
    endpoint a call goes to is the LLM's, chosen when it was opened (``--api``); a config that
    says otherwise is followed in everything but that.
    """
    return config if config.api == llm.api else dataclasses.replace(config, api=llm.api)
