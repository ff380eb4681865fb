"""Scoring protocols: which of a neuron's items a simulation pass predicts.

Pure functions of (values, n, rng), like the subset strategies, so they are property-tested.

- ``uniform``: n items at random (the paper's Algorithm 1). Near-zero values dominate.
- ``top-and-random``: the n//2 highest-valued items plus random others (Bills et al. 2023). The
  top items are the very pairs the explainer was shown, so part of the score is recall.
- ``top-and-random-heldout``: the explainer is shown only the even ranks of the top items
  (`heldout_shown`); a pass takes the odd ranks (never shown) plus random items that were not
  shown either, so recalling the input earns nothing.
- ``all``: every item once: the exact score over the whole list, no sampling error.
- ``recall-free``: every item the explainer was not shown, once: one exact pass with no sampling
  error and no recall. It leaves out the target's top n_shown by raw value, what `vse explain`'s
  default display (the paper's Top, ranked by raw values) shows; pass ``strength`` (the raw
  values) so that ties of the scaled integers do not decide which items those are. (Leaving out
  the top 2 x n_shown, which would also cover the held-out display, leaves nothing but zeros on a
  sparse unit of a small probe set: found labelling 234 captioned images, where a unit had 50
  non-zero activations.) The simulator study (`vse.studies.simulator`) knows what each explainer
  saw and leaves out exactly that.

Prior correction (`prior_corrected`) is not a selection: it subtracts a neutral explanation's
predictions for the same items before the correlation, so credit goes to what the explanation
adds over the item names alone.
"""

from __future__ import annotations

import numpy as np

from vse.core.scaling import as_finite_1d
from vse.core.vocab import EXACT_PROTOCOLS, Protocol, choices

PROTOCOLS = choices(Protocol)


def ranks(values: np.ndarray) -> np.ndarray:
    """Indices from the highest value down (ties: lower index first)."""
    x = as_finite_1d(values, "values")
    return np.argsort(-x, kind="stable")


def heldout_shown(values: np.ndarray, n_pairs: int) -> np.ndarray:
    """What the explainer sees under the held-out protocol: ranks 0, 2, 4, ... of the top 2n, ascending."""
    order = ranks(values)[: 2 * n_pairs : 2]
    return order[::-1].copy()


def heldout_top(values: np.ndarray, n_top: int) -> np.ndarray:
    """The held-out top items: ranks 1, 3, 5, ... (never shown), the n_top highest of them."""
    return ranks(values)[1 : 2 * n_top : 2].copy()


def outside(size: int, excluded) -> np.ndarray:
    """The indices 0..size-1 not in `excluded`, ascending: what a random draw may pick from."""
    keep = np.ones(size, dtype=bool)
    keep[np.asarray(sorted(set(int(i) for i in excluded)), dtype=int)] = False
    return np.flatnonzero(keep)


def among(items: np.ndarray, excluded) -> np.ndarray:
    """The `items` not in `excluded`, in their order: what is left of a fixed random draw."""
    items = np.asarray(items)
    return items[~np.isin(items, np.asarray(sorted(set(int(i) for i in excluded)), dtype=int))]


