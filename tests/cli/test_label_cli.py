"""`vse label` with stand-ins for vse.method.pipeline and vse.method.plan: the command's own plumbing, with no LLM."""

from __future__ import annotations

import json
import threading
import types
from collections import Counter

import pytest
from click.testing import CliRunner

from vse.cli.label import label_cmd, parse_units
from vse.data.loader import layer_width
from vse.llm.client import Usage
from vse.method.records import ExplanationRecord, Provenance, ScoreRecord

PROV = Provenance("fake-model", "completions", None, None, "h", (), 0)


@pytest.fixture
def api(monkeypatch):
    fake = types.SimpleNamespace(calls=Counter(), urls=Counter(), fail=set(), lock=threading.Lock())

    def explain_neuron(neuron_id, method, *, llm, n=1, polarity="positive", progress=True):
        client = llm.client
        unit = int(neuron_id.rsplit("/", 1)[1])
        with fake.lock:
            fake.calls[unit] += 1
            fake.urls[client.config.base_url] += 1
        if unit in fake.fail:
            raise RuntimeError(f"explain failed for {neuron_id}")
        # what a real call does to the thread's client: the label command reads the difference
        client.usage = client.usage + Usage(100 * n, 10 * n)
        client.calls += n
        return [
            ExplanationRecord(neuron_id, method, polarity, f"{method} explanation {k} of {unit}", k, 1, 100, 10, PROV)
            for k in range(n)
        ]

    def score_explanation(neuron_id, explanation, target, *, llm, progress=True, config=None, **_how):
        client = llm.client
        client.usage = client.usage + Usage(50, 1)
        client.calls += 1
        return ScoreRecord(
            mean=42.0, half_width=0.0, passes=1, hit_cap=False, scores=[42.0], accuracy=0.5, mse=1.0, mae=1.0,
            failed_passes=0, calls=1, prompt_tokens=50, completion_tokens=1, neuron=neuron_id, method="user",
            explanation=explanation, explanation_seed=None, target=target, polarity="positive", provenance=PROV,
        )  # fmt: skip

    def plan_requests(neuron_id, method, *, n, score, target, api="completions"):
        for _ in range(n + (3 if score else 0)):
            yield "completions", {"prompt": "x" * 288, "max_tokens": 10, "model": "local"}

    fake.explain_neuron, fake.score_explanation, fake.plan_requests = explain_neuron, score_explanation, plan_requests
    fake.LLM = types.SimpleNamespace(
        from_client=lambda client, api="completions": types.SimpleNamespace(client=client, api=api)
    )
    import vse.cli.label
    import vse.studies.label_work

    monkeypatch.setattr(vse.studies.label_work, "pipeline", fake)  # what `vse label` calls
    monkeypatch.setattr(vse.cli.label, "plan", fake)  # --dry-run's plan_requests
    return fake


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_label_explains_scores_and_resumes(api, tmp_path):
    out = tmp_path / "l.jsonl"
    args = [
        "efficientnet_lite0/_conv_head",
        "--method",
        "weight-label",
        "--units",
        "0:6",
        "--workers",
        "3",
        "--score",
        "--simulator",
        "one",
        "--n",
        "2",
        "--base-url",
        "http://a.test/v1",
        "--base-url",
        "http://b.test/v1",
        "--out",
        str(out),
        "--no-progress",
    ]
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 0, r.output
    recs = _records(out)
    assert sorted(x["unit"] for x in recs) == list(range(6))
    rec = next(x for x in recs if x["unit"] == 4)
    assert rec["neuron"] == "efficientnet_lite0/_conv_head/4" and len(rec["explanations"]) == 2
    # The fair best of the 2: both scored on held-in items, the first of the equal bests on held-out ones.
    [best] = rec["scores"]
    assert best["explanation"] == "weight-label explanation 0 of 4" and best["mean"] == 42.0
    assert [c["held_in"] for c in best["best_of"]["candidates"]] == [42.0, 42.0] and best["best_of"]["chosen"] == 0
    assert rec["target"] == "weight-label"
    # per-unit usage from the thread's own client: 2 explanations + 2 held-in scores + 1 held-out score
    assert rec["usage"] == {"prompt_tokens": 350, "completion_tokens": 23, "calls": 5}
    assert set(api.urls) == {"http://a.test/v1", "http://b.test/v1"}
    assert "labelled 6 units" in r.output and "2100 prompt + 138 completion" in r.output
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 0 and "skipped 6" in r.output
    assert max(api.calls.values()) == 1  # nothing explained twice


