"""The SAE study's design (units fixed before recording) and its statistics."""

from __future__ import annotations

import math

import numpy as np
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as st_h

from vse.data.loader import excluded_units, load_target
from vse.studies.sae_study import (
    CHANNELS,
    LATENTS,
    SaeStudy,
    Spread,
    _excluded,
    _shares,
    _unscorable,
    welch_interval,
)

#: The units the module doc's draw gives (seed 33), as recorded: a change of the draw changes these.
CHANNEL_UNITS = [638, 1189, 1210, 133, 165, 268, 178, 469, 932, 1029, 691, 189, 171, 1051, 745, 929]
CHANNEL_UNITS += [255, 902, 699, 276, 328, 20, 592, 40, 1178, 66, 1240, 99, 855, 532, 594, 1005]
#: The latents looked at (a seeded order, up to the 32nd scorable one): the first 32 scorable are explained.
LATENT_ORDER_START = [395, 643, 675, 593, 947, 841, 351, 700, 671, 224, 49, 225, 299, 328, 311, 631]
N_LATENTS_LOOKED_AT = 150


def test_the_units_are_the_ones_drawn_before_recording():
    study = SaeStudy()
    assert study.n_units == 32 and study.n_candidates == 4 and study.neuron_seed == 33
    populations = study.populations()
    assert populations[CHANNELS] == ("_conv_head", CHANNEL_UNITS)
    layer, latents = populations[LATENTS]
    assert layer == "_conv_head/sae:fixtures/efficientnet_lite0/sae__conv_head.npz"
    assert latents[:16] == LATENT_ORDER_START and len(latents) == N_LATENTS_LOOKED_AT
    scorable = [
        u
        for u in latents
        if not _unscorable(study, load_target(f"efficientnet_lite0/{layer}/{u}", "caption-activation"))
    ]
    assert len(scorable) == 32 and scorable[-1] == latents[-1]


def test_no_channel_was_looked_at_before():
    used = set(_excluded()) | excluded_units("efficientnet_lite0", "_conv_head")
    assert not used & set(CHANNEL_UNITS)


def test_dead_and_dense_shares_count_rows():
    raw = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 2.0, 3.0], [0.5, 0.0, 0.0]])
    # row 0 and row 1 are constant (dead); rows 1 and 2 are non-zero on >= 2/3 of the images
    assert _shares(raw, 2 / 3) == (2, 2)


@settings(max_examples=50, deadline=None)
@given(
    st_h.lists(st_h.floats(-1, 1, allow_nan=False), min_size=3, max_size=40),
    st_h.lists(st_h.floats(-1, 1, allow_nan=False), min_size=3, max_size=40),
)
def test_welch_interval_matches_scipy(a, b):
    a, b = np.array(a), np.array(b)
    if np.ptp(a) < 1e-6 or np.ptp(b) < 1e-6:
        return
    diff, low, high, df = welch_interval(a, b)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    ref_df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert df == math.floor(ref_df + 1e-9) or df == math.floor(ref_df)
    half = st.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert math.isclose(diff, np.mean(a) - np.mean(b), abs_tol=1e-12)
    assert math.isclose(high - diff, half, rel_tol=1e-3) and math.isclose(diff - low, half, rel_tol=1e-3)


def test_spread_gives_a_t_interval_and_quartiles():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    s = Spread.of(x)
    low, high = st.t.interval(0.95, 4, loc=0.3, scale=st.sem(x))
    assert s.n == 5 and math.isclose(s.mean, 0.3) and math.isclose(s.median, 0.3)
    assert math.isclose(s.low, low, rel_tol=1e-3) and math.isclose(s.high, high, rel_tol=1e-3)
    assert (s.q1, s.q3) == (0.2, 0.4)


def test_the_measures_from_scripted_explanations(monkeypatch, tmp_path):
    """The whole measurement path offline: explanations scripted (a unit's are its own top captions, so the
    own explanation should win), embeddings a letter count; every number is then checked against its meaning."""
    import contextlib
    from dataclasses import dataclass, replace

    from vse.method.simulators.embedding import EmbeddingStore
    from vse.studies import sae_study

    @dataclass(frozen=True)
    class Record:  # what the study reads of an explanation record
        neuron: str
        method: str
        explanation: str
        shown: tuple[int, ...] = ()

        def to_json(self):
            return {"neuron": self.neuron, "explanation": self.explanation}

    def explain(neuron, method, *, llm, n, config, seed, progress):
        t = sae_study.load_target(neuron, method)
        top = np.argsort(-t.raw, kind="stable")[:3]
        return [Record(neuron, method, ", ".join(t.texts[i] for i in top) + f" {k}") for k in range(n)]

    monkeypatch.setattr(sae_study, "explain_neuron", explain)

    class Opener:
        folder = tmp_path
        record = True

        @contextlib.contextmanager
        def __call__(self, stem):
            yield None

    store = EmbeddingStore(
        tmp_path / "e.npz",
        encode=lambda ts: np.array([[t.count(c) + 0.1 for c in "aeiostnrl"] for t in ts]),
        record=True,
    )
    study = replace(SaeStudy(), n_units=4)
    result = sae_study.run_sae_study(study, Opener(), store, progress=False)
    assert [r.population for r in result.rows] == [CHANNELS, LATENTS]
    for r in result.rows:
        assert r.units == 1280 and r.explained == r.drawn - r.dead_drawn - r.unscorable
        assert r.score.low <= r.score.mean <= r.score.high and r.meta.floor == 0.25
        assert 0 <= r.meta.auprc <= 1 and 1 <= r.mean_rank <= 4
    assert result.rows[1].explained == 4 and result.rows[0].drawn == 4
    diff, low, high, _df = result.difference
    assert low <= diff <= high
    assert (
        diff == result.rows[1].score.mean - result.rows[0].score.mean
        or abs(diff - (result.rows[1].score.mean - result.rows[0].score.mean)) < 1e-9
    )
    assert result.verdict.split(":")[0] in {
        "SAE latents explain better than channels",
        "channels explain better than SAE latents",
        "no difference is shown between SAE latents and channels",
    }
    files = result.files()
    assert set(files) == {"summary.json", "explanations.jsonl", "units.csv"}
    assert len(result.unit_scores) == sum(r.explained for r in result.rows)


def test_welch_df_of_equal_spreads_and_sizes_is_exactly_2n_minus_2():
    """Satterthwaite's df is 2(n - 1) here exactly; rounded down it must not drop to the integer below."""
    a = np.array([0.0] * 5 + [1.0] + [0.5] * 3 + [0.75] * 3 + [0.375] * 3)
    assert welch_interval(a, a.copy())[3] == 28
