"""Prompt builders: explain / simulate x four pair kinds, as plain text and as chat messages.

The prompts follow the paper's structure (App. D), which itself follows Bills et al. (2023): a short
instruction, then a few hand-labelled neurons as worked examples, then the target neuron. Every
prompt here is *plain text* for the completions endpoint: with a small local model, few-shot text
that the model simply continues keeps the format far better than a chat exchange, and the exact
bytes of a prompt are easy to test and to match in a recorded cassette.

Conventions shared by all families (kept from the paper so results stay comparable):
- a list of pairs is wrapped in ``<start>`` / ``<end>`` lines, one ``text<TAB>value`` pair a line;
- values are whole numbers 0..10 (or -10..10 for the signed variant, App. C.3.2);
- an explanation always completes the sentence "the main thing this neuron does is find ...".

The builders take plain data (strings and ints) and return strings: no NumPy, no LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vse.core.target import Pair
from vse.core.vocab import Kind

#: Every explanation completes this sentence; the explain prompt ends with it.
EXPLANATION_PREFIX = "the main thing this neuron does is find"
#: Written where the simulator has to fill in a value (list layout).
UNKNOWN = "unk"
TAB = "\t"


@dataclass(frozen=True)
class Example:
    """A hand-labelled few-shot neuron.

    name: how the prompt calls the neuron (its unit index, as the paper does).
    pairs: the pairs shown for it, already selected, ordered and scaled.
    explanation: what completes "the main thing this neuron does is find" (no leading space,
        no final full stop needed).
    """

    name: str
    pairs: tuple[Pair, ...]
    explanation: str


@dataclass(frozen=True)
class KindWording:
    """Wording of one feature kind: what the texts are and what the values mean."""

    key: str
    item: str  # what one text is, in the instruction ("class", "image description", ...)
    value: str  # "weight" or "activation"
    header: str  # the line above a list of pairs
    explain_task: str
    simulate_task: str


_WEIGHT_CONTEXT = (
    "We are looking at single units (neurons) inside a network that classifies photographs. "
    "Each unit responds to something it sees in a picture and, through its outgoing weights, "
    "makes some of the network's answers more likely."
)
_IMAGE_CONTEXT = (
    "We are looking at single units (neurons) inside a network that looks at photographs. "
    "Each unit responds to something particular that it sees in a picture."
)
_NEAR_OBJECT_HINT = (
    "These are photographs, so what they share may be something usually seen next to the "
    "objects (water next to fish) rather than the objects themselves."
)

KIND_WORDING: dict[Kind, KindWording] = {
    Kind.WEIGHT_LABEL: KindWording(
        key=Kind.WEIGHT_LABEL,
        item="class",
        value="weight",
        header="Weights:",
        explain_task=(
            f"{_WEIGHT_CONTEXT} For each unit you see the classes it supports most, one per line "
            "as class<tab>weight. {scale} Say in one sentence what the unit is looking for: the "
            f"thing most of its classes have in common, not a list of them. {_NEAR_OBJECT_HINT}"
        ),
        simulate_task=(
            f"{_WEIGHT_CONTEXT} From a short explanation of a unit, guess how strongly it supports "
            "each class. The link may come from what is usually seen together with an object "
            "(water next to fish), not only from the object. {scale} Many weights are 0."
        ),
    ),
    Kind.WEIGHT_CLIP: KindWording(
        key=Kind.WEIGHT_CLIP,
        item="concept",
        value="weight",
        header="Weights:",
        explain_task=(
            f"{_WEIGHT_CONTEXT} Here the answers are the units of the next layer, each named by a "
            "one-word concept. For each unit you see the concepts it feeds most, one per line as "
            "concept<tab>weight. {scale} Say in one sentence what the unit is looking for: the "
            f"thing most of its concepts have in common, not a list of them. {_NEAR_OBJECT_HINT}"
        ),
        simulate_task=(
            f"{_WEIGHT_CONTEXT} Here the answers are the units of the next layer, each named by a "
            "one-word concept. From a short explanation of a unit, guess how strongly it feeds "
            "each concept. {scale} Many weights are 0."
        ),
    ),
    Kind.WEIGHT_EXPLANATION: KindWording(
        key=Kind.WEIGHT_EXPLANATION,
        item="description",
        value="weight",
        header="Weights:",
        explain_task=(
            f"{_WEIGHT_CONTEXT} Here the answers are the units of the next layer, each described by "
            "a short sentence. For each unit you see the descriptions of the next-layer units it "
            "feeds most, one per line as description<tab>weight. {scale} Say in one sentence what "
            f"the unit is looking for: the thing most of the descriptions share, not a list of them."
        ),
        simulate_task=(
            f"{_WEIGHT_CONTEXT} Here the answers are the units of the next layer, each described by "
            "a short sentence. From a short explanation of a unit, guess how strongly it feeds each "
            "described unit. {scale} Many weights are 0."
        ),
    ),
    Kind.CAPTION_ACTIVATION: KindWording(
        key=Kind.CAPTION_ACTIVATION,
        item="image description",
        value="activation",
        header="Activations:",
        explain_task=(
            f"{_IMAGE_CONTEXT} For each unit you see descriptions of the images it responds to "
            "most, one per line as description<tab>activation. {scale} Say in one sentence what "
            "the unit is looking for, in your own words rather than by listing the descriptions."
        ),
        simulate_task=(
            f"{_IMAGE_CONTEXT} From a short explanation of a unit, guess how strongly it responds "
            "to each image, given the image's description. {scale} Most activations are 0."
        ),
    ),
}


def get_kind(key: str) -> KindWording:
    try:
        return KIND_WORDING[key]
    except KeyError:
        raise ValueError(f"unknown feature kind {key!r}; known: {', '.join(KIND_WORDING)}") from None


def _scale_sentence(kind: KindWording, signed: bool) -> str:
    if signed:
        return (
            f"Each {kind.value} is a whole number from -10 to 10: positive numbers mean the unit "
            "pushes towards it, negative numbers mean it pushes against it, 0 means no link."
        )
    return (
        f"Each {kind.value} is a whole number from 0 to 10: 0 means no link and the higher the "
        "number, the stronger the match."
    )


def _clean(text: str) -> str:
    """A text shown inside a list must not break the list's line/tab format."""
    return " ".join(text.replace(TAB, " ").split())


