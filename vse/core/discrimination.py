"""Does the score tell a neuron's own explanation from other neurons'? Matched vs mismatched.

For a set of neurons, each method's explanation of every neuron is scored on every neuron's
target. A neuron's own explanation on its own values is *matched*; the other neurons'
explanations (same method) on its values are *mismatched*. A score that means something puts the
matched one on top: we report the matched and mismatched means, the wins (own beats the mean of
the others), the mean rank of the own explanation among the K (chance: (K+1)/2), and one-sided
paired p-values (t-test and Wilcoxon) of matched minus mismatched mean over neurons, plus how
many neurons the measured effect would need for p < 0.01.

All of it reads one prediction matrix: every explanation (and the neutral one) predicted once on
a shared item pool (each neuron's top items plus shared random items) through the one-item
simulator. The protocols are item sets within that pool (`item_sets`):
- uniform: the pool's random items (a uniform sample of the whole list, scored in one pass);
- top-and-random: the neuron's top ``n_top`` items plus the random items;
- top-and-random-heldout: only the neuron's odd top ranks (never shown to the explainer, who saw
  the even ranks of the top 2 x n_pairs) plus the random items outside everything it was shown;
- recall-free: the random items the explainer was never shown (one exact pass, no recall);
and each of them prior-corrected (the neutral explanation's predictions subtracted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as st

from vse.core import exact
from vse.core.markdown import Column, markdown_table
from vse.core.protocols import among, heldout_shown, heldout_top, ranks
from vse.core.stats import correlation_score
from vse.core.tquantile import t_quantile


@dataclass(frozen=True)
class ItemSets:
    """Pool indices each protocol scores for one neuron."""

    uniform: np.ndarray
    top_and_random: np.ndarray
    heldout: np.ndarray
    held: np.ndarray  # the held-out top items alone (never shown)
    unseen_random: np.ndarray  # the random items outside the top and outside what was shown
    recall_free: np.ndarray  # the random items the explainer was never shown (one exact pass)


def build_pool(
    values: list[np.ndarray], n_top: int, n_random: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(pool item indices into the full list, the shared random ones): every neuron's top 2 x n_top ranks... see below.

    The pool holds each neuron's ranks 0..n_top-1 (top-and-random, and its odd ranks for held-out)
    and ``n_random`` items drawn uniformly from the whole list once, shared by all neurons.
    """
    size = len(values[0])
    rand = np.sort(rng.choice(size, size=min(n_random, size), replace=False))
    tops = [ranks(v)[:n_top] for v in values]
    pool = np.unique(np.concatenate([rand, *tops]))
    return pool, rand


