"""Token classifiers for ``task: ner``, one builder per architecture (registered in :mod:`~llmos_tf.models.registry`).

Both take the inputs the NER pipeline produces (``token_ids``, ``padding_mask``,
``segment_ids``: WordPiece subwords between ``[CLS]`` and ``[SEP]``, 0 = ``[PAD]``)
and return float32 per-token probabilities ``[B, T, num_tags]``:

* ``bert``: a BERT encoder (checkpoint or fresh) → dropout → tag head;
* ``bilstm``: a masked embedding (optionally a checkpoint's WordPiece embeddings,
  ``pretrained_embeddings: minilm-l6``) → 1–2 ``Bidirectional(LSTM)`` → dropout → tag head.

The tag head (:func:`tag_head`) is a softmax ``Dense``, or with ``model.crf: true`` a
``Dense`` of emission scores and a :class:`~llmos_tf.models.crf.CRF` layer: trained on
the sequence log-likelihood and decoded with Viterbi over the words' first subwords.

Example::

    cfg = BiLSTMConfig(embedding_dim=32, lstm_units=32, crf=True)
    model = build_bilstm_tagger(cfg, vocabulary_size=600, num_tags=9)
    model({"token_ids": ids, "padding_mask": mask, "segment_ids": tf.zeros_like(ids)})  # [B, T, 9]
"""
from __future__ import annotations

from typing import Sequence

from llmos_tf._tf import tf_keras
from llmos_tf.models.crf import CRF
from llmos_tf.models.schemas import BertClassifierConfig, BiLSTMConfig


def tagger_inputs() -> dict:
    return {name: tf_keras.Input(shape=(None,), dtype="int32", name=name) for name in ("token_ids", "padding_mask", "segment_ids")}


def tag_head(x, num_tags: int, *, crf: bool, kernel_initializer="glorot_uniform"):
    """Per-token float32 probabilities: ``Dense`` softmax, or ``Dense`` emissions + :class:`CRF` (layer ``crf``)."""
    if not crf:
        return tf_keras.layers.Dense(num_tags, activation="softmax", dtype="float32", kernel_initializer=kernel_initializer, name="tagger")(x)
    emissions = tf_keras.layers.Dense(num_tags, dtype="float32", kernel_initializer=kernel_initializer, name="tagger")(x)
    return CRF(num_tags, name="crf")(emissions)


def build_bert_tagger(cfg: BertClassifierConfig, vocabulary: Sequence[str], num_tags: int, max_length: int) -> tf_keras.Model:
    """BERT encoder (checkpoint or fresh, with the config's freezing) + per-token head (softmax or CRF)."""
    from llmos_tf.models.bert import _bert_initializer
    from llmos_tf.models.bert_classifier import _encoder, apply_freezing
    from llmos_tf.models.heads import _check_dropout, _check_positive, build_token_classifier

    encoder = _encoder(cfg, vocabulary, max_length)
    apply_freezing(encoder, cfg, uses_pooler=False)  # a token head never reads the pooler
    if not cfg.crf:
        return build_token_classifier(encoder, num_tags, dropout=cfg.dropout)
    _check_positive("num_tags", num_tags)
    _check_dropout(cfg.dropout)
    inputs = tagger_inputs()
    x = tf_keras.layers.Dropout(cfg.dropout, name="tagger_dropout")(encoder(inputs)["sequence_output"])
    return tf_keras.Model(inputs, tag_head(x, num_tags, crf=True, kernel_initializer=_bert_initializer()), name="crf_token_classifier")


def build_bilstm_tagger(cfg: BiLSTMConfig, *, vocabulary_size: int, num_tags: int, name: str = "bilstm_tagger") -> tf_keras.Model:
    """Embedding (masks ``[PAD]`` = id 0) → BiLSTM stack (full sequences) → dropout → per-token head.

    Layer names follow the BiLSTM classifier's (``embedding``, ``bilstm_1``, ...), so
    its pruning, fused-LSTM export and TFLite paths apply unchanged.
    """
    from llmos_tf.models.bilstm import bilstm_encoder

    inputs = tagger_inputs()
    x = bilstm_encoder(cfg, inputs["token_ids"], vocabulary_size, last_dropout=True)
    return tf_keras.Model(inputs, tag_head(x, num_tags, crf=cfg.crf), name=name)
