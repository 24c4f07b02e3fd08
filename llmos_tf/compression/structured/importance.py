"""Which heads and feed-forward neurons matter: gradient × weight on training data (Michel et al. 2019).

Michel et al. ("Are Sixteen Heads Really Better than One?") give every head a
mask variable ``ξ_h`` multiplying its output and score it by the loss's
sensitivity ``|∂L/∂ξ_h|`` at ``ξ = 1``. A head's output enters the model only
through its slice of the attention output projection ``W_o[h]``
(``[key_dim, hidden]``), so scaling the head by ``ξ_h`` is scaling that slice, and

    ∂L/∂ξ_h = Σ W_o[h] ⊙ ∂L/∂W_o[h]          (gradient × weight)

The same holds for a feed-forward neuron ``j`` and row ``j`` of the output
``Dense`` kernel. One backward pass per batch therefore scores every head and
neuron. Scores are accumulated as ``|batch gradient|`` over ``batches`` training
batches (the paper takes the absolute value per example; per batch is the
affordable approximation), then divided by their layer's L2 norm, as the paper
does, so that layers compare on one scale. :func:`lowest` then removes the
globally lowest ones, keeping at least one head and one neuron per layer.

Example::

    scores = importance(model, dataset, batches=32, loss=run_loss)
    keep = lowest(scores.heads, 0.25)        # {layer: kept head indices}
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.compression.structured.surgery import encoder_of
from llmos_tf.errors import ConfigError


@dataclass
class Importance:
    heads: list[np.ndarray]  # per layer, [heads], normalised per layer
    neurons: list[np.ndarray]  # per layer, [ffn units], normalised per layer
    batches: int


def importance(model: tf_keras.Model, dataset: tf.data.Dataset, *, batches: int, loss) -> Importance:
    """Head and neuron scores of ``model`` on ``batches`` (inputs, labels) batches of ``dataset``."""
    if batches < 1:
        raise ConfigError(f"--importance_batches: expected a positive number, got {batches}")
    blocks = encoder_of(model).transformer_layers
    outputs = [b.attention._output_dense.kernel for b in blocks]  # [heads, key_dim, hidden]
    ffn = [b.output_dense.kernel for b in blocks]  # [units, hidden]

    @tf.function(reduce_retracing=True)
    def scores(inputs, labels):
        with tf.GradientTape() as tape:
            value = loss(labels, model(inputs, training=False))
        grads = tape.gradient(value, outputs + ffn)
        heads = [tf.abs(tf.reduce_sum(w * g, axis=[1, 2])) for w, g in zip(outputs, grads[:len(outputs)])]
        units = [tf.abs(tf.reduce_sum(w * g, axis=1)) for w, g in zip(ffn, grads[len(outputs):])]
        return heads, units

    head_total = [np.zeros(w.shape[0]) for w in outputs]
    unit_total = [np.zeros(w.shape[0]) for w in ffn]
    seen = 0
    for inputs, labels in dataset.take(batches):
        heads, units = scores(inputs, labels)
        for total, s in zip(head_total + unit_total, list(heads) + list(units)):
            total += s.numpy()
        seen += 1
    norm = lambda s: s / max(float(np.linalg.norm(s)), 1e-12)  # noqa: E731
    return Importance([norm(s) for s in head_total], [norm(s) for s in unit_total], seen)


def lowest(scores: list[np.ndarray], fraction: float) -> dict[int, list[int]]:
    """Keep-lists per layer after removing ``fraction`` of all units (lowest score first, globally),
    never the last unit of a layer."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"expected a fraction between 0 and 1 (exclusive), got {fraction}")
    total = sum(len(s) for s in scores)
    to_remove = int(round(fraction * total))
    order = sorted(((float(v), layer, unit) for layer, s in enumerate(scores) for unit, v in enumerate(s)))
    left = [len(s) for s in scores]
    removed: set[tuple[int, int]] = set()
    for _, layer, unit in order:
        if len(removed) >= to_remove:
            break
        if left[layer] > 1:
            removed.add((layer, unit))
            left[layer] -= 1
    return {layer: [u for u in range(len(s)) if (layer, u) not in removed] for layer, s in enumerate(scores)}
