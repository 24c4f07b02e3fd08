"""Serving modules: raw strings in, the DESIGN.md contract out.

The tokenizer travels inside the SavedModel (tensorflow-text ops via keras-hub),
so a TF Serving client sends plain text. Names are a contract with clients:

* classifier ``serving_default``: ``text`` string ``[None]`` →
  ``probabilities`` float32 ``[None, num_labels]``, ``label`` string ``[None]``,
  ``class_id`` int64 ``[None]``.
"""
from __future__ import annotations

from typing import Callable, Sequence

from llmos_tf._tf import tf, tf_keras

TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")


class ClassifierServingModule(tf.Module):
    """Wraps tokenizer + token-id classifier + label names into one servable."""

    def __init__(self, tokenizer, model: tf_keras.Model, label_names: Sequence[str], max_length: int, features: Callable | None = None):
        super().__init__(name="llmos_classifier")
        self.tokenizer = tokenizer
        self.model = model
        self.label_names = tf.constant(list(label_names), dtype=tf.string)
        self.max_length = int(max_length)
        self._features = features

    def token_ids(self, text: tf.Tensor) -> tf.Tensor:
        ids = self.tokenizer(text)[:, : self.max_length]
        dense = ids.to_tensor(default_value=0)
        # an empty batch (or all-empty texts) still gets one masked column: models need a time step
        return tf.pad(dense, [[0, 0], [0, tf.maximum(1 - tf.shape(dense)[1], 0)]])

    @tf.function(input_signature=[TEXT_SPEC])
    def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = self.token_ids(text)
        inputs = self._features(ids) if self._features is not None else ids
        probabilities = tf.cast(self.model(inputs, training=False), tf.float32)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "label": tf.gather(self.label_names, class_id),
            "class_id": class_id,
        }
