"""Integrated gradients over the token-embedding output, aggregated from word pieces to words.

Why the embedding output: token ids are discrete, so the path from a baseline to
the input is drawn in embedding space (Sundararajan et al., 2017). The baseline
is the padding embedding (id 0) at every word-piece position; ``[CLS]``/``[SEP]``
keep their own embedding (their attribution is 0) and the padding mask, the
positions and the segments stay those of the input, so only the words move.
``f`` is the probability of the explained class (the predicted one by default).

The path integral uses Gauss-Legendre quadrature with ``steps`` nodes (default 32):
at the same cost as the usual Riemann sum it is exact for polynomials of degree
``2*steps-1``, so completeness (``sum(attributions) == f(x) - f(baseline)``)
holds far tighter. All ``steps`` points, plus the input and the baseline
themselves (to report both probabilities), go through the model as ONE batch in
one graph call.

The split "embedding output | the rest" needs no model surgery: while the
model runs, the token ``Embedding`` layer's ``call`` is swapped for one that
returns ``baseline + alpha * (embedding - baseline)`` and tells the gradient
tape to watch it. That works for a tf_keras model and for an int8 /
fused-LSTM :class:`~llmos_tf.compression.int8_weights.QuantizedModel` alike
(whose own swap of the embedding call is wrapped, not replaced), in eager code
and inside a SavedModel signature (plain TF ops only).

Example::

    explainer = TextExplainer(tokenizer, model, vocabulary, max_length=64)
    out = explainer(tf.constant(["a wonderful film"]))
    out["words"], out["attributions"]   # [1, W] strings, [1, W] float32 (padded with "" / 0)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras

DEFAULT_STEPS = 32
SPECIAL_TOKENS = ("[CLS]", "[SEP]")  # kept as they are in the baseline (never attributed)
SUFFIX_INDICATOR = "##"  # keras-hub / BERT WordPiece continuation prefix


def quadrature(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes in (0, 1) and their weights (summing to 1) for ``steps`` points."""
    if int(steps) < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    nodes, weights = np.polynomial.legendre.leggauss(int(steps))
    return ((nodes + 1.0) / 2.0).astype(np.float32), (weights / 2.0).astype(np.float32)


def token_embedding_layer(model: Any) -> tf_keras.layers.Embedding:
    """The layer whose output is attributed: BERT's ``token_embedding``, else the BiLSTM's ``embedding``."""
    keras_model = getattr(model, "_keras_call", None)
    keras_model = getattr(keras_model, "__self__", model)  # a QuantizedModel holds its Keras model's bound __call__
    found: dict[str, Any] = {}
    for layer in keras_model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, tf_keras.layers.Embedding) and layer.name in ("token_embedding", "embedding"):
            found.setdefault(layer.name, layer)
    layer = found.get("token_embedding") or found.get("embedding")
    if layer is None:
        raise ValueError(f"{getattr(keras_model, 'name', model)}: no token embedding layer (named 'token_embedding' or 'embedding') to attribute")
    return layer


def vocabulary_of(tokenizer: Any) -> list[str]:
    """The word-piece vocabulary behind a run's tokenizer (keras-hub WordPiece or :class:`BertTokenIds`)."""
    for candidate in (tokenizer, getattr(tokenizer, "encoder", None)):
        if candidate is None:
            continue
        vocabulary = getattr(candidate, "vocabulary", None)
        if isinstance(vocabulary, (list, tuple)) and vocabulary:
            return [str(v) for v in vocabulary]
        if hasattr(candidate, "get_vocabulary"):
            return [str(v) for v in candidate.get_vocabulary()]
    raise ValueError(f"{type(tokenizer).__name__}: cannot find its vocabulary")


@contextlib.contextmanager
def _interpolating(layer, baseline_ids: tf.Tensor, alpha: tf.Tensor, tape: tf.GradientTape, captured: dict) -> Iterator[None]:
    """While the model runs: ``layer`` returns the IG path point, watched by ``tape`` (see module doc)."""
    had_own = "call" in vars(layer)
    original = layer.call  # the layer's own call, or the one a QuantizedModel installed (dequantized rows)

    @tf.autograph.experimental.do_not_convert
    def call(inputs, *args, **kwargs):
        embedded = tf.cast(original(inputs, *args, **kwargs), tf.float32)
        base = tf.cast(original(baseline_ids, *args, **kwargs), tf.float32)
        delta = embedded - base
        point = base + alpha[:, None, None] * delta
        tape.watch(point)
        captured["point"], captured["delta"] = point, delta
        return tf.cast(point, layer.compute_dtype)

    object.__setattr__(layer, "call", call)
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(layer, "call", original)
        else:
            object.__delattr__(layer, "call")