def test_failed_units_are_recorded_exit_1_and_retried(api, tmp_path):
    out = tmp_path / "l.jsonl"
    args = [
        "efficientnet_lite0/_blocks.15",
        "--method",
        "weight-label",
        "--units",
        "0:3",
        "--out",
        str(out),
        "--no-progress",
        "--base-url",
        "http://a/v1",
    ]
    api.fail = {1}
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 1 and "failed 1" in r.output
    assert [x for x in _records(out) if x.get("status") == "failed"][0]["unit"] == 1
    api.fail = set()
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 0 and "labelled 1 units" in r.output and api.calls[1] == 2


def test_shard_and_default_out_name(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(
        label_cmd,
        [
            "efficientnet_lite0/_blocks.15",
            "--method",
            "weight-label",
            "--units",
            "0:6",
            "--shard",
            "1/2",
            "--no-progress",
            "--base-url",
            "http://a/v1",
        ],
    )
    assert r.exit_code == 0, r.output
    out = tmp_path / "labels" / "efficientnet_lite0__blocks.15__weight-label.shard1of2.jsonl"
    assert sorted(x["unit"] for x in _records(out)) == [1, 3, 5]


def test_dry_run_prices_without_calling(api):
    r = CliRunner().invoke(
        label_cmd,
        [
            "efficientnet_lite0/_blocks.15",
            "--method",
            "weight-label",
            "--dry-run",
            "--score",
            "--simulator",
            "one",
            "--price-per-1k-tokens",
            "0.5",
        ],
    )
    assert r.exit_code == 0, r.output
    est = json.loads(r.output.strip().splitlines()[-1])
    # the whole layer (320 units, width from the fixtures) x (the default 4 explanations + the fake's 3 scoring calls)
    assert est["calls"] == 320 * 7 and est["prompt_tokens"] == 320 * 7 * 100
    assert est["price"] == pytest.approx((est["prompt_tokens"] + est["max_completion_tokens"]) / 1000 * 0.5)
    assert "paper's formula" in r.output and not api.calls


@pytest.mark.parametrize(
    "args, message",
    [
        (["nolayer", "--method", "weight-label", "--units", "0:2"], "MODEL/LAYER"),
        (["efficientnet_lite0/_blocks.15", "--method", "weight-label", "--units", "5:3"], "0 <= A < B"),
        (
            ["efficientnet_lite0/_blocks.15", "--method", "weight-label", "--units", "0:2", "--shard", "2/2"],
            "0 <= I < N",
        ),
        (["efficientnet_lite0/_conv_head", "--method", "weight-label", "--units", "0:2000"], "1280 units"),
    ],
)
def test_bad_arguments(args, message):
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 2 and message in r.output


def test_layer_width_and_units():
    assert layer_width("efficientnet_lite0", "_conv_head") == 1280
    assert parse_units(None, 3) == [0, 1, 2] and parse_units("2:4", 10) == [2, 3]
    with pytest.raises(ValueError, match="--units"):
        parse_units(None, None)


def test_in_flight_reaches_each_workers_llm(api, tmp_path):
    seen = []
    scored = api.score_explanation

    def score_explanation(neuron_id, explanation, target, *, llm, progress=True, config=None, **_how):
        seen.append(getattr(llm, "in_flight", None))
        return scored(neuron_id, explanation, target, llm=llm, progress=progress, config=config, **_how)

    api.score_explanation = score_explanation
    args = [
        "efficientnet_lite0/_conv_head",
        "--method",
        "weight-label",
        "--units",
        "0:2",
        "--workers",
        "2",
        "--score",
        "--simulator",
        "one",
        "--base-url",
        "http://a.test/v1",
        "--out",
        str(tmp_path / "l.jsonl"),
        "--no-progress",
    ]
    assert CliRunner().invoke(label_cmd, [*args, "--in-flight", "3"]).exit_code == 0
    assert seen == [3] * 10  # 2 units x (the default 4 candidates on held-in items + the chosen one on held-out)
    seen.clear()
    assert CliRunner().invoke(label_cmd, [*args, "--out", str(tmp_path / "m.jsonl")]).exit_code == 0
    assert seen == [None] * 10  # not given: the LLM keeps what the server reports (LLM.from_client)


def test_in_flight_help_and_docs_say_the_default_the_local_server_takes():
    # The default is what vse's llama-server says it takes (IN_FLIGHT_PER_SLOT a slot), not its slots: the
    # option's help (label's own and the shared one) and docs/labelling.md say so in words.
    from pathlib import Path

    from vse.cli.options import in_flight_option
    from vse.llm.server import IN_FLIGHT_PER_SLOT

    per_slot = {1: "one", 2: "two", 3: "three", 4: "four"}[IN_FLIGHT_PER_SLOT] + " per slot"
    shared = in_flight_option(lambda **_: None).__click_params__[0].help
    label = next(p for p in label_cmd.params if p.name == "in_flight").help
    docs = (Path(__file__).resolve().parents[2] / "docs" / "labelling.md").read_text(encoding="utf-8")
    for text in (shared, label, " ".join(docs.split())):
        assert per_slot in text, text[:200]
    assert "default: the local server's slots" not in label and "the slots the server reports" not in docs


def _zeroed_fixtures(monkeypatch, *, zero=(), constant=()):
    """The fixtures' caption-activation matrix with some units that never fire (all 0) or never change."""
    from vse.data import loader

    real = loader._matrix

    def matrix(model, layer, kind):
        texts, raw = real(model, layer, kind)
        if kind == "caption-activation":
            raw = raw.copy()
            raw[list(zero)] = 0.0
            raw[list(constant)] = 0.5
        return texts, raw

    monkeypatch.setattr(loader, "_matrix", matrix)


def test_a_dead_unit_costs_no_call_and_does_not_fail_the_run(api, tmp_path, monkeypatch):
    _zeroed_fixtures(monkeypatch, zero=[1], constant=[2])
    out = tmp_path / "l.jsonl"
    args = [
        "efficientnet_lite0/_conv_head",
        "--method",
        "caption-activation",
        "--units",
        "0:4",
        "--score",
        "--simulator",
        "one",
        "--base-url",
        "http://a/v1",
        "--out",
        str(out),
        "--no-progress",
    ]
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 0, r.output
    assert "labelled 2 units" in r.output and "dead 2 (no LLM call)" in r.output and "failed 0" in r.output
    assert api.calls[1] == api.calls[2] == 0 and api.calls[0] == api.calls[3] == 1
    recs = {x["unit"]: x for x in _records(out)}
    assert recs[1]["status"] == "dead" and recs[1]["dead"] == "no non-zero value on the probe set"
    assert recs[2]["dead"] == "constant values on the probe set"
    assert recs[1]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}
    assert "explanations" not in recs[1] and "status" not in recs[0]
    r = CliRunner().invoke(label_cmd, args)  # a dead unit is done: the resume skips it
    assert r.exit_code == 0 and "skipped 4" in r.output and api.calls[1] == 0


