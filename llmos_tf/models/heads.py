"""Task heads on a :class:`~llmos_tf.models.bert.BertEncoder` (tf_keras functional models).

Each builder returns a functional ``tf_keras.Model`` taking the encoder's input
dict (``token_ids``, ``padding_mask``, ``segment_ids``) and producing float32
softmax probabilities, so the whole model can be cloned and pruned by TF-MOT
and exported with a serving signature.

Example::

    encoder = BertEncoder(vocabulary_size=100, num_layers=2, hidden_dim=16,
                          num_heads=2, intermediate_dim=32, max_sequence_length=32)
    classifier = build_sentence_classifier(encoder, num_labels=3, pooling="mean")
    probs = classifier({"token_ids": ids, "padding_mask": mask, "segment_ids": seg})  # [B, 3]
    tagger = build_token_classifier(encoder, num_tags=9)                             # [B, T, 9]
"""
from __future__ import annotations

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError
from llmos_tf.models.bert import PACKAGE, _bert_initializer

POOLINGS = ("cls", "mean")


@tf_keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedMeanPooling(tf_keras.layers.Layer):
    """Mean of ``sequence [B, T, H]`` over positions where ``padding_mask [B, T]`` is set.

    ``call(sequence, padding_mask) -> [B, H]``; an all-padding row gives zeros.
    """

    def call(self, sequence, padding_mask=None):
        if padding_mask is None:
            return tf.reduce_mean(sequence, axis=1)
        weights = tf.expand_dims(tf.cast(padding_mask, sequence.dtype), -1)  # expand_dims: TFLite-friendly
        total = tf.reduce_sum(sequence * weights, axis=1)
        count = tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        return total / count

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        return tf.TensorShape([input_shape[0], input_shape[-1]])

    def get_prunable_weights(self):  # TF-MOT: nothing to prune, but wrappable
        return []


def _inputs():
    return {
        "token_ids": tf_keras.Input(shape=(None,), dtype="int32", name="token_ids"),
        "padding_mask": tf_keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
        "segment_ids": tf_keras.Input(shape=(None,), dtype="int32", name="segment_ids"),
    }


def _check_positive(name, value):
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}: must be a positive integer")


def _check_dropout(dropout):
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout={dropout!r}: must be in [0, 1)")


def build_sentence_classifier(encoder, num_labels: int, *, pooling: str = "cls",
                              dropout: float = 0.1, name: str = "sentence_classifier"):
    """Encoder -> pooled vector (``cls``: the encoder's tanh pooler; ``mean``:
    :class:`MaskedMeanPooling`) -> dropout -> Dense softmax ``[B, num_labels]``."""
    _check_positive("num_labels", num_labels)
    _check_dropout(dropout)
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling={pooling!r}: must be one of {list(POOLINGS)}")
    inputs = _inputs()
    outputs = encoder(inputs)
    if pooling == "cls":
        pooled = outputs["pooled_output"]
    else:
        pooled = MaskedMeanPooling(name="mean_pooling")(
            outputs["sequence_output"], padding_mask=inputs["padding_mask"])
    x = tf_keras.layers.Dropout(dropout, name="classifier_dropout")(pooled)
    probabilities = tf_keras.layers.Dense(
        num_labels, activation="softmax", dtype="float32",
        kernel_initializer=_bert_initializer(), name="classifier")(x)
    return tf_keras.Model(inputs, probabilities, name=name)


def build_token_classifier(encoder, num_tags: int, *, dropout: float = 0.1,
                           name: str = "token_classifier"):
    """Encoder -> per-token dropout -> Dense softmax ``[B, T, num_tags]``."""
    _check_positive("num_tags", num_tags)
    _check_dropout(dropout)
    inputs = _inputs()
    sequence = encoder(inputs)["sequence_output"]
    x = tf_keras.layers.Dropout(dropout, name="tagger_dropout")(sequence)
    probabilities = tf_keras.layers.Dense(
        num_tags, activation="softmax", dtype="float32",
        kernel_initializer=_bert_initializer(), name="tagger")(x)
    return tf_keras.Model(inputs, probabilities, name=name)
