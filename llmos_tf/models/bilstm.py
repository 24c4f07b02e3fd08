"""The BiLSTM baseline: a strong, cheap classifier to beat (and a distillation student).

token ids → masked ``Embedding`` → 1–2 ``Bidirectional(LSTM)`` → max+mean pooling
over the mask → dropout → softmax head. Every weight sits in an ``Embedding``,
``LSTM`` or ``Dense`` layer, which TF-MOT knows how to prune.

Example::

    model = build_bilstm_classifier(BiLSTMConfig(), vocabulary_size=8000, num_labels=2)
    model(tf.constant([[5, 9, 2, 0]]))  # probabilities, shape (1, 2)
"""
from __future__ import annotations

from llmos_tf._tf import tf, tf_keras
from llmos_tf.models.layers import MaskedMaxMeanPooling
from llmos_tf.models.schemas import BiLSTMConfig  # noqa: F401  (the model: schema, importable without TensorFlow)


def pretrained_embedding_matrix(spec: str):
    """(vocabulary, embedding matrix) of a BERT checkpoint's token embeddings."""
    from llmos_tf.models.pretrained import load_pretrained_encoder

    encoder, vocabulary, _ = load_pretrained_encoder(spec)
    return vocabulary, encoder.embeddings.token_embedding.embeddings.numpy()


def bilstm_encoder(config: BiLSTMConfig, token_ids, vocabulary_size: int, *, last_dropout: bool) -> tf.Tensor:
    """Masked ``Embedding`` (optionally pretrained) → ``Bidirectional(LSTM)`` stack, full sequences.

    Shared by the classifier and the tagger so their layer names (``embedding``,
    ``bilstm_1``, ...) match and pruning, the fused-LSTM export and TFLite treat both alike.
    ``last_dropout`` adds a ``dropout`` layer after the last BiLSTM (the tagger's, before its head).
    """
    matrix = None
    embedding_dim = config.embedding_dim
    if config.pretrained_embeddings:
        _, matrix = pretrained_embedding_matrix(config.pretrained_embeddings)
        if matrix.shape[0] != vocabulary_size:
            raise ValueError(f"model.pretrained_embeddings: {matrix.shape[0]} rows but the vocabulary has {vocabulary_size} tokens")
        embedding_dim = int(matrix.shape[1])
    embedding = tf_keras.layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, trainable=not config.freeze_embeddings, name="embedding")
    x = embedding(token_ids)
    if matrix is not None:
        embedding.set_weights([matrix])
    if config.embedding_dropout:
        x = tf_keras.layers.SpatialDropout1D(config.embedding_dropout, name="embedding_dropout")(x)
    for i in range(config.lstm_layers):
        lstm = tf_keras.layers.LSTM(config.lstm_units, return_sequences=True, recurrent_dropout=config.recurrent_dropout, name=f"lstm_{i + 1}")
        x = tf_keras.layers.Bidirectional(lstm, name=f"bilstm_{i + 1}")(x)
        if i + 1 < config.lstm_layers:
            x = tf_keras.layers.Dropout(config.dropout, name=f"dropout_{i + 1}")(x)
        elif last_dropout:
            x = tf_keras.layers.Dropout(config.dropout, name="dropout")(x)
    return x


def build_bilstm_classifier(config: BiLSTMConfig, *, vocabulary_size: int, num_labels: int, name: str = "bilstm_classifier") -> tf_keras.Model:
    """A functional tf_keras model: int32 token ids ``[B, T]`` (0 = padding) → probabilities ``[B, num_labels]``."""
    token_ids = tf_keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = bilstm_encoder(config, token_ids, vocabulary_size, last_dropout=False)
    x = MaskedMaxMeanPooling(name="pooling")(x)
    x = tf_keras.layers.Dropout(config.dropout, name="dropout")(x)
    probabilities = tf_keras.layers.Dense(num_labels, activation="softmax", dtype="float32", name="classifier")(x)
    return tf_keras.Model(token_ids, probabilities, name=name)
