"""A BERT encoder in tf_keras (Keras 2), built from small composable layers.

The layers follow TF Model Garden's ``official/nlp/modeling`` split and
keras-hub's ``BertBackbone`` maths exactly (post-LayerNorm blocks, epsilon
1e-12, tanh-approximated GELU, tanh pooler on ``[CLS]``), so weights copied from
a keras-hub checkpoint reproduce its outputs (see :mod:`llmos_tf.models.pretrained`).

Every weight lives in a ``tf_keras`` ``Embedding``, ``Dense``,
``MultiHeadAttention`` or ``LayerNormalization`` layer, and every custom layer
here implements ``get_prunable_weights()``, so TF-MOT's
``prune_low_magnitude`` can wrap the whole encoder (or a model that contains
it) without extra code.

Example::

    encoder = BertEncoder(vocabulary_size=100, num_layers=2, hidden_dim=16,
                          num_heads=2, intermediate_dim=32, max_sequence_length=32)
    out = encoder({"token_ids": tf.constant([[2, 7, 3, 0]]),
                   "padding_mask": tf.constant([[1, 1, 1, 0]])})
    out["sequence_output"].shape  # (1, 4, 16)
    out["pooled_output"].shape    # (1, 16)
"""
from __future__ import annotations

import math
from typing import Sequence

from llmos_tf._tf import tf, tf_keras

PACKAGE = "llmos_tf"

_register = tf_keras.saving.register_keras_serializable


def _bert_initializer(stddev: float = 0.02):
    return tf_keras.initializers.TruncatedNormal(stddev=stddev)


@_register(package=PACKAGE)
def gelu_approximate(x):
    """GELU with the tanh approximation, as keras-hub's ``BertBackbone`` uses."""
    return tf_keras.activations.gelu(x, approximate=True)


def _build_in_scope(layer, input_shape):
    """Build a sub-layer under its own name scope so weights get readable names."""
    with tf.name_scope(layer.name):
        layer.build(input_shape)


def get_activation(name: str):
    """``"gelu_approximate"`` (keras-hub's BERT), ``"gelu"`` (exact erf, as in the
    original/Hugging Face BERT) or any other tf_keras activation name."""
    if name == "gelu_approximate":
        return gelu_approximate
    if name == "gelu":
        return lambda x: tf_keras.activations.gelu(x, approximate=False)
    return tf_keras.activations.get(name)


@_register(package=PACKAGE)
class BertEmbeddings(tf_keras.layers.Layer):
    """Token + position + segment embeddings, then LayerNorm and dropout.

    ``call(token_ids [B, T], segment_ids [B, T] | None) -> [B, T, hidden_dim]``.
    Positions are ``0 .. T-1`` (``T <= max_sequence_length``).
    """

    def __init__(
        self,
        vocabulary_size: int,
        hidden_dim: int,
        max_sequence_length: int = 512,
        num_segments: int = 2,
        dropout: float = 0.1,
        layer_norm_epsilon: float = 1e-12,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.num_segments = int(num_segments)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.initializer_range = float(initializer_range)
        init = _bert_initializer(initializer_range)
        self.token_embedding = tf_keras.layers.Embedding(
            self.vocabulary_size, self.hidden_dim, embeddings_initializer=init,
            name="token_embedding")
        self.position_embedding = tf_keras.layers.Embedding(
            self.max_sequence_length, self.hidden_dim,
            embeddings_initializer=_bert_initializer(initializer_range),
            name="position_embedding")
        self.segment_embedding = tf_keras.layers.Embedding(
            self.num_segments, self.hidden_dim,
            embeddings_initializer=_bert_initializer(initializer_range),
            name="segment_embedding")
        self.layer_norm = tf_keras.layers.LayerNormalization(
            axis=-1, epsilon=self.layer_norm_epsilon, name="embeddings_layer_norm")
        self.dropout_layer = tf_keras.layers.Dropout(self.dropout, name="embeddings_dropout")

    def build(self, input_shape):
        _build_in_scope(self.token_embedding, input_shape)
        _build_in_scope(self.position_embedding, (None,))
        _build_in_scope(self.segment_embedding, input_shape)
        _build_in_scope(self.layer_norm, tf.TensorShape(input_shape).concatenate([self.hidden_dim]))
        super().build(input_shape)

    def call(self, token_ids, segment_ids=None, training=None):
        token_ids = tf.cast(token_ids, tf.int32)
        if segment_ids is None:
            segment_ids = tf.zeros_like(token_ids)
        segment_ids = tf.cast(segment_ids, tf.int32)
        positions = tf.range(tf.shape(token_ids)[-1])
        x = (self.token_embedding(token_ids)
             + self.position_embedding(positions)[tf.newaxis]
             + self.segment_embedding(segment_ids))
        x = self.layer_norm(x)
        return self.dropout_layer(x, training=training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.hidden_dim])

    def get_prunable_weights(self):
        """TF-MOT hook: the token embedding matrix (the big one)."""
        return [self.token_embedding.embeddings]

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            hidden_dim=self.hidden_dim,
            max_sequence_length=self.max_sequence_length,
            num_segments=self.num_segments,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            initializer_range=self.initializer_range,
        )
        return config