@pytest.fixture
def score_fails(api):
    """`api` whose scoring raises for the units in ``api.score_fail``."""
    api.score_fail = set()
    scored = api.score_explanation

    def score_explanation(neuron_id, explanation, target, *, llm, progress=True, config=None, **_how):
        if int(neuron_id.rsplit("/", 1)[1]) in api.score_fail:
            raise ValueError("every drawn set of 50 items has constant values")
        return scored(neuron_id, explanation, target, llm=llm, progress=progress, config=config, **_how)

    api.score_explanation = score_explanation
    return api


def test_a_scoring_failure_keeps_the_explanations_and_the_resume_only_scores(score_fails, tmp_path):
    api = score_fails
    out = tmp_path / "l.jsonl"
    args = [
        "efficientnet_lite0/_conv_head",
        "--method",
        "weight-label",
        "--units",
        "0:3",
        "--score",
        "--simulator",
        "one",
        "--n",
        "2",
        "--base-url",
        "http://a/v1",
        "--out",
        str(out),
        "--no-progress",
    ]
    api.score_fail = {1}
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 1 and "failed 1" in r.output
    [kept] = [x for x in _records(out) if x["unit"] == 1]
    assert kept["status"] == "explained" and "constant values" in kept["error"]
    assert [e["explanation"] for e in kept["explanations"]] == [
        "weight-label explanation 0 of 1",
        "weight-label explanation 1 of 1",
    ]
    assert api.calls[1] == 1

    api.score_fail = set()
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 0 and "labelled 1 units" in r.output and "skipped 2" in r.output
    assert api.calls[1] == 1  # no explanation call: the kept explanations were scored
    done = _records(out)[-1]
    assert done["unit"] == 1 and "status" not in done
    [best] = done["scores"]
    assert [c["explanation"] for c in best["best_of"]["candidates"]] == [e["explanation"] for e in kept["explanations"]]
    assert done["usage"]["calls"] == 3  # the scores only: two held-in, one held-out