def _pairs_block(pairs: Sequence[Pair], *, hide_values: bool = False) -> str:
    lines = [f"{_clean(p.text)}{TAB}{UNKNOWN if hide_values else p.value}" for p in pairs]
    return "<start>\n" + "".join(line + "\n" for line in lines) + "<end>\n"


def _explanation_line(name: str, explanation: str | None) -> str:
    line = f"Explanation of neuron {name} behavior: {EXPLANATION_PREFIX}"
    if explanation is None:
        return line
    return f"{line} {explanation.strip().rstrip('.')}.\n"


# ----------------------------------------------------------------------------- explain


def explain_prompt(
    kind_key: str, examples: Sequence[Example], name: str, pairs: Sequence[Pair], *, signed: bool = False
) -> str:
    """The prompt whose continuation is the target neuron's explanation.

    Each neuron's block: its name, its pairs, then the explanation sentence. The target's block
    ends right after "...the main thing this neuron does is find", so the model writes the rest.
    """
    kind = get_kind(kind_key)
    parts = [kind.explain_task.format(scale=_scale_sentence(kind, signed)), "\n\n"]
    for ex in examples:
        parts += [
            f"Neuron {ex.name}\n{kind.header}\n",
            _pairs_block(ex.pairs),
            _explanation_line(ex.name, ex.explanation),
            "\n",
        ]
    parts += [f"Neuron {name}\n{kind.header}\n", _pairs_block(pairs), _explanation_line(name, None)]
    return "".join(parts)