@_register(package=PACKAGE)
class TransformerBlock(tf_keras.layers.Layer):
    """A post-LayerNorm Transformer encoder block (BERT).

    ``x = LN(x + Dropout(MHA(x, x, mask)))``;
    ``x = LN(x + Dropout(Dense(act(Dense(x)))))``.

    ``call(x [B, T, H], padding_mask [B, T] bool/int | None) -> [B, T, H]``;
    padded keys (mask 0/False) receive no attention.
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        activation: str = "gelu_approximate",
        layer_norm_epsilon: float = 1e-12,
        initializer_range: float = 0.02,
        key_dim: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        # None: hidden_dim // num_heads; set explicitly when structured pruning removed heads
        self.key_dim = int(key_dim) if key_dim else None
        self.dropout = float(dropout)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.initializer_range = float(initializer_range)
        self.supports_masking = False

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        hidden_dim = int(input_shape[-1])
        if self.key_dim is None and hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim={hidden_dim} is not divisible by num_heads={self.num_heads}")
        key_dim = self.key_dim or hidden_dim // self.num_heads
        init = lambda: _bert_initializer(self.initializer_range)  # noqa: E731
        self.attention = tf_keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=key_dim,
            dropout=self.dropout, kernel_initializer=init(), name="self_attention_layer")
        with tf.name_scope(self.attention.name):
            # tf_keras MHA creates its projections here but builds them lazily;
            # build them now so every weight exists before the first call.
            a = self.attention
            a._build_from_signature(query=input_shape, value=input_shape)
            for dense in (a._query_dense, a._key_dense, a._value_dense):
                _build_in_scope(dense, input_shape)
            _build_in_scope(a._output_dense, input_shape[:-1].concatenate(
                [self.num_heads, key_dim]))
        self.attention_dropout = tf_keras.layers.Dropout(self.dropout, name="self_attention_dropout")
        self.attention_layer_norm = tf_keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="self_attention_layer_norm")
        _build_in_scope(self.attention_layer_norm, input_shape)
        self.intermediate_dense = tf_keras.layers.Dense(
            self.intermediate_dim, activation=get_activation(self.activation),
            kernel_initializer=init(), name="feedforward_intermediate_dense")
        _build_in_scope(self.intermediate_dense, input_shape)
        self.output_dense = tf_keras.layers.Dense(
            hidden_dim, kernel_initializer=init(), name="feedforward_output_dense")
        _build_in_scope(self.output_dense, input_shape[:-1].concatenate([self.intermediate_dim]))
        self.output_dropout = tf_keras.layers.Dropout(self.dropout, name="feedforward_dropout")
        self.output_layer_norm = tf_keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="feedforward_layer_norm")
        _build_in_scope(self.output_layer_norm, input_shape)
        super().build(input_shape)

    def call(self, x, padding_mask=None, training=None):
        attention_mask = None
        if padding_mask is not None:
            # expand_dims on int32, not a strided slice on bool: TFLite has no bool StridedSlice with new_axis
            keys = tf.cast(tf.expand_dims(tf.cast(padding_mask, tf.int32), 1), tf.bool)  # [B, 1, T]
            attention_mask = tf.broadcast_to(
                keys, tf.stack([tf.shape(x)[0], tf.shape(x)[1], tf.shape(keys)[-1]]))
        attended = self.attention(query=x, value=x, attention_mask=attention_mask,
                                  training=training)
        x = self.attention_layer_norm(x + self.attention_dropout(attended, training=training))
        ff = self.output_dense(self.intermediate_dense(x))
        return self.output_layer_norm(x + self.output_dropout(ff, training=training))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_prunable_weights(self):
        """TF-MOT hook: attention projections and feed-forward kernels."""
        a = self.attention
        return [a._query_dense.kernel, a._key_dense.kernel, a._value_dense.kernel,
                a._output_dense.kernel, self.intermediate_dense.kernel, self.output_dense.kernel]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            dropout=self.dropout,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            initializer_range=self.initializer_range,
        )
        if self.key_dim is not None:
            config["key_dim"] = self.key_dim
        return config


@_register(package=PACKAGE)
class BertPooler(tf_keras.layers.Layer):
    """``tanh(Dense(sequence_output[:, 0]))``: the pooled ``[CLS]`` vector."""

    def __init__(self, hidden_dim: int, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.initializer_range = float(initializer_range)
        self.dense = tf_keras.layers.Dense(
            self.hidden_dim, activation="tanh",
            kernel_initializer=_bert_initializer(initializer_range), name="pooled_dense")

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        _build_in_scope(self.dense, tf.TensorShape([input_shape[0], input_shape[-1]]))
        super().build(input_shape)

    def call(self, sequence_output):
        return self.dense(sequence_output[:, 0, :])

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.hidden_dim])

    def get_prunable_weights(self):
        return [self.dense.kernel]

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, initializer_range=self.initializer_range)
        return config


ENCODER_CONFIG_KEYS = (
    "vocabulary_size", "num_layers", "hidden_dim", "num_heads", "intermediate_dim",
    "max_sequence_length", "num_segments", "dropout", "activation",
)
STRUCTURED_CONFIG_KEYS = ("layer_num_heads", "layer_intermediate_dims", "key_dim")


@_register(package=PACKAGE)
class BertEncoder(tf_keras.Model):
    """BERT encoder network (a functional tf_keras model).

    Inputs: ``{"token_ids": int32 [B, T], "padding_mask": bool/int [B, T],
    "segment_ids": int32 [B, T] (optional, zeros when missing)}``.
    Outputs: ``{"sequence_output": float32 [B, T, hidden_dim],
    "pooled_output": float32 [B, hidden_dim]}``.

    Top-level layers are ``embeddings`` (:class:`BertEmbeddings`),
    ``transformer_layer_{i}`` (:class:`TransformerBlock`) and ``pooler``
    (:class:`BertPooler`); ``tf_keras.models.clone_model`` and TF-MOT's
    ``prune_low_magnitude`` see them as ordinary prunable layers.
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        hidden_dim: int,
        num_heads: int,
        intermediate_dim: int,
        max_sequence_length: int = 512,
        num_segments: int = 2,
        dropout: float = 0.1,
        activation: str = "gelu_approximate",
        layer_num_heads: Sequence[int] | None = None,
        layer_intermediate_dims: Sequence[int] | None = None,
        key_dim: int | None = None,
        **kwargs,
    ):
        # per-layer head counts / feed-forward widths and a fixed key_dim: the smaller
        # shapes structured pruning leaves (llmos_tf.compression.structured); None: uniform
        heads = [int(h) for h in layer_num_heads] if layer_num_heads is not None else [num_heads] * num_layers
        widths = [int(w) for w in layer_intermediate_dims] if layer_intermediate_dims is not None else [intermediate_dim] * num_layers
        if len(heads) != num_layers or len(widths) != num_layers:
            raise ValueError(f"layer_num_heads / layer_intermediate_dims need {num_layers} entries, got {len(heads)} / {len(widths)}")
        if key_dim is None and hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}")
        token_ids = tf_keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = tf_keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        segment_ids = tf_keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        embeddings = BertEmbeddings(
            vocabulary_size, hidden_dim, max_sequence_length=max_sequence_length,
            num_segments=num_segments, dropout=dropout, name="embeddings")
        x = embeddings(token_ids, segment_ids=segment_ids)
        for i in range(num_layers):
            x = TransformerBlock(
                heads[i], widths[i], dropout=dropout, activation=activation,
                key_dim=key_dim, name=f"transformer_layer_{i}")(x, padding_mask=padding_mask)
        pooled = BertPooler(hidden_dim, name="pooler")(x)
        kwargs.setdefault("name", "bert_encoder")
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask,
                    "segment_ids": segment_ids},
            outputs={"sequence_output": x, "pooled_output": pooled},
            **kwargs,
        )
        self.vocabulary_size = int(vocabulary_size)
        self.num_layers = int(num_layers)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.num_segments = int(num_segments)
        self.dropout = float(dropout)
        self.activation = activation
        self.layer_num_heads = list(layer_num_heads) if layer_num_heads is not None else None
        self.layer_intermediate_dims = list(layer_intermediate_dims) if layer_intermediate_dims is not None else None
        self.key_dim = int(key_dim) if key_dim else None

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, dict) and "segment_ids" not in inputs:
            inputs = dict(inputs)
            inputs["segment_ids"] = tf.zeros_like(tf.cast(inputs["token_ids"], tf.int32))
        return super().__call__(inputs, *args, **kwargs)

    @property
    def embeddings(self) -> BertEmbeddings:
        return self.get_layer("embeddings")

    @property
    def transformer_layers(self) -> list[TransformerBlock]:
        return [self.get_layer(f"transformer_layer_{i}") for i in range(self.num_layers)]

    @property
    def pooler(self) -> BertPooler:
        return self.get_layer("pooler")

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable,
                  **{k: getattr(self, k) for k in ENCODER_CONFIG_KEYS}}
        for key in STRUCTURED_CONFIG_KEYS:  # only in structurally pruned encoders
            if getattr(self, key, None) is not None:
                config[key] = getattr(self, key)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def count_parameters(model) -> int:
    return int(sum(math.prod(w.shape) for w in model.weights))
