"""Small tf_keras layers shared by the models."""
from __future__ import annotations

from llmos_tf._tf import tf, tf_keras


@tf_keras.saving.register_keras_serializable(package="llmos_tf")
class MaskedMaxMeanPooling(tf_keras.layers.Layer):
    """Concatenate max- and mean-pooling over the time steps the mask keeps.

    Padding must not leak into either statistic: padded steps get -inf before
    the max and weight 0 in the mean. A sequence with no kept step pools to 0.

    Example::

        x = tf.random.normal([2, 5, 8]); mask = tf.sequence_mask([3, 5], 5)
        MaskedMaxMeanPooling()(x, mask=mask).shape  # (2, 16)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = tf.ones(tf.shape(inputs)[:2], dtype=tf.bool)
        mask_f = tf.cast(mask, inputs.dtype)[:, :, None]
        count = tf.reduce_sum(mask_f, axis=1)
        mean = tf.reduce_sum(inputs * mask_f, axis=1) / tf.maximum(count, 1.0)
        very_negative = tf.cast(-1e9, inputs.dtype)
        maxed = tf.reduce_max(tf.where(mask_f > 0, inputs, very_negative), axis=1)
        maxed = tf.where(count > 0, maxed, tf.zeros_like(maxed))
        return tf.concat([maxed, mean], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], 2 * input_shape[-1]])
