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
from llmos_tf.export.base import POSTPROCESS, PREPROCESS, TEXT_SPEC  # noqa: F401  (re-exported: signatures.PREPROCESS)


def _named(ids_or_features) -> dict[str, tf.Tensor]:
    return dict(ids_or_features) if isinstance(ids_or_features, dict) else {"token_ids": ids_or_features}


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

    def signatures(self, include_model: bool = True) -> dict:
        """Signatures for ``tf.saved_model.save``; without the model only the two halves."""
        out = {PREPROCESS: self.preprocess, POSTPROCESS: self.postprocess}
        if include_model:
            out["serving_default"] = self.serve
        return out
