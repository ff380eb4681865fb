"""The simulator study's pure parts: item sets, who predicts what, the masked comparison, and the
embedding store that replays like a cassette."""

import numpy as np
import pytest

from vse.core.discrimination import match
from vse.core.vocab import Protocol
from vse.method.simulators.embedding import EmbeddingMissing, EmbeddingStore, cosine_predictions
from vse.studies.simulator import RECALL_FREE_ALL, Pool, UnitItems, sensitivity, standardise


def _pool(n_units=4, size=40):
    rng = np.random.default_rng(0)
    units = []
    for _ in range(n_units):
        order = rng.permutation(size)
        units.append(UnitItems(held=np.sort(order[1:6:2]), top=np.sort(order[:6]), shown=np.sort(order[0:6:2])))
    rand = np.sort(rng.choice(size, 12, replace=False))
    return Pool(
        "weight-label",
        tuple(f"t{i}" for i in range(size)),
        rng.integers(0, 11, (n_units, size)).astype(float),
        rand,
        tuple(units),
    )


def test_recall_free_sets_never_hold_a_shown_item():
    pool = _pool()
    for j, u in enumerate(pool.units):
        for protocol in (Protocol.RECALL_FREE, RECALL_FREE_ALL, Protocol.TOP_AND_RANDOM_HELDOUT):
            assert not set(pool.item_set(protocol, j)) & set(u.shown.tolist())
        assert set(u.held.tolist()) <= set(pool.item_set(Protocol.TOP_AND_RANDOM_HELDOUT, j).tolist())
        assert pool.item_set(Protocol.UNIFORM, j).tolist() == pool.rand.tolist()
        assert len(pool.item_set(RECALL_FREE_ALL, j)) == 40 - len(u.shown)


def test_every_compared_explanation_is_predicted_on_the_items_it_is_scored_on():
    pool = _pool(n_units=5)
    for j in range(5):
        items = set(pool.item_set(Protocol.TOP_AND_RANDOM_HELDOUT, j).tolist())
        for i in pool.compared(j, 3):
            assert items <= set(pool.needed(i, 3).tolist())
    assert pool.compared(4, 3) == [4, 0, 1]
    assert set(pool.needed(-1, 3).tolist()) >= set(np.concatenate([u.held for u in pool.units]).tolist())


def test_match_ignores_explanations_not_compared():
    s = np.array([[50.0, np.nan, 0.0], [10.0, 40.0, np.nan], [np.nan, 0.0, 30.0]])
    c = match(s)
    assert c.n_compared == 2
    assert c.wins == 3 and c.rank1 == 3 and c.mean_rank == 1.0
    assert c.matched_mean == pytest.approx(40.0)
    assert c.mismatched_mean == pytest.approx((10.0 + 0.0 + 0.0) / 3)
    s[1, 0] = 60.0  # unit 0's own explanation now loses to explanation 1
    c = match(s)
    assert c.rank1 == 2 and c.wins == 2 and c.mean_rank == pytest.approx(4 / 3)


def test_sensitivity_is_zero_when_the_explanation_changes_nothing():
    pool = _pool()
    pred = np.arange(40, dtype=float)
    s, corr = sensitivity(pred, pred, pool, 0)
    assert s == 0.0 and corr == pytest.approx(1.0)
    lifted = pred.copy()
    lifted[pool.units[0].held] += 100
    assert sensitivity(lifted, pred, pool, 0)[0] > 0


def test_standardise_uses_the_random_items():
    z = standardise(np.array([1.0, 2.0, 3.0, 10.0]), np.array([0, 1, 2]))
    assert z[:3].mean() == pytest.approx(0.0) and z[:3].std() == pytest.approx(1.0)


def _fake_encoder(calls):
    def encode(texts):
        calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    return encode


def test_embedding_store_records_then_replays_without_the_encoder(tmp_path):
    path = tmp_path / "e.npz"
    calls = []
    rec = EmbeddingStore(path, record=True, encode=_fake_encoder(calls))
    live = cosine_predictions(rec, "a cat", ["banana", "dog", "a cat"])
    rec.save()
    first = path.read_bytes()
    replay = EmbeddingStore(path)
    assert np.allclose(cosine_predictions(replay, "a cat", ["banana", "dog", "a cat"]), live)
    assert live[2] == pytest.approx(1.0, abs=1e-3)
    assert len(calls) == 2  # the explanation, then the items: each text embedded once
    again = EmbeddingStore(path, record=True, encode=_fake_encoder(calls))
    cosine_predictions(again, "a cat", ["dog"])
    again.save()  # nothing new: not rewritten
    assert path.read_bytes() == first and len(calls) == 2


def test_an_item_list_is_stacked_once_and_kept_read_only(tmp_path):
    store = EmbeddingStore(tmp_path / "e.npz", record=True, encode=_fake_encoder([]))
    texts = ["banana", "dog", "a cat"]
    first = store.items(texts)
    assert store.items(tuple(texts)) is first and not first.flags.writeable
    assert first.tobytes() == store.embed(texts).tobytes()
    assert cosine_predictions(store, "dog", texts).tobytes() == cosine_predictions(store, "dog", list(texts)).tobytes()
    for i in range(12):  # a few lists are kept, not every one ever asked for
        store.items([f"t{i}"])
    assert store.items(texts) is not first and store.items(texts).tobytes() == first.tobytes()


def test_replay_of_an_unknown_text_names_the_store(tmp_path):
    path = tmp_path / "e.npz"
    rec = EmbeddingStore(path, record=True, encode=_fake_encoder([]))
    rec.embed(["x"])
    rec.save()
    with pytest.raises(EmbeddingMissing, match="e.npz"):
        EmbeddingStore(path).embed(["y"])
    with pytest.raises(FileNotFoundError, match="missing"):
        EmbeddingStore(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="unreadable"):
        EmbeddingStore(tmp_path / "bad.npz")


def test_embedding_simulator_predicts_through_the_simulator_interface(tmp_path):
    from vse.method.simulators import SimContext
    from vse.method.simulators.embedding import EmbeddingSimulator

    store = EmbeddingStore(tmp_path / "e.npz", record=True, encode=_fake_encoder([]))
    sim = EmbeddingSimulator(store)
    out = sim.predict(None, SimContext("weight-label", (), "a cat"), ["dog", "a cat"])
    assert out.calls == 0 and len(out.values) == 2 and out.values[1] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="signed"):
        sim.predict(None, SimContext("weight-label", (), "a cat", signed=True), ["dog"])
