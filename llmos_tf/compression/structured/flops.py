"""Parameters and FLOPs per sentence: what structured compression removes, counted from the model's shapes.

FLOPs are counted as 2 per multiply-add of the matmuls (the work that
dominates on a CPU), at a given sentence length ``L`` in tokens (the report uses
the validation mean, ``[CLS]``/``[SEP]`` included):

* a BERT block with ``h`` heads of ``d`` dims, hidden ``H`` and ``I`` feed-forward units:
  ``2·L·H·h·d·4`` (query, key, value, output projections) + ``2·2·L²·h·d``
  (scores and weighted values) + ``2·2·L·H·I`` (feed-forward);
* the pooler ``2·H²`` once; a ``Dense`` ``2·in·out`` once per position it sees
  (``L`` for a token-level input, 1 for a pooled vector);
* a ``Bidirectional(LSTM)`` ``2 · 2·4·u·(in + u) · L``;
* embedding lookups, LayerNorm, softmax and activations are not counted.

Example::

    model_flops(run.model, 25.3)     # e.g. 1.2e9 for MiniLM-L6
    parameter_count(run.model)       # 22,713,986
"""
from __future__ import annotations

import numpy as np

from llmos_tf._tf import tf_keras
from llmos_tf.models.bert import BertEncoder, count_parameters


def parameter_count(model: tf_keras.Model) -> int:
    return count_parameters(model)


def encoder_flops(encoder: BertEncoder, length: float) -> float:
    from llmos_tf.compression.structured.surgery import block_shape

    L, H = float(length), float(encoder.hidden_dim)
    total = 0.0
    for block in encoder.transformer_layers:
        heads, key_dim, units = block_shape(block)
        width = heads * key_dim
        total += 2 * L * H * width * 4 + 2 * 2 * L * L * width + 2 * 2 * L * H * units
    return total + 2 * H * H


def _positions(layer, length: float) -> float:
    try:
        shape = layer.input_shape
    except (AttributeError, RuntimeError):
        return 1.0
    if isinstance(shape, list):
        shape = shape[0]
    return length if shape is not None and len(shape) >= 3 else 1.0


def model_flops(model: tf_keras.Model, length: float) -> float:
    """Matmul FLOPs of one sentence of ``length`` tokens through ``model`` (see the module docstring)."""
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, BertEncoder):
            total += encoder_flops(layer, length)
        elif isinstance(layer, tf_keras.Model):
            total += model_flops(layer, length)
        elif isinstance(layer, tf_keras.layers.Bidirectional):
            cell = layer.forward_layer.cell
            units = int(cell.units)
            inputs = int(cell.kernel.shape[0])
            gates = int(cell.kernel.shape[1]) // units
            total += 2 * 2 * gates * units * (inputs + units) * length
        elif isinstance(layer, tf_keras.layers.Dense) and getattr(layer, "kernel", None) is not None:
            total += 2 * float(layer.kernel.shape[0]) * float(layer.kernel.shape[1]) * _positions(layer, length)
    return float(total)


def mean_tokens(run, texts) -> float:
    """Mean number of tokens the model sees per text (special tokens included, truncated as in serving)."""
    from llmos_tf._tf import tf

    if not len(texts):
        return 0.0
    batch = tf.constant([str(t) for t in texts])
    if hasattr(run, "tokenizer"):  # a classifier run: its tokenizer
        ids = run.tokenizer()(batch)
    else:  # a tagger: its text encoder, unpadded ([CLS] and [SEP] counted, as the model sees them)
        ids = run.text_encoder()(batch, padded=False)
        ids = ids["token_ids"] if isinstance(ids, dict) else ids
    if hasattr(ids, "row_lengths"):
        lengths = ids.row_lengths().numpy()
    elif isinstance(ids, (list, tuple)):  # keras-hub tokenizers answer Python lists in eager mode
        lengths = np.array([len(row) for row in ids])
    else:
        lengths = np.full(len(texts), ids.shape[1])
    return float(np.minimum(lengths, run.max_length).mean())