def _run_model(model: Any, inputs: Any, layer, baseline_ids, alpha, tape, captured) -> tf.Tensor:
    quantized = getattr(model, "_dequantized", None)
    if quantized is not None:  # swap after the QuantizedModel's own swaps, so ours wraps its dequantized rows
        with quantized(), _interpolating(layer, baseline_ids, alpha, tape, captured):
            return model._keras_call(inputs, training=False)
    with _interpolating(layer, baseline_ids, alpha, tape, captured):
        return model(inputs, training=False)


def path_integrated_gradients(model: Any, token_ids: tf.Tensor, objective: Callable[[tf.Tensor], tf.Tensor], *, layer=None,
                              features: Callable | None = None, special_ids: Sequence[int] = (),
                              steps: int = DEFAULT_STEPS) -> dict[str, tf.Tensor]:
    """IG of any scalar-per-row ``objective`` of the model's output, with respect to its token-embedding output.

    ``objective`` maps the model's outputs reshaped to ``[rows, B, ...]`` (row ``r``: path point ``r``;
    row ``rows - 2`` is the input itself, ``rows - 1`` the baseline) to values ``[rows, B]``; it may read
    the input row to choose what to explain (the predicted class, the decoded tags). Returns
    ``attributions [B, T]`` (summed over the embedding dimension), ``value``/``baseline_value [B]`` (what the
    attributions add up to the difference of) and ``outputs``/``baseline_outputs`` (the model's answers).
    """
    layer = layer or token_embedding_layer(model)
    token_ids = tf.cast(token_ids, tf.int32)
    alphas, weights = quadrature(steps)
    alphas = tf.constant(np.concatenate([alphas, [1.0, 0.0]]), tf.float32)  # + the input and the baseline
    weights = tf.constant(np.concatenate([weights, [0.0, 0.0]]), tf.float32)
    rows = int(steps) + 2
    batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    keep = tf.zeros_like(token_ids, tf.bool)
    for special in special_ids:
        keep |= tf.equal(token_ids, int(special))
    baseline_ids = tf.where(keep, token_ids, tf.zeros_like(token_ids))
    ids = tf.tile(token_ids, [rows, 1])  # row r*B + b: path point r of text b
    alpha = tf.repeat(alphas, batch)
    captured: dict[str, tf.Tensor] = {}
    with tf.GradientTape() as tape:
        inputs = features(ids) if features is not None else ids
        outputs = tf.cast(_run_model(model, inputs, layer, tf.tile(baseline_ids, [rows, 1]), alpha, tape, captured), tf.float32)
        outputs = tf.reshape(outputs, tf.concat([[rows, batch], tf.shape(outputs)[1:]], axis=0))
        values = objective(outputs)  # [rows, B]
        total = tf.reduce_sum(values * weights[:, None])
    grads = tape.gradient(total, captured["point"])  # already weighted by the quadrature
    depth = tf.shape(grads)[-1]
    grads = tf.reduce_sum(tf.reshape(grads, [rows, batch, length, depth]), axis=0)
    delta = tf.reshape(captured["delta"], [rows, batch, length, depth])[0]
    return {
        "attributions": tf.reduce_sum(grads * delta, axis=-1),
        "value": values[rows - 2],
        "baseline_value": values[rows - 1],
        "outputs": outputs[rows - 2],
        "baseline_outputs": outputs[rows - 1],
    }


def integrated_gradients(model: Any, token_ids: tf.Tensor, *, layer=None, features: Callable | None = None,
                         special_ids: Sequence[int] = (), target: tf.Tensor | None = None,
                         steps: int = DEFAULT_STEPS) -> dict[str, tf.Tensor]:
    """IG of ``model``'s class probability with respect to its token-embedding output.

    ``token_ids`` int ``[B, T]`` (0 = padding); ``features`` maps ids to the model's
    inputs (BERT's dict). ``target`` int ``[B]``: the class to explain (default, or a negative
    entry: the predicted one). Returns ``attributions [B, T]`` (summed over the embedding
    dimension), ``probabilities``/``baseline_probabilities [B, C]`` and ``target [B]``.
    """
    chosen: dict[str, tf.Tensor] = {}

    def class_probability(probabilities: tf.Tensor) -> tf.Tensor:
        rows = tf.shape(probabilities)[0]
        pick = tf.argmax(probabilities[rows - 2], axis=-1, output_type=tf.int32)  # the input row's prediction
        if target is not None:  # a negative target: the predicted class
            pick = tf.where(tf.cast(target, tf.int32) >= 0, tf.cast(target, tf.int32), pick)
        chosen["target"] = pick
        return tf.gather(probabilities, tf.tile(pick[None], [rows, 1]), batch_dims=2)  # [rows, B]

    out = path_integrated_gradients(model, token_ids, class_probability, layer=layer, features=features, special_ids=special_ids, steps=steps)
    return {
        "attributions": out["attributions"],
        "probabilities": out["outputs"],
        "baseline_probabilities": out["baseline_outputs"],
        "target": tf.cast(chosen["target"], tf.int64),
    }


