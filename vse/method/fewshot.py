"""Few-shot selection: the hand-labelled neurons a prompt shows as worked examples.

Each layer with hand-labelled neurons (vse/fewshot/) uses its own; any other layer uses those of
`FEWSHOT_FALLBACK`. Which of their pairs are shown is drawn later: by the explainer
(`vse.method.explain.top_examples`) or the scorer (`vse.method.score.fewshot_examples`).
"""

from __future__ import annotations

from collections.abc import Mapping

from vse.core.target import neuron_id, parse_neuron_id, split_layer
from vse.core.vocab import Polarity
from vse.data.loader import fewshot_explanations, load_target
from vse.method.explain import FewShotNeuron

#: Layers with hand-labelled few-shot neurons (vse/fewshot/), and the one used for any other layer.
FEWSHOT_LAYERS = {("efficientnet_lite0", "_conv_head"), ("efficientnet_lite0", "_blocks.15")}
FEWSHOT_FALLBACK = ("efficientnet_lite0", "_conv_head")


def fewshot_neurons(
    neuron: str, kind: str, polarity: str = Polarity.POSITIVE, *, next_explanations: Mapping[int, str] | None = None
) -> list[FewShotNeuron]:
    """The layer's hand-labelled few-shot neurons for `kind`, seen with the same polarity handling.

    Their explanations describe what drives them up, so negative targets still see them positive;
    signed targets see them signed (their explanations then say nothing of the negatives).
    """
    model, layer, _ = parse_neuron_id(neuron)
    layer, _feature = split_layer(layer)  # a direction's or an SAE latent's few-shot neurons: its layer's channels
    shown = Polarity.BOTH if polarity == Polarity.BOTH else Polarity.POSITIVE
    if (model, layer) not in FEWSHOT_LAYERS:
        # No hand-labelled neurons for this layer: EfficientNet-Lite0's last hidden layer's serve
        # as worked examples (from the fixtures). They show the format and the kind of answer;
        # they need not come from the same network.
        model, layer = FEWSHOT_FALLBACK
    return [
        FewShotNeuron(
            load_target(neuron_id(model, layer, unit), kind, shown, next_explanations=next_explanations), text
        )
        for unit, text in fewshot_explanations(model, layer, kind)
    ]
