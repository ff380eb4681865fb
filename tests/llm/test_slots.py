"""vse.llm.slots: one prefix computed once and copied into every llama-server slot, never recorded."""

from __future__ import annotations

import json

import requests
from vcr.request import Request

from vse.llm.cassettes import scrub_request
from vse.llm.slots import SLOT_FILE, UNRECORDED, SlotWarmer


class Reply:
    def __init__(self, status: int, body: object) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> object:
        return self._body


class Session:
    """Answers like llama-server started with --slot-save-path (or, with ``save_status=501``, without it)."""

    def __init__(self, slots: int = 4, save_status: int = 200) -> None:
        self.slots, self.save_status = slots, save_status
        self.sent: list[tuple[str, str, dict]] = []

    def get(self, url, headers=None, timeout=None):
        assert headers and UNRECORDED in headers
        self.sent.append(("GET", url, {}))
        return Reply(200, [{"id": i, "is_processing": False} for i in range(self.slots)])

    def post(self, url, data=None, headers=None, timeout=None):
        assert headers and UNRECORDED in headers
        self.sent.append(("POST", url, json.loads(data)))
        return Reply(self.save_status if "action=" in url else 200, {})


def test_a_prefix_is_computed_in_slot_0_saved_and_restored_into_the_others():
    session = Session(slots=4)
    warmer = SlotWarmer.probe(session, "http://127.0.0.1:8765/v1")
    assert warmer is not None and warmer.slots == 4
    assert warmer.warm("few-shot examples and the explanation")
    posts = [
        (url.removeprefix("http://127.0.0.1:8765"), body) for method, url, body in session.sent if method == "POST"
    ]
    assert posts[0][0] == "/v1/completions"
    assert posts[0][1]["prompt"] == "few-shot examples and the explanation" and posts[0][1]["id_slot"] == 0
    assert posts[1] == ("/slots/0?action=save", {"filename": SLOT_FILE})
    assert posts[2:] == [(f"/slots/{i}?action=restore", {"filename": SLOT_FILE}) for i in (1, 2, 3)]
    # The same prefix again costs nothing; a new one is warmed again.
    n = len(session.sent)
    assert warmer.warm("few-shot examples and the explanation") and len(session.sent) == n
    assert warmer.warm("another explanation") and warmer.warmed == 2


def test_a_server_without_a_slot_save_path_switches_the_warmer_off_once():
    session = Session(slots=4, save_status=501)
    warmer = SlotWarmer.probe(session, "http://127.0.0.1:8765/v1")
    assert not warmer.warm("prefix")
    n = len(session.sent)
    assert not warmer.warm("another prefix") and len(session.sent) == n  # off: nothing more is sent


def test_no_warmer_for_a_server_without_slots_or_without_an_answer():
    class Down(Session):
        def get(self, url, headers=None, timeout=None):
            raise requests.ConnectionError("refused")

    assert SlotWarmer.probe(Down(), "http://replay.invalid/v1") is None
    assert SlotWarmer.probe(Session(slots=1), "http://127.0.0.1:8765/v1") is None


def test_warm_up_requests_never_reach_a_cassette():
    warm = Request("POST", "http://localhost:8765/slots/0?action=save", b"{}", {UNRECORDED: "warm-up"})
    assert scrub_request(warm) is None
    real = Request("POST", "http://127.0.0.1:8765/v1/completions", b"{}", {"Content-Type": "application/json"})
    assert scrub_request(real).uri == "http://localhost/v1/completions"