def parse_explanation(completion: str) -> str:
    """The explanation from the model's continuation: the first line, trimmed, no final stop.

    Raises ValueError when nothing usable is left, so the caller can retry and record it.
    """
    first = completion.strip().split("\n", 1)[0].strip()
    first = first.split("<end>", 1)[0].strip().rstrip(".").strip()
    if not first:
        raise ValueError(f"empty explanation in reply {completion[:80]!r}")
    return first


# ----------------------------------------------------------------------------- simulate


def _simulate_head(kind: KindWording, signed: bool) -> str:
    return kind.simulate_task.format(scale=_scale_sentence(kind, signed)) + "\n\n"


def _neuron_head(kind: KindWording, name: str, explanation: str) -> str:
    return f"Neuron {name}\n{_explanation_line(name, explanation)}{kind.header}\n"


def simulate_list_prompt(
    kind_key: str,
    examples: Sequence[Example],
    name: str,
    explanation: str,
    texts: Sequence[str],
    *,
    signed: bool = False,
) -> str:
    """The paper's layout: each neuron's texts with ``unk`` values, then the same list filled in.

    The target block ends after the opening ``<start>`` of the filled list, so the model writes
    all values in one reply.
    """
    kind = get_kind(kind_key)
    parts = [_simulate_head(kind, signed)]
    for ex in examples:
        parts += [
            _neuron_head(kind, ex.name, ex.explanation),
            _pairs_block(ex.pairs, hide_values=True),
            "\n",
            _pairs_block(ex.pairs),
            "\n",
        ]
    target = [Pair(t, 0) for t in texts]
    parts += [_neuron_head(kind, name, explanation), _pairs_block(target, hide_values=True), "\n<start>\n"]
    return "".join(parts)


def simulate_one_prefix(
    kind_key: str, examples: Sequence[Example], name: str, explanation: str, *, signed: bool = False
) -> str:
    """The part of a one-item prompt that is the same for every item of the target.

    Few-shot blocks show only the filled list (no ``unk`` list), so the target's "<start>" line
    is followed by one text and a tab, exactly like the lines above it. Keeping this prefix
    byte-identical across items lets the server reuse its cache: each call reads only the item.
    """
    kind = get_kind(kind_key)
    parts = [_simulate_head(kind, signed)]
    for ex in examples:
        parts += [_neuron_head(kind, ex.name, ex.explanation), _pairs_block(ex.pairs), "\n"]
    parts += [_neuron_head(kind, name, explanation), "<start>\n"]
    return "".join(parts)


def simulate_one_prompt(prefix: str, text: str) -> str:
    """A one-item prompt: the shared prefix, then the item and a tab; the next token is the value."""
    return f"{prefix}{_clean(text)}{TAB}"


def simulate_echo_prompt(
    kind_key: str,
    examples: Sequence[Example],
    name: str,
    explanation: str,
    texts: Sequence[str],
    *,
    placeholder: int = 0,
    signed: bool = False,
) -> str:
    """The list layout with the target's filled list written out with a placeholder value.

    Sent with ``echo`` and prompt logprobs, every value slot is scored in one forward pass: the
    distribution at a slot is what the model expects there given everything before it. The
    placeholder only conditions later slots; 0 is the most common true value, so it biases least.
    """
    prompt = simulate_list_prompt(kind_key, examples, name, explanation, texts, signed=signed)
    return prompt + "".join(f"{_clean(t)}{TAB}{placeholder}\n" for t in texts) + "<end>\n"


# ----------------------------------------------------------------------------- chat forms
#
# The same families as chat messages for endpoints that only speak /chat/completions: the
# instruction is the system message, each few-shot neuron is one user/assistant exchange (the
# user shows what the model is given, the assistant answers as it should), and the target comes
# last as a user message. The blocks inside the messages are the plain-text blocks above, so the
# two forms show the model the same facts.

