"""Serving modules: raw strings in, the DESIGN.md contract out.

The tokenizer travels inside the SavedModel (tensorflow-text ops via keras-hub),
so a TF Serving client sends plain text. Names are a contract with clients:

* classifier ``serving_default``: ``text`` string ``[None]`` →
  ``probabilities`` float32 ``[None, num_labels]``, ``label`` string ``[None]``,
  ``class_id`` int64 ``[None]``.

Every module also has two halves of that signature, exported as the
``preprocess`` and ``postprocess`` signatures: ``preprocess`` turns text into
the model's inputs (plus anything ``postprocess`` needs, such as the NER word
alignment), ``postprocess`` turns the model's ``probabilities`` into the
contract's outputs. A TFLite version (``model.tflite``, which cannot hold the
string ops of a tokenizer) is served as preprocess → TFLite → postprocess, so it
answers exactly like the SavedModel.
"""
from __future__ import annotations

from typing import Callable, Sequence

from llmos_tf._tf import tf, tf_keras
from llmos_tf.export.base import EXPLAIN, POSTPROCESS, PREPROCESS, TEXT_SPEC  # noqa: F401  (re-exported: signatures.PREPROCESS, .EXPLAIN)


def _named(ids_or_features) -> dict[str, tf.Tensor]:
    return dict(ids_or_features) if isinstance(ids_or_features, dict) else {"token_ids": ids_or_features}


# the sentence-embedding signature of BERT exports: text -> L2-normalised mean-pooled vector
ENCODE = "encode"
ENCODE_OUTPUT = "embedding"


def mean_pooled_unit_vectors(sequence: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
    """``[B, T, H]`` token vectors -> ``[B, H]`` unit vectors: the mean over unmasked positions, L2-normalised
    (sentence-transformers' pooling for all-MiniLM-L6-v2, so cosine similarity is a dot product)."""
    weights = tf.expand_dims(tf.cast(padding_mask, tf.float32), -1)
    total = tf.reduce_sum(tf.cast(sequence, tf.float32) * weights, axis=1)
    return tf.math.l2_normalize(total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0), axis=-1)


def sentence_encoder(model) -> Callable | None:
    """``features -> [B, H]`` sentence vectors from the BERT encoder inside a classifier, or None (no BERT encoder).

    ``model`` is a tf_keras classifier or a :class:`~llmos_tf.compression.int8_weights.QuantizedModel` around one;
    for the latter the encoder runs on the same dequantized int8/float16 weights as ``serving_default``, so an
    ``encode`` signature adds no weights to the SavedModel.
    """
    import contextlib

    from llmos_tf.models.bert import BertEncoder

    keras_model = getattr(getattr(model, "_keras_call", None), "__self__", model)
    encoder = next((layer for layer in getattr(keras_model, "layers", ()) if isinstance(layer, BertEncoder)), None)
    if encoder is None:
        return None
    dequantized = getattr(model, "_dequantized", contextlib.nullcontext)

    def vectors(features: dict[str, tf.Tensor]) -> tf.Tensor:
        with dequantized():
            sequence = encoder(features, training=False)["sequence_output"]
        return mean_pooled_unit_vectors(sequence, features["padding_mask"])

    return vectors




def _explainer(tokenizer, model, max_length: int, features):
    """The module's integrated-gradients explainer, or None when the model has no token embedding to attribute."""
    from llmos_tf.explain.attributions import TextExplainer, token_embedding_layer, vocabulary_of

    try:
        token_embedding_layer(model)
        vocabulary = vocabulary_of(tokenizer)
    except ValueError:
        return None
    return TextExplainer(tokenizer, model, vocabulary, max_length, features=features)


class ClassifierServingModule(tf.Module):
    """Wraps tokenizer + token-id classifier + label names into one servable."""

    def __init__(self, tokenizer, model: tf_keras.Model, label_names: Sequence[str], max_length: int, features: Callable | None = None):
        super().__init__(name="llmos_classifier")
        self.tokenizer = tokenizer
        self.model = model
        self.label_names = tf.constant(list(label_names), dtype=tf.string)
        self.max_length = int(max_length)
        self._features = features
        num_labels = len(label_names)
        self.postprocess = tf.function(self._postprocess, input_signature=[tf.TensorSpec([None, num_labels], tf.float32, name="probabilities")])
        if model is not None:  # without a model (a TFLite-only version) only the two halves exist
            self.serve = tf.function(self._serve, input_signature=[TEXT_SPEC])
        # a BERT classifier also exports `encode` (sentence embeddings); a closure, so nothing extra is tracked or saved
        self._sentence_vectors = sentence_encoder(model) if model is not None else None
        if self._sentence_vectors is not None:
            self.encode = tf.function(self._encode, input_signature=[TEXT_SPEC])
        # every classifier with a model also exports `explain` (integrated gradients, llmos_tf.explain.attributions)
        self.explainer = _explainer(tokenizer, model, max_length, features) if model is not None else None
        if self.explainer is not None:
            self.explain = tf.function(self._explain, input_signature=[TEXT_SPEC])

    def token_ids(self, text: tf.Tensor) -> tf.Tensor:
        ids = self.tokenizer(text)[:, : self.max_length]
        dense = ids.to_tensor(default_value=0)
        # an empty batch (or all-empty texts) still gets one masked column: models need a time step
        return tf.pad(dense, [[0, 0], [0, tf.maximum(1 - tf.shape(dense)[1], 0)]])

    def model_inputs(self, text: tf.Tensor):
        ids = self.token_ids(text)
        return self._features(ids) if self._features is not None else ids

    @tf.function(input_signature=[TEXT_SPEC])
    def preprocess(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return _named(self.model_inputs(text))

    def _postprocess(self, probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(probabilities, tf.float32)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "label": tf.gather(self.label_names, class_id), "class_id": class_id}

    def _serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(self.model(self.model_inputs(text), training=False), tf.float32)
        return self._postprocess(probabilities)

    def _encode(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """``encode``: text -> ``embedding`` float32 ``[None, hidden]``, the L2-normalised mean of the encoder's token vectors."""
        return {ENCODE_OUTPUT: self._sentence_vectors(_named(self.model_inputs(text)))}

    def _explain(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """``explain``: text -> ``tokens`` string ``[None, W]`` (words, padded with ""), ``attributions`` float32
        ``[None, W]`` (integrated gradients of the predicted class), ``label``, ``class_id``, ``probability``."""
        out = self.explainer(text)
        return {"tokens": out["words"], "attributions": out["attributions"], "label": tf.gather(self.label_names, out["class_id"]),
                "class_id": out["class_id"], "probability": out["probability"]}

    def signatures(self, include_model: bool = True) -> dict:
        """Signatures for ``tf.saved_model.save``; without the model only the two halves."""
        out = {PREPROCESS: self.preprocess, POSTPROCESS: self.postprocess}
        if include_model:
            out["serving_default"] = self.serve
        if include_model and self._sentence_vectors is not None:
            out[ENCODE] = self.encode
        if include_model and self.explainer is not None:
            out[EXPLAIN] = self.explain
        return out
