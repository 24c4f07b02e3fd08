"""The pretraining task's model: a BERT encoder (new or from a checkpoint) under a tied MLM head.

:class:`MaskedLMPretrainer` trains with its own ``train_step`` (the loss covers the
masked positions only), so any optimizer the trainer builds, including a
mixed-precision ``LossScaleOptimizer``, drives it through ``optimizer.minimize``.
It saves as ``model.keras`` (``get_config`` serialises the encoder), so a finished
run loads back for fill-mask predictions.

Example::

    encoder, vocabulary, lowercase = build_encoder(PretrainConfig(corpus=["corpus.txt"]), texts)
    model = build_pretrainer(encoder, learning_rate=5e-4)
    model.fit(mlm_dataset(...), epochs=1)
"""
from __future__ import annotations

from typing import Any, Sequence

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError
from llmos_tf.training.pretrain_config import PretrainConfig


@tf_keras.saving.register_keras_serializable(package="llmos_tf")
class MaskedLMPretrainer(tf_keras.Model):
    """Encoder + BERT MLM head with the output projection tied to the token embedding."""

    def __init__(self, encoder, **kwargs):
        kwargs.setdefault("name", "masked_lm_pretrainer")
        super().__init__(**kwargs)
        self.encoder = encoder
        init = tf_keras.initializers.TruncatedNormal(stddev=0.02)
        policy = self.dtype_policy  # the head computes like the encoder (a mixed-precision run's policy survives a reload)
        self.transform = tf_keras.layers.Dense(encoder.hidden_dim, activation="gelu",
                                               kernel_initializer=init, name="mlm_transform", dtype=policy)
        self.norm = tf_keras.layers.LayerNormalization(epsilon=1e-12, name="mlm_layer_norm", dtype=policy)
        self.output_bias = self.add_weight(name="mlm_output_bias", shape=[encoder.vocabulary_size],
                                           initializer="zeros", trainable=True)
        self.loss_tracker = tf_keras.metrics.Mean(name="loss")

    def call(self, inputs, training=None):
        features = {k: inputs[k] for k in ("token_ids", "padding_mask", "segment_ids")}
        sequence = self.encoder(features, training=training)["sequence_output"]
        gathered = tf.gather(sequence, inputs["mask_positions"], batch_dims=1)  # [B, M, H]
        hidden = self.norm(self.transform(gathered))
        table = tf.cast(self.encoder.embeddings.token_embedding.embeddings, hidden.dtype)  # [V, H], tied
        logits = tf.matmul(hidden, table, transpose_b=True) + tf.cast(self.output_bias, hidden.dtype)
        return tf.cast(logits, tf.float32)  # float32 logits under a mixed-precision policy too

    @staticmethod
    def masked_loss(mask_ids, logits, mask_weights):
        ce = tf_keras.losses.sparse_categorical_crossentropy(mask_ids, logits, from_logits=True)
        weights = tf.cast(mask_weights, ce.dtype)
        return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        x, mask_ids, mask_weights = data
        with tf.GradientTape() as tape:
            loss = self.masked_loss(mask_ids, self(x, training=True), mask_weights)
        # the pooler gets no gradient from MLM (no next-sentence task): leave it untouched
        variables = [v for v in self.trainable_variables if not v.name.startswith("pooler/")]
        self.optimizer.minimize(loss, variables, tape=tape)  # a LossScaleOptimizer scales and unscales here
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x, mask_ids, mask_weights = data
        self.loss_tracker.update_state(self.masked_loss(mask_ids, self(x, training=False), mask_weights))
        return {"loss": self.loss_tracker.result()}

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype_policy.name, "encoder": tf_keras.saving.serialize_keras_object(self.encoder)}

    def build_from_config(self, config) -> None:
        """Loading ``model.keras`` builds the model by calling it: its inputs are integer ids, which Keras'
        default build (float placeholders) cannot feed to the position gather."""
        ids = tf.zeros([1, 2], tf.int32)
        self({"token_ids": ids, "padding_mask": tf.ones_like(ids), "segment_ids": ids, "mask_positions": tf.zeros([1, 1], tf.int32)})

    @classmethod
    def from_config(cls, config):
        """Rebuilds the encoder under the saved policy: BertEncoder's own config does not record a mixed one."""
        from llmos_tf.training.precision import precision_policy

        config = dict(config)
        with precision_policy(config.get("dtype")):
            return cls(tf_keras.saving.deserialize_keras_object(config.pop("encoder")), **config)


def build_encoder(settings: PretrainConfig, texts: Sequence[str]):
    """``(encoder, vocabulary, lowercase)``: from ``settings.encoder`` or new from its sizes."""
    if settings.encoder:
        from llmos_tf.models.pretrained import load_pretrained_encoder

        encoder, vocabulary, info = load_pretrained_encoder(settings.encoder)
        if settings.max_length > encoder.max_sequence_length:
            raise ConfigError(f"max_length={settings.max_length} exceeds encoder {settings.encoder!r}'s "
                              f"{encoder.max_sequence_length} positions")
        return encoder, list(vocabulary), bool(info["lowercase"])
    vocabulary = learn_corpus_vocabulary(settings, texts)
    return new_encoder(settings, vocabulary), vocabulary, True


def learn_corpus_vocabulary(settings: PretrainConfig, texts: Sequence[str]) -> list[str]:
    from llmos_tf.models.bert_classifier import BERT_RESERVED_TOKENS
    from llmos_tf.text.wordpiece import learn_vocabulary

    return learn_vocabulary(texts, settings.vocabulary_size, lowercase=True, strip_accents=True, reserved_tokens=BERT_RESERVED_TOKENS)


def new_encoder(settings: PretrainConfig, vocabulary: Sequence[str]):
    from llmos_tf.models.pretrained import encoder_from_config

    return encoder_from_config({
        "vocabulary_size": len(vocabulary), "num_layers": settings.num_layers, "hidden_dim": settings.hidden_dim,
        "num_heads": settings.num_heads, "intermediate_dim": settings.intermediate_dim, "max_sequence_length": settings.max_length,
    })


def build_pretrainer(encoder, learning_rate: float) -> MaskedLMPretrainer:
    """The MLM model compiled with Adam (for a quick fit outside the trainer)."""
    model = MaskedLMPretrainer(encoder)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=1.0))
    return model
