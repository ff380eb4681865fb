"""The method's vocabulary, one StrEnum per concept.

Members are strings (``Method.WEIGHT_LABEL == "weight-label"``), so results, cassettes and command-line
options keep their plain spellings; the enums name the choices once and let a typo fail at import.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Method(StrEnum):
    """How an explanation is made (the rows of the paper's Table 1, plus Weight-Explanation)."""

    CAPTION_ACTIVATION = "caption-activation"
    WEIGHT_LABEL = "weight-label"
    WEIGHT_CLIP = "weight-clip"
    WEIGHT_EXPLANATION = "weight-explanation"
    CLIP_DISSECT = "clip-dissect"


class Kind(StrEnum):
    """Which (text, value) pairs a prompt shows: a feature kind of a neuron."""

    CAPTION_ACTIVATION = "caption-activation"
    WEIGHT_LABEL = "weight-label"
    WEIGHT_CLIP = "weight-clip"
    WEIGHT_EXPLANATION = "weight-explanation"


#: The kinds a neuron can be scored on (a weight-explanation target would need every next unit explained).
TARGET_KINDS: tuple[Kind, ...] = (Kind.CAPTION_ACTIVATION, Kind.WEIGHT_LABEL, Kind.WEIGHT_CLIP)
#: The kinds a live model gives from a folder of the user's images (`--probe`): weight-clip needs CLIP,
#: weight-explanation every next-layer unit explained first.
PROBE_KINDS: tuple[Kind, ...] = (Kind.CAPTION_ACTIVATION, Kind.WEIGHT_LABEL)


class Polarity(StrEnum):
    """Which side of the values is shown and scored."""

    POSITIVE = "positive"  # negatives become 0 (the paper's default)
    NEGATIVE = "negative"  # flipped to magnitudes (App. C.3.1)
    BOTH = "both"  # signed, -10..10 (App. C.3.2)


class Api(StrEnum):
    """The OpenAI-compatible endpoint a call goes to."""

    COMPLETIONS = "completions"
    CHAT = "chat"


class Mode(StrEnum):
    """How a simulator predicts values (`vse.method.simulators`)."""

    ONE = "one"  # one item a call, the expected value of the next token's digits (the paper's)
    LIST = "list"  # every item in one call, values generated
    LIST_LOGPROBS = "list-logprobs"  # every item in one call, values read from logprobs
    ECHO = "echo"  # one call, the prompt's placeholders scored (needs a server that echoes)
    EMBEDDING = "embedding"  # no LLM: the cosine of text embeddings


class Protocol(StrEnum):
    """Which items a simulation pass predicts (`vse.core.protocols`)."""

    UNIFORM = "uniform"
    TOP_AND_RANDOM = "top-and-random"
    TOP_AND_RANDOM_HELDOUT = "top-and-random-heldout"
    ALL = "all"
    RECALL_FREE = "recall-free"


class FeatureKind(StrEnum):
    """What a unit of a layer is besides a channel (`vse.core.target.Feature`): the prefix of its unit id."""

    SAE = "sae"  # a latent of a sparse autoencoder trained on the layer (`vse sae train`)
    DIRECTION = "dir"  # a vector in the layer's channel space (a concept vector, probe weights, a component)


class FewshotDraw(StrEnum):
    """When the few-shot neurons' pairs are drawn during a scoring run."""

    PER_RUN = "per-run"  # once per run: a one-item prediction depends on (explanation, item) only
    PER_PASS = "per-pass"  # again for every pass (the paper)


class Display(StrEnum):
    """Which of a target's top pairs an explanation prompt shows."""

    TOP = "top"  # the top pairs (the paper)
    HELDOUT = "heldout"  # every other rank, so the rest can be scored as unseen


class RankBy(StrEnum):
    """How a target's "top" pairs are ordered."""

    RAW = "raw"  # the raw activations or weights
    SCALED = "scaled"  # the 0..10 integers, ties by item index (what older recordings used)


class Pick(StrEnum):
    """How best of N picks among candidates on the held-in items (`vse.method.best_of.choose`)."""

    HELD_IN = "held-in"  # the best held-in score on the unit's own values (the paper's best of N, made fair)
    # the held-in score on the unit's own values minus the mean of its held-in scores on its nearest other units'
    # values (same items): rewards the sentence true of this unit and not of its neighbours
    SPECIFIC = "specific"


class FewshotStrategy(StrEnum):
    """How a few-shot neuron's pairs are picked (`vse.core.sampling.STRATEGIES`, App. B.2.1)."""

    TOP = "top"
    RANDOM = "random"
    RANDOM_50_50 = "random-50/50"
    RANDOM_75_25 = "random-75/25"
    RANDOM_90_10 = "random-90/10"
    HIGHEST_50_50 = "highest-50/50"
    HIGHEST_75_25 = "highest-75/25"
    HIGHEST_90_10 = "highest-90/10"


class UnitStatus(StrEnum):
    """What a `vse label` record says of its unit; a record without a status is a finished unit."""

    FAILED = "failed"  # the unit's work raised: nothing kept, retried by the next run
    EXPLAINED = "explained"  # explained but scoring failed: the explanations are kept, the next run scores them
    DEAD = "dead"  # constant values (e.g. never fires on the probe set): nothing to explain, no LLM call, not retried
    # explained, but the scoring protocol has nothing to correlate (e.g. every item the explainer did not see has
    # one value): the explanations are kept, the reason is given in words, not retried, not a failure
    UNSCORABLE = "unscorable"


class Unscorability(StrEnum):
    """Why a protocol cannot score a unit (`vse.method.score.Unscorable`); each has its own remedy."""

    CONSTANT = "constant"  # every item of the target has one value: the unit is dead on these items
    UNSEEN = "unseen"  # the items the explainer was not shown are fewer than 2, or all of one value
    SPLIT = "split"  # best of N: too few unseen items to split in halves, or a half all of one value
    DRAWS = "draws"  # random draws kept finding one value (a sparse unit, a sampled protocol)


#: The method a user's own explanation is recorded under: not a `Method` member, so that it is no
#: choice of ``--method`` (nothing generates it).
USER_METHOD = "user"

#: Protocols that score one fixed set of items in one exact pass (no sampling, no Algorithm 1 loop).
EXACT_PROTOCOLS: tuple[Protocol, ...] = (Protocol.ALL, Protocol.RECALL_FREE)


def choices(members: type[StrEnum] | Iterable[StrEnum]) -> tuple[str, ...]:
    """The plain spellings of an enum's members (or of some members, e.g. `TARGET_KINDS`), in order.

    For command-line choices and messages: `click.Choice` is given these strings, not the members (given
    members, click matches the members' *names*, ``WEIGHT_LABEL``, not their values).
    """
    return tuple(m.value for m in members)