def draw_outside(size: int, excluded, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `n` of the indices 0..size-1 outside `excluded`, drawn without replacement (in draw order).

    The one random draw of a protocol's items: a strategy-study run (`vse.studies.strategy`) takes its
    here, and a scoring pass (`Selector`) the same draw from the same pool, kept between passes.
    With nothing to draw, `rng` is not touched.
    """
    rest = outside(size, excluded)
    k = min(n, len(rest))
    return rng.choice(rest, size=k, replace=False) if k else np.array([], dtype=int)


def select(
    protocol: str,
    values: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    n_shown: int = 25,
    strength: np.ndarray | None = None,
    universe: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the items one pass predicts (order shuffled, so position never leaks the value).

    strength: the raw values, used by ``recall-free`` to find the top 2 x n_shown (default: values).
    universe: the only items a pass may use (ascending), e.g. the held-in half of what the explainer
        did not see (`vse.method.best_of`): ``recall-free`` and ``all`` then score all of them in one
        exact pass, ``uniform`` draws among them; the top-and-random protocols refuse it.
    """
    return Selector(protocol, values, n, n_shown=n_shown, strength=strength, universe=universe).draw(rng)


class Selector:
    """`select` with the work that does not depend on the draw done once: the ranking, the top items and
    what a random draw may pick from. ``Selector(...).draw(rng)`` is ``select(..., rng)``, the same items
    and the same use of ``rng``; a scoring run draws many passes on one target (Algorithm 1, the sanity
    checks' thousands of cases), and ranking 50,000 items for each pass cost more than the pass itself.
    The arguments are `select`'s; the arrays are read once, here (do not change them afterwards).
    """

    def __init__(
        self,
        protocol: str,
        values: np.ndarray,
        n: int,
        *,
        n_shown: int = 25,
        strength: np.ndarray | None = None,
        universe: np.ndarray | None = None,
    ) -> None:
        x = as_finite_1d(values, "values")
        size = len(x)
        if protocol not in PROTOCOLS:
            raise ValueError(f"scoring protocol {protocol!r} is not one of {PROTOCOLS}")
        if n < 1:
            raise ValueError(f"a pass needs at least 1 item, got {n}")
        self._fixed: np.ndarray | None = None  # an exact protocol's items: no draw
        self._population: int | np.ndarray = size  # what a uniform draw picks from
        self._top: np.ndarray | None = None  # the top-and-random protocols' fixed part
        self._count = 0  # how many items the random draw takes
        if universe is not None:
            universe = np.asarray(universe, dtype=int)
            if protocol in EXACT_PROTOCOLS:
                self._fixed = np.sort(universe)
            elif protocol == Protocol.UNIFORM:
                self._population, self._count = np.sort(universe), min(n, len(universe))
            else:
                raise _no_universe(protocol)
            return
        if protocol == Protocol.ALL:
            self._fixed = np.arange(size)
            return
        if protocol == Protocol.RECALL_FREE:
            order = ranks(x if strength is None else strength)
            self._fixed = np.sort(order[n_shown:])
            return
        n = min(n, size)
        if protocol == Protocol.UNIFORM:
            self._count = n
            return
        order = ranks(x)
        if protocol == Protocol.TOP_AND_RANDOM:
            top = order[: n // 2]
            excluded = set(top.tolist())
        else:  # held out: the odd ranks of the top; nothing the explainer saw may come in at random
            top = heldout_top(x, n // 2)
            excluded = set(order[: 2 * max(n_shown, n // 2)].tolist())
        self._top = top
        self._population = outside(size, excluded)  # `draw_outside`'s pool
        self._count = min(n - len(top), len(self._population))

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """The items of one pass (a new array each time)."""
        if self._fixed is not None:
            return self._fixed.copy()
        if self._top is None:  # uniform
            return rng.choice(self._population, size=self._count, replace=False)
        # `draw_outside`: with nothing to draw, ``rng`` is not touched.
        drawn = (
            rng.choice(self._population, size=self._count, replace=False) if self._count else np.array([], dtype=int)
        )
        picked = np.concatenate([self._top, drawn])
        return rng.permutation(picked.astype(int))


def draw_pool(
    protocol: str,
    values: np.ndarray,
    n: int,
    *,
    n_shown: int = 25,
    strength: np.ndarray | None = None,
    universe: np.ndarray | None = None,
) -> np.ndarray:
    """Every item a pass of `select` (same arguments) can pick, ascending: what a score can correlate on.

    Checked before any LLM call (`vse.method.score.check_scorable`): when these items are fewer than 2
    or all of one value, no pass can say anything about an explanation, however often it is redrawn.
    """
    x = as_finite_1d(values, "values")
    size = len(x)
    if protocol not in PROTOCOLS:
        raise ValueError(f"scoring protocol {protocol!r} is not one of {PROTOCOLS}")
    if universe is not None:
        if protocol not in (*EXACT_PROTOCOLS, Protocol.UNIFORM):
            raise _no_universe(protocol)
        return np.sort(np.asarray(universe, dtype=int))
    if protocol == Protocol.RECALL_FREE:
        return np.sort(ranks(x if strength is None else strength)[n_shown:])
    if protocol == Protocol.TOP_AND_RANDOM_HELDOUT:
        n = min(n, size)
        excluded = ranks(x)[: 2 * max(n_shown, n // 2)]
        return np.union1d(heldout_top(x, n // 2), outside(size, excluded.tolist()))
    return np.arange(size)  # all, uniform, top-and-random: any item


def _no_universe(protocol: str) -> ValueError:
    return ValueError(f"scoring protocol {protocol!r} cannot be limited to a set of items (use recall-free or uniform)")
