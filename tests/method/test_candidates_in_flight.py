"""Best-of-N candidates sent together: the same requests, records in seed order, the prompt warmed once."""

from __future__ import annotations

import threading
import time

from vse.llm.client import Completion, Usage
from vse.method.llm import LLM
from vse.method.pipeline import explain_neuron

from ..llm.fakes import ScriptedClient

NEURON = "efficientnet_lite0/_conv_head/5"


def _answer(prompt, fields):
    time.sleep(0.02 * (fields["seed"] % 5))  # replies come back out of order
    return Completion(f" things of seed {fields['seed']}\n", [], Usage(700, 5), "stop")


class _Warmer:
    def __init__(self):
        self.prefixes = []

    def warm(self, prefix):
        self.prefixes.append(prefix)
        return True


def _run(in_flight: int, warmer=None):
    client = ScriptedClient(_answer)
    if warmer is not None:
        client.warmer = warmer
    llm = LLM(client, "completions")
    llm.in_flight = in_flight
    records = explain_neuron(NEURON, "weight-label", llm=llm, n=6, progress=False)
    return client, records


def test_candidates_in_flight_send_the_same_requests_and_keep_seed_order():
    one, serial = _run(1)
    warmer = _Warmer()
    many, together = _run(4, warmer)
    assert [r.explanation for r in together] == [r.explanation for r in serial]
    assert [r.seed for r in together] == [r.seed for r in serial]
    key = [(p, sorted(f.items())) for _, p, f in one.requests]
    assert sorted(key) == sorted((p, sorted(f.items())) for _, p, f in many.requests)
    # the shared prompt is computed once before the candidates go out
    assert warmer.prefixes == [one.prompts[0]]


def test_candidates_really_overlap():
    active, peak, lock = [0], [0], threading.Lock()

    def answer(prompt, fields):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return Completion(" dogs\n", [], Usage(700, 2), "stop")

    client = ScriptedClient(answer)
    llm = LLM(client, "completions")
    llm.in_flight = 3
    explain_neuron(NEURON, "weight-label", llm=llm, n=6, progress=False)
    assert peak[0] == 3