#: Name the simulate prompts give the target neuron. It is the same for every neuron, so a
#: prediction depends on the explanation and the item alone and can be shared between neurons
#: (the prediction store reads one explanation's predictions for every neuron's items).
TARGET_NAME = "X"

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


def _msg(role: str, content: str) -> Message:
    return {"role": role, "content": content}


def explain_messages(
    kind_key: str, examples: Sequence[Example], name: str, pairs: Sequence[Pair], *, signed: bool = False
) -> list[Message]:
    """Chat form of `explain_prompt`: the assistant answers with the whole explanation sentence."""
    kind = get_kind(kind_key)
    system = (
        kind.explain_task.format(scale=_scale_sentence(kind, signed))
        + f' Answer with one sentence that starts "{EXPLANATION_PREFIX}".'
    )
    messages = [_msg("system", system)]
    for ex in examples:
        messages += [
            _msg("user", f"Neuron {ex.name}\n{kind.header}\n" + _pairs_block(ex.pairs)),
            _msg("assistant", f"{EXPLANATION_PREFIX} {ex.explanation.strip().rstrip('.')}."),
        ]
    messages.append(_msg("user", f"Neuron {name}\n{kind.header}\n" + _pairs_block(pairs)))
    return messages


def parse_chat_explanation(reply: str) -> str:
    """The explanation from a chat reply: the sentence without the shared prefix (if repeated)."""
    text = reply.strip()
    low = text.casefold()
    for lead in (EXPLANATION_PREFIX, "explanation:", f"explanation of neuron {TARGET_NAME.casefold()} behavior:"):
        at = low.find(lead)
        if at != -1 and at < 40:
            text, low = text[at + len(lead) :].strip(), low[at + len(lead) :].strip()
    return parse_explanation(text.lstrip(":").strip())


def _chat_simulate_system(kind: KindWording, signed: bool, *, one: bool) -> str:
    task = kind.simulate_task.format(scale=_scale_sentence(kind, signed))
    if one:
        return task + f" You are shown one {kind.item} at a time: answer with its {kind.value} alone, a whole number."
    return task + " Answer by copying the list with every unk replaced by a whole number."


def simulate_one_messages(
    kind_key: str, examples: Sequence[Example], explanation: str, text: str, *, signed: bool = False
) -> list[Message]:
    """Chat form of the one-item simulation: few-shot neurons as item-by-item exchanges.

    Each few-shot neuron's first user message carries its explanation and its first item; every
    further item is one user/assistant exchange answered by the value alone. The target's
    explanation and item come last, so the first token of the reply is the value. Everything
    before the target's item is the same for every item (the server's prefix cache keeps it).
    """
    kind = get_kind(kind_key)
    messages = [_msg("system", _chat_simulate_system(kind, signed, one=True))]
    for ex in examples:
        for i, pair in enumerate(ex.pairs):
            head = _explanation_line(ex.name, ex.explanation) if i == 0 else ""
            messages += [_msg("user", head + _clean(pair.text)), _msg("assistant", str(pair.value))]
    messages.append(_msg("user", _explanation_line(TARGET_NAME, explanation) + _clean(text)))
    return messages


def simulate_list_messages(
    kind_key: str, examples: Sequence[Example], explanation: str, texts: Sequence[str], *, signed: bool = False
) -> list[Message]:
    """Chat form of `simulate_list_prompt`: the assistant answers with the filled list."""
    kind = get_kind(kind_key)
    messages = [_msg("system", _chat_simulate_system(kind, signed, one=False))]
    for ex in examples:
        messages += [
            _msg("user", _neuron_head(kind, ex.name, ex.explanation) + _pairs_block(ex.pairs, hide_values=True)),
            _msg("assistant", _pairs_block(ex.pairs)),
        ]
    target = [Pair(t, 0) for t in texts]
    messages.append(_msg("user", _neuron_head(kind, TARGET_NAME, explanation) + _pairs_block(target, hide_values=True)))
    return messages
