"""Rebuild a BERT classifier with fewer rows and columns: the model surgery of structured compression.

Unstructured pruning zeroes weights inside matrices of the same shape; here the
matrices themselves shrink, so the SavedModel is smaller before gzip and every
matmul is cheaper. One function, :func:`rebuild`, takes a trained classifier and
what to keep, all optional and indexed in *that* model:

* ``keep_tokens``: rows of the token-embedding table (a trimmed WordPiece vocabulary);
* ``keep_layers``: transformer blocks, in order;
* ``keep_heads[i]``: attention heads of block ``i``: the query/key/value
  ``EinsumDense`` kernels ``[hidden, heads, key_dim]`` and the output kernel
  ``[heads, key_dim, hidden]`` lose the other heads' slices;
* ``keep_neurons[i]``: feed-forward neurons of block ``i``: columns of the
  intermediate ``Dense`` kernel (and its bias), rows of the output ``Dense`` kernel.

A removed head or neuron contributes nothing, exactly as if its output were
multiplied by 0 (Michel et al. 2019's head mask): the rebuilt model equals the
dense model with those heads' output-projection slices and those neurons'
output rows zeroed. The new encoder is an ordinary
:class:`~llmos_tf.models.bert.BertEncoder` (per-layer ``layer_num_heads`` /
``layer_intermediate_dims``), so TF-MOT pruning, int8 export and TFLite work on it unchanged.

Example::

    small = rebuild(model, keep_layers=[0, 2, 4], keep_heads={0: [0, 3, 5]}, keep_neurons={1: range(768)})
    encoder_of(small).transformer_layers[0].attention._query_dense.kernel.shape   # (384, 3, 32)
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from llmos_tf._tf import tf_keras
from llmos_tf.errors import ConfigError
from llmos_tf.models.bert import BertEncoder, TransformerBlock


def encoder_of(model: tf_keras.Model) -> BertEncoder:
    """The :class:`BertEncoder` inside a classifier (structured compression needs one)."""
    for layer in model.layers:
        if isinstance(layer, BertEncoder):
            return layer
    raise ConfigError(f"model {model.name!r} has no BERT encoder: structured compression (--trim_vocabulary, --keep_layers, "
                      "--prune_heads, --prune_ffn) applies to BERT runs only")


def block_shape(block: TransformerBlock) -> tuple[int, int, int]:
    """(heads, key_dim, intermediate units) of a built block."""
    kernel = block.attention._query_dense.kernel  # [hidden, heads, key_dim]
    return int(kernel.shape[1]), int(kernel.shape[2]), int(block.intermediate_dense.kernel.shape[1])


def _indices(name: str, values: Sequence[int] | None, size: int) -> np.ndarray:
    if values is None:
        return np.arange(size)
    out = np.asarray(sorted(int(v) for v in values), np.int64)
    if out.size == 0:
        raise ConfigError(f"{name}: nothing would be kept")
    if out[0] < 0 or out[-1] >= size or len(np.unique(out)) != len(out):
        raise ConfigError(f"{name}: expected distinct indices in 0..{size - 1}, got {list(values)}")
    return out


def _block_weights(block: TransformerBlock, heads: np.ndarray, neurons: np.ndarray) -> list[np.ndarray]:
    """The block's weights (in ``block.weights`` order) with only ``heads`` and ``neurons`` left."""
    a = block.attention
    sliced = {}
    for dense in (a._query_dense, a._key_dense, a._value_dense):
        sliced[id(dense.kernel)] = dense.kernel.numpy()[:, heads, :]
        sliced[id(dense.bias)] = dense.bias.numpy()[heads, :]
    sliced[id(a._output_dense.kernel)] = a._output_dense.kernel.numpy()[heads, :, :]
    sliced[id(block.intermediate_dense.kernel)] = block.intermediate_dense.kernel.numpy()[:, neurons]
    sliced[id(block.intermediate_dense.bias)] = block.intermediate_dense.bias.numpy()[neurons]
    sliced[id(block.output_dense.kernel)] = block.output_dense.kernel.numpy()[neurons, :]
    return [sliced[id(w)] if id(w) in sliced else w.numpy() for w in block.weights]


def rebuild(model: tf_keras.Model, *, keep_tokens: Sequence[int] | None = None, keep_layers: Sequence[int] | None = None,
            keep_heads: Mapping[int, Sequence[int]] | None = None, keep_neurons: Mapping[int, Sequence[int]] | None = None
            ) -> tf_keras.Model:
    """A copy of ``model`` whose encoder keeps only what is given (see the module docstring); the rest of
    the model (pooling, classifier head) is cloned with its weights."""
    encoder = encoder_of(model)
    blocks = encoder.transformer_layers
    layers = _indices("--keep_layers", keep_layers, len(blocks))
    tokens = _indices("--trim_vocabulary", keep_tokens, encoder.vocabulary_size)
    heads, neurons = [], []
    for i in layers:
        n_heads, key_dim, units = block_shape(blocks[i])
        heads.append(_indices(f"heads of layer {i}", (keep_heads or {}).get(int(i)), n_heads))
        neurons.append(_indices(f"feed-forward neurons of layer {i}", (keep_neurons or {}).get(int(i)), units))
    key_dim = block_shape(blocks[0])[1]
    config = encoder.get_config()
    config.update(vocabulary_size=len(tokens), num_layers=len(layers), layer_num_heads=[len(h) for h in heads],
                  layer_intermediate_dims=[len(n) for n in neurons], key_dim=key_dim,
                  num_heads=max(len(h) for h in heads), intermediate_dim=max(len(n) for n in neurons))
    config.pop("trainable", None)
    small = BertEncoder(**config)
    emb = encoder.embeddings
    table = emb.token_embedding.embeddings
    small.embeddings.set_weights([table.numpy()[tokens] if w is table else w.numpy() for w in emb.weights])
    for new_block, i, h, n in zip(small.transformer_layers, layers, heads, neurons):
        new_block.set_weights(_block_weights(blocks[i], h, n))
    small.pooler.set_weights(encoder.pooler.get_weights())

    def clone(layer):
        if layer is encoder:
            return small
        return layer.__class__.from_config(layer.get_config())

    out = tf_keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, out.layers):
        if old is not encoder and old.weights:
            new.set_weights(old.get_weights())
    return out


def describe(model: tf_keras.Model) -> dict:
    """Vocabulary size and per-layer heads / feed-forward units (for the report's details)."""
    encoder = encoder_of(model)
    shapes = [block_shape(b) for b in encoder.transformer_layers]
    return {"vocabulary_size": encoder.vocabulary_size, "layers": len(shapes), "heads": [s[0] for s in shapes],
            "key_dim": shapes[0][1] if shapes else None, "ffn_units": [s[2] for s in shapes]}