def item_sets(values: np.ndarray, pool: np.ndarray, rand: np.ndarray, n_top: int, n_shown: int) -> ItemSets:
    """One neuron's protocol item sets, as indices into `pool`."""
    where = {int(item): i for i, item in enumerate(pool)}
    order = ranks(values)
    shown = set(heldout_shown(values, n_shown).tolist())  # what the held-out explainer saw
    top = order[:n_top]
    held = heldout_top(values, n_top // 2)  # ranks 1, 3, ... below n_top
    uniform = [where[int(i)] for i in rand]
    tr = sorted({where[int(i)] for i in top} | set(uniform))
    ho_random = [where[int(i)] for i in among(rand, shown | set(top.tolist()))]
    ho = sorted({where[int(i)] for i in held} | set(ho_random))
    held_pool = sorted({where[int(i)] for i in held})
    as_int = lambda x: np.array(x, dtype=int)  # noqa: E731 - int even when empty: they index arrays
    unseen = sorted(where[int(i)] for i in among(rand, shown))
    return ItemSets(
        as_int(uniform), as_int(tr), as_int(ho), as_int(held_pool), as_int(sorted(ho_random)), as_int(unseen)
    )


@dataclass(frozen=True)
class Comparison:
    """Matched vs mismatched for one (protocol, target, method) over neurons."""

    protocol: str
    target: str
    method: str
    n_neurons: int
    matched_mean: float
    mismatched_mean: float
    wins: int
    mean_rank: float
    p_value: float
    p_wilcoxon: float
    neurons_needed_for_p01: int | None
    rank1: int = 0  # neurons whose own explanation ranks first
    sensitivity: float | None = None  # see `explanation_sensitivity` (mean over neurons)
    corr_with_neutral: float | None = None

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def neurons_needed(diffs: np.ndarray, alpha: float = 0.01, limit: int = 10_000) -> int | None:
    """Smallest n at which the measured effect (mean/sd of the paired differences) gives a
    one-sided t-test p < alpha; None when the effect is not positive."""
    d = np.asarray(diffs, dtype=float)
    if d.size < 2 or exact.mean(d) <= 0:
        return None
    sd = exact.std(d, ddof=1)
    if sd == 0:  # the same positive difference every time: significant from n = 2 (p = 0, as in `compare`)
        return 2
    effect = exact.mean(d) / sd
    for n in range(2, limit + 1):
        if effect * math.sqrt(n) > t_quantile(1 - alpha, n - 1):
            return n
    return None


@dataclass(frozen=True)
class Matched:
    """Matched vs mismatched over units, read from one score matrix (`match`)."""

    n_compared: int  # explanations compared per unit, the own one included (ranks are out of it)
    matched_mean: float
    mismatched_mean: float
    wins: int  # units whose own score beats the mean of the others compared
    rank1: int  # units whose own explanation ranks first
    mean_rank: float
    p_value: float  # one-sided paired t-test of own minus the others' mean over units
    p_wilcoxon: float
    diffs: np.ndarray = field(repr=False, compare=False)  # own minus the others' mean, per unit


def paired_t_greater(diffs: np.ndarray) -> float:
    """One-sided p of a one-sample t-test that the mean of ``diffs`` is above 0 (non-constant diffs).

    The statistic comes from exact sums (scipy's ``ttest_1samp`` sums through NumPy); the tail
    probability from scipy's t distribution.
    """
    n = len(diffs)
    t = exact.mean(diffs) / (exact.std(diffs, ddof=1) / math.sqrt(n))
    return float(st.t.sf(t, n - 1))


def match(scores: np.ndarray) -> Matched:
    """From S[i, j] = explanation i's score on unit j's values (NaN where i is not compared on j).

    rank: 1 + how many compared explanations score strictly higher than the own one (ties do not
    push it down); p: one-sided paired t-test (and Wilcoxon) of own minus the others' mean over units.
    """
    s = np.asarray(scores, dtype=float)
    k = s.shape[1]
    matched = np.array([s[j, j] for j in range(k)])
    others = [np.array([s[i, j] for i in range(s.shape[0]) if i != j and np.isfinite(s[i, j])]) for j in range(k)]
    mismatched = np.array([exact.mean(o) for o in others])
    diffs = matched - mismatched
    rank = np.array([1 + int(np.count_nonzero(o > m)) for o, m in zip(others, matched, strict=True)])
    if np.ptp(diffs) > 0:
        p_t = paired_t_greater(diffs)
    else:
        p_t = 0.0 if exact.mean(diffs) > 0 else 1.0
    try:
        p_w = float(st.wilcoxon(diffs, alternative="greater").pvalue)
    except ValueError:  # every difference 0
        p_w = 1.0
    return Matched(
        n_compared=int(max(len(o) for o in others) + 1),
        matched_mean=exact.mean(matched),
        mismatched_mean=exact.mean(mismatched),
        wins=int(np.count_nonzero(diffs > 0)),
        rank1=int(np.count_nonzero(rank == 1)),
        mean_rank=exact.mean(rank),
        p_value=p_t,
        p_wilcoxon=p_w,
        diffs=diffs,
    )


def compare(scores: np.ndarray, *, protocol: str, target: str, method: str) -> Comparison:
    """From S[i, j] = score of neuron i's explanation on neuron j's values (same method, all compared)."""
    m = match(scores)
    return Comparison(
        protocol,
        target,
        method,
        len(m.diffs),
        m.matched_mean,
        m.mismatched_mean,
        m.wins,
        m.mean_rank,
        m.p_value,
        m.p_wilcoxon,
        neurons_needed(m.diffs),
        m.rank1,
    )


def explanation_sensitivity(
    own: np.ndarray, neutral: np.ndarray, held: np.ndarray, rest: np.ndarray, rand: np.ndarray
) -> tuple[float, float]:
    """Does the simulator read the explanation? Two numbers for one neuron.

    lift: how much the own explanation raises the predictions on the neuron's held-out top items
        over its unseen random items (``rest``), minus the same lift under the neutral explanation,
        in standard deviations of the own predictions over the random items ``rand`` (so that
        simulators on different scales compare). 0: the explanation adds nothing to the item names.
    corr: Pearson r of the own and the neutral predictions over ``rand``; near 1, the simulator
        predicts much the same whatever the explanation says.
    """
    own, neutral = np.asarray(own, dtype=float), np.asarray(neutral, dtype=float)
    if len(held) == 0 or len(rest) == 0:
        return 0.0, correlation_score(own[rand], neutral[rand]) / 100.0
    sd = exact.std(own[rand])
    m = exact.mean
    lift = (m(own[held]) - m(own[rest])) - (m(neutral[held]) - m(neutral[rest]))
    return (float(lift / sd) if sd > 0 else 0.0), correlation_score(own[rand], neutral[rand]) / 100.0


def score_matrix(
    pred: np.ndarray, truths: list[np.ndarray], sets: list[np.ndarray], prior: np.ndarray | None = None
) -> np.ndarray:
    """S[i, j]: correlation of explanation i's pool predictions with neuron j's values on its item set.

    pred: [explanations, pool]; truths[j]: neuron j's scaled values on the pool; sets[j]: pool
    indices of neuron j's protocol; prior: the neutral explanation's pool predictions, subtracted.
    """
    p = pred - prior if prior is not None else pred
    k = len(truths)
    return np.array(
        [[correlation_score(p[i, sets[j]], truths[j][sets[j]]) for j in range(k)] for i in range(p.shape[0])]
    )


def _two(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


#: What every matched-vs-mismatched table shows, of any row with these fields: the two means, the units
#: whose own explanation wins, and how often it ranks first.
MATCH_COLUMNS = (
    Column("matched", lambda r: f"{r.matched_mean:.1f}"),
    Column("mismatched", lambda r: f"{r.mismatched_mean:.1f}"),
    Column("own > others", lambda r: f"{r.wins}/{r.n_neurons}"),
    Column("own ranked 1st", lambda r: f"{r.rank1}"),
)
#: The studies' short form of the own explanation's mean rank and the p-values.
RANK_COLUMNS = (
    Column("mean rank", lambda r: f"{r.mean_rank:.2f}"),
    Column("p (t, one-sided)", lambda r: f"{r.p_value:.2g}"),
    Column("p (Wilcoxon)", lambda r: f"{r.p_wilcoxon:.2g}"),
)

#: The matched-vs-mismatched table's columns (`markdown`).
COLUMNS = (
    Column("protocol", lambda r: r.protocol),
    Column("target", lambda r: r.target),
    Column("method", lambda r: r.method),
    Column("neurons", lambda r: f"{r.n_neurons}"),
    *MATCH_COLUMNS,
    Column("mean rank of own", lambda r: f"{r.mean_rank:.2f}"),
    Column("p (t, one-sided)", lambda r: f"{r.p_value:.4f}"),
    Column("p (Wilcoxon)", lambda r: f"{r.p_wilcoxon:.4f}"),
    Column(
        "neurons for p < 0.01", lambda r: "-" if r.neurons_needed_for_p01 is None else f"{r.neurons_needed_for_p01}"
    ),
    Column("sensitivity", lambda r: _two(r.sensitivity)),
    Column("corr with neutral", lambda r: _two(r.corr_with_neutral)),
)


def markdown(rows: list[Comparison]) -> str:
    return markdown_table(COLUMNS, rows)


# ----------------------------------------------------------------------------- Meta-AUPRC


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision: sum over the distinct scores t, from the
    highest down, of (recall(t) - recall(t before)) x precision(t); tied scores are one threshold (a score
    cannot order them). Exact sums; raises when there is no positive or the lengths differ."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"auprc of {s.size} scores and {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("auprc needs finite scores")
    positives = int(np.count_nonzero(y))
    if positives == 0:
        raise ValueError("auprc needs at least one positive")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    terms, tp, seen, i = [], 0, 0, 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        gained = int(np.count_nonzero(y[i:j]))
        tp, seen = tp + gained, j
        if gained:
            terms.append((gained / positives) * (tp / seen))
        i = j
    return exact.fsum(terms)


def nearest_others(vectors: np.ndarray) -> np.ndarray:
    """For each row, the index of the most similar *other* row by cosine (ties: the lower index).

    NeuronEval's hard negatives: for unit j, the explanation closest to j's own one (by text embedding)."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) < 2:
        raise ValueError(f"nearest_others needs at least 2 row vectors, got shape {v.shape}")
    norms = np.array([exact.norm(row) for row in v])
    unit = v / np.where(norms > 0, norms, 1.0)[:, None]
    out = np.empty(len(v), dtype=int)
    for i in range(len(v)):
        cos = exact.dots(unit, unit[i])
        cos[i] = -np.inf
        out[i] = int(np.argmax(cos))
    return out


@dataclass(frozen=True)
class MetaAUPRC:
    """NeuronEval's second meta-evaluation of a score, on a matrix S[i, j] = explanation i scored on unit j.

    auprc: how well the score picks the matched pairs (i == j) out of every pair; floor: what a score that
    cannot tell pairs apart gets (every score tied: the share of matched pairs, 1/K). hard: the same with
    only each unit's own explanation and its hard negative (the explanation nearest to its own one by
    embedding, `nearest_others`), floor 0.5; None without neighbours.
    """

    n_units: int
    auprc: float
    floor: float
    hard: float | None = None
    hard_floor: float = 0.5

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def meta_auprc(scores: np.ndarray, nearest: np.ndarray | None = None) -> MetaAUPRC:
    """Meta-AUPRC of S[i, j] (explanation i on unit j; NaN: not compared, left out); ``nearest[j]``: unit
    j's hard-negative explanation."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or len(s) < 2:
        raise ValueError(f"meta_auprc needs a square score matrix of at least 2 units, got shape {s.shape}")
    k = len(s)
    labels = np.eye(k, dtype=bool)
    keep = np.isfinite(s)
    if not np.all(np.diag(keep)):
        raise ValueError("meta_auprc needs every unit's own explanation scored (a finite diagonal)")
    floor = k / int(np.count_nonzero(keep))
    hard = None
    if nearest is not None:
        nn = np.asarray(nearest, dtype=int)
        if len(nn) != k or np.any(nn == np.arange(k)):
            raise ValueError("nearest must name, for each unit, another unit's explanation")
        own = [s[j, j] for j in range(k)]
        negative = [s[int(nn[j]), j] for j in range(k)]
        hard = auprc(np.array(own + negative), np.array([True] * k + [False] * k))
    return MetaAUPRC(k, auprc(s[keep], labels[keep]), floor, hard)


#: The Meta-AUPRC table's columns (`meta_markdown`), of rows (label, MetaAUPRC).
META_COLUMNS = (
    Column("scorer", lambda r: r[0]),
    Column("units", lambda r: f"{r[1].n_units}"),
    Column("Meta-AUPRC", lambda r: f"{r[1].auprc:.3f}"),
    Column("random floor", lambda r: f"{r[1].floor:.3f}"),
    Column("vs nearest explanation", lambda r: "-" if r[1].hard is None else f"{r[1].hard:.3f}"),
    Column("its floor", lambda r: f"{r[1].hard_floor:.2f}"),
)


def meta_markdown(rows: list[tuple[str, MetaAUPRC]]) -> str:
    return markdown_table(META_COLUMNS, rows)