def test_a_plain_failure_after_an_explained_record_keeps_the_explanations(score_fails, tmp_path):
    from vse.studies.layer_labelling import kept_explanations

    def said(unit, text):
        return ExplanationRecord(f"m/l/{unit}", "weight-label", "positive", text, 0, 1, 100, 10, PROV)

    out = tmp_path / "l.jsonl"
    lines = [
        {"unit": 1, "status": "explained", "explanations": [said(1, "dogs").to_json()], "error": "x"},
        {"unit": 1, "status": "failed", "error": "y"},
        {"unit": 2, "status": "explained", "explanations": [said(2, "cats").to_json()], "error": "x"},
        {"unit": 2, "explanations": [said(2, "cats").to_json()], "scores": []},
    ]
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert kept_explanations(out) == {1: (said(1, "dogs"),)}


def test_an_endpoint_down_while_scoring_still_stops_the_run(score_fails, tmp_path):
    from vse.llm.errors import LLMEndpointDown

    api = score_fails

    def down(*args, **kwargs):
        raise LLMEndpointDown("a:1", 5, "refused")

    api.score_explanation = down
    out = tmp_path / "l.jsonl"
    r = CliRunner().invoke(
        label_cmd,
        [
            "efficientnet_lite0/_conv_head",
            "--method",
            "weight-label",
            "--units",
            "0:2",
            "--score",
            "--simulator",
            "one",
            "--base-url",
            "http://a/v1",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    from vse.studies.layer_labelling import RunStopped

    assert r.exit_code == 1 and isinstance(r.exception, RunStopped)
    assert not out.exists() or not _records(out)  # not recorded as an explained unit: the run stopped


def _sparse_fixtures(monkeypatch, units, keep: int):
    """The fixtures' caption-activation matrix with ``units`` firing on their ``keep`` strongest captions only:
    fewer than the 25 the explainer is shown, so every caption it did not see is 0."""
    import numpy as np

    from vse.data import loader

    real = loader._matrix

    def matrix(model, layer, kind):
        texts, raw = real(model, layer, kind)
        if kind == "caption-activation":
            raw = raw.copy()
            for u in units:
                weak = np.argsort(-raw[u], kind="stable")[keep:]
                raw[u, weak] = 0.0
        return texts, raw

    monkeypatch.setattr(loader, "_matrix", matrix)


UNSCORABLE_ARGS = ["efficientnet_lite0/_conv_head", "--method", "caption-activation", "--units", "0:4", "--score",
                   "--base-url", "http://a/v1", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("simulator", ["embedding", "one"])
def test_an_unscorable_unit_keeps_its_explanations_exits_0_says_why_and_is_final(api, tmp_path, monkeypatch, simulator):
    _sparse_fixtures(monkeypatch, [3], keep=20)
    _zeroed_fixtures(monkeypatch, zero=[1])
    out = tmp_path / "l.jsonl"
    args = [*UNSCORABLE_ARGS, "--simulator", simulator, "--out", str(out)]
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 0, r.output
    assert "labelled 2 units" in r.output and "dead 1 (no LLM call), unscorable 1 (explained, not scored)" in r.output
    reason = (
        "all 675 items the explainer did not see have the same value (0); give a larger probe set, or score with "
        "--simulator one --n 1, whose uniform passes include the shown items"
    )
    assert f"unit 3 is unscorable: {reason}" in r.output and "failed 0" in r.output
    recs = {x["unit"]: x for x in _records(out)}
    assert recs[3]["status"] == "unscorable" and recs[3]["unscorable"] == reason and "error" not in recs[3]
    assert len(recs[3]["explanations"]) == 4 and "scores" not in recs[3]  # the 4 candidates kept, none scored
    assert recs[3]["usage"]["calls"] == 4  # the explanations only: no scoring call
    assert "status" not in recs[0] and recs[1]["status"] == "dead"
    r = CliRunner().invoke(label_cmd, args)  # final, like dead: the resume skips it
    assert r.exit_code == 0 and "skipped 4" in r.output and api.calls[3] == 1, r.output


def test_one_explanation_with_the_uniform_protocol_scores_the_sparse_unit(api, tmp_path, monkeypatch):
    """What the remedy says: --simulator one --n 1 draws from every item, the shown ones too."""
    _sparse_fixtures(monkeypatch, [3], keep=20)
    out = tmp_path / "l.jsonl"
    r = CliRunner().invoke(label_cmd, [*UNSCORABLE_ARGS, "--simulator", "one", "--n", "1", "--out", str(out)])
    assert r.exit_code == 0 and "labelled 4 units" in r.output and "unscorable" not in r.output, r.output


def test_an_explained_record_of_an_unscorable_unit_resumes_to_unscorable_without_explaining(api, tmp_path, monkeypatch):
    """A record an older vse left ``explained`` ("every drawn set ... has constant values"): the rerun finds it
    unscorable from its kept explanations, with no explanation call."""
    _sparse_fixtures(monkeypatch, [2], keep=10)
    out = tmp_path / "l.jsonl"
    neuron = "efficientnet_lite0/_conv_head/2"
    said = [ExplanationRecord(neuron, "caption-activation", "positive", "dogs", k, 1, 100, 10, PROV) for k in (0, 1)]
    old = {"unit": 2, "neuron": neuron, "method": "caption-activation", "target": "caption-activation",
           "status": "explained", "error": "ValueError: every drawn set of 50 items has constant values",
           "explanations": [e.to_json() for e in said]}  # fmt: skip
    out.write_text(json.dumps(old) + "\n")
    args = [*UNSCORABLE_ARGS, "--units", "2:3", "--out", str(out)]
    r = CliRunner().invoke(label_cmd, args)
    assert r.exit_code == 0 and "unscorable 1" in r.output and api.calls[2] == 0, r.output
    last = _records(out)[-1]
    assert last["status"] == "unscorable" and [e["explanation"] for e in last["explanations"]] == ["dogs", "dogs"]