def words_from_pieces(pieces: tf.Tensor, scores: tf.Tensor, valid: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Join ``##`` continuation pieces into words and sum their scores (plain TF ops, any batch).

    ``pieces`` string ``[B, T]``, ``scores`` float ``[B, T]``, ``valid`` bool ``[B, T]`` (pieces that
    belong to the text) → ``words`` string ``[B, W]`` and ``word_scores`` float32 ``[B, W]`` padded with ""/0.
    """
    valid = tf.cast(valid, tf.bool)
    continuation = tf.strings.regex_full_match(pieces, "##.+") & valid
    start = valid & ~continuation
    word_index = tf.maximum(tf.cumsum(tf.cast(start, tf.int32), axis=1) - 1, 0)
    batch = tf.shape(pieces)[0]
    width = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(start, tf.int32), axis=1)), 1)  # an empty batch: 1
    rows = tf.range(batch)[:, None]
    segments = tf.where(valid, rows * width + word_index, batch * width)  # invalid pieces go to one spare segment
    total = batch * width + 1
    text = tf.strings.regex_replace(pieces, "^##(.)", r"\1")
    words = tf.strings.unsorted_segment_join(text, segments, total)[:-1]
    word_scores = tf.math.unsorted_segment_sum(tf.cast(scores, tf.float32), segments, total)[:-1]
    return tf.reshape(words, [batch, width]), tf.reshape(word_scores, [batch, width])


@dataclass(frozen=True)
class _Held:
    """What :class:`TextExplainer` uses but must not save (a frozen dataclass is invisible to tf.Module tracking)."""

    tokenizer: Any
    model: Any
    layer: Any


class TextExplainer(tf.Module):
    """Raw strings → word-level integrated gradients of a classifier (what the ``explain`` signature serves).

    ``tokenizer`` maps strings to ragged ids (a run's own), ``model`` is the tf_keras
    classifier or its :class:`QuantizedModel`; ``features`` maps padded ids to the model's inputs.
    ``__call__(text, target=None)`` returns ``words``, ``attributions`` (word level), ``label``-free
    facts (``class_id``, ``probability``, ``baseline_probability``) and ``pieces``/``piece_attributions``.
    """

    def __init__(self, tokenizer, model, vocabulary: Sequence[str], max_length: int, features: Callable | None = None,
                 steps: int = DEFAULT_STEPS, name: str = "text_explainer"):
        super().__init__(name=name)
        # held untracked: the owner (a serving module) tracks tokenizer and model; tracking the Keras
        # embedding layer here would save its float table beside an int8 export's compact one
        self._held = _Held(tokenizer, model, token_embedding_layer(model))
        self._features = features
        self.max_length = int(max_length)
        self.steps = int(steps)
        self._graph = None
        vocabulary = list(vocabulary)
        self._special_ids = [vocabulary.index(t) for t in SPECIAL_TOKENS if t in vocabulary]
        self.pieces_table = tf.Variable(vocabulary, trainable=False, dtype=tf.string, name="explain_vocabulary")

    def token_ids(self, text: tf.Tensor) -> tf.Tensor:
        ids = self._held.tokenizer(text)[:, : self.max_length]
        dense = tf.cast(ids.to_tensor(default_value=0), tf.int32)
        return tf.pad(dense, [[0, 0], [0, tf.maximum(1 - tf.shape(dense)[1], 0)]])

    def __call__(self, text: tf.Tensor, target: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Explain ``text`` (string ``[B]``); ``target`` int ``[B]`` = the class to explain (default: predicted).

        Runs as a graph (the tokenizers are graph ops); inside another ``tf.function`` it is inlined."""
        text = tf.convert_to_tensor(text, tf.string)
        target = tf.fill(tf.shape(text), -1) if target is None else tf.cast(target, tf.int32)
        if tf.executing_eagerly():
            if self._graph is None:  # one trace for every batch size and target
                self._graph = tf.function(self.explain_graph, input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int32)])
            return self._graph(text, target)
        return self.explain_graph(text, target)

    def explain_graph(self, text: tf.Tensor, target: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        ids = self.token_ids(text)
        out = integrated_gradients(self._held.model, ids, layer=self._held.layer, features=self._features, special_ids=self._special_ids,
                                   target=target, steps=self.steps)
        valid = tf.not_equal(ids, 0)
        for special in self._special_ids:
            valid &= tf.not_equal(ids, special)
        pieces = tf.where(valid, tf.gather(self.pieces_table, ids), "")
        words, scores = words_from_pieces(pieces, out["attributions"], valid)
        probability = tf.gather(out["probabilities"], out["target"], batch_dims=1)
        return {
            "words": words,
            "attributions": scores,
            "pieces": pieces,
            "piece_attributions": out["attributions"] * tf.cast(valid, tf.float32),
            "class_id": out["target"],
            "probability": probability,
            "baseline_probability": tf.gather(out["baseline_probabilities"], out["target"], batch_dims=1),
            "probabilities": out["probabilities"],
        }
