"""``model: {architecture: bert}``: a BERT sentence classifier for ``llmos train``.

The encoder comes from a pretrained checkpoint (``encoder: minilm-l6``, a
keras-hub preset name, a local keras-hub / Hugging Face folder or a folder
written by ``llmos pretrain``) or, with
``encoder: null``, is initialised at random with the size given here and a
WordPiece vocabulary learnt from the training texts.

The tf.data pipeline yields padded ``token_ids`` ([CLS] … [SEP], 0 = [PAD]);
:func:`bert_features` turns them into the encoder's
``token_ids``/``padding_mask``/``segment_ids`` — in tf.data during training and
inside the serving signature after export.
"""
from __future__ import annotations

import warnings
from typing import Sequence

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError
from llmos_tf.models.schemas import BertClassifierConfig  # noqa: F401  (the model: schema, importable without TensorFlow)


BERT_RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class BertTokenIds(tf.Module):
    """Raw strings → ragged ``[CLS] … [SEP]`` ids, truncated to ``sequence_length``."""

    def __init__(self, vocabulary: Sequence[str], sequence_length: int, lowercase: bool | None = None, strip_accents: bool = False):
        super().__init__(name="bert_token_ids")
        from llmos_tf.text.bert_tokenizer import BertTextEncoder

        self.encoder = BertTextEncoder(list(vocabulary), sequence_length=sequence_length, lowercase=lowercase, strip_accents=strip_accents)

    @classmethod
    def for_run(cls, cfg: "BertClassifierConfig", vocabulary: Sequence[str], text_cfg, max_length: int) -> "BertTokenIds":
        """A checkpoint's own casing rules (uncased BERT also strips accents, as its tokenizer did
        in pretraining); the ``text:`` config for a fresh encoder."""
        if cfg.encoder:
            from llmos_tf.text.bert_tokenizer import detect_lowercase

            lowercase = detect_lowercase(vocabulary)
            return cls(vocabulary, max_length, lowercase=lowercase, strip_accents=lowercase)
        return cls(vocabulary, max_length, lowercase=text_cfg.lowercase, strip_accents=text_cfg.strip_accents)

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        return self.encoder(texts, padded=False)["token_ids"]


def bert_features(token_ids: tf.Tensor) -> dict[str, tf.Tensor]:
    """Padded token ids → the encoder's input dict (single segment)."""
    token_ids = tf.cast(token_ids, tf.int32)
    return {
        "token_ids": token_ids,
        "padding_mask": tf.cast(tf.not_equal(token_ids, 0), tf.int32),
        "segment_ids": tf.zeros_like(token_ids),
    }


def bert_vocabulary(cfg: BertClassifierConfig, train_texts: Sequence[str], text_cfg) -> list[str]:
    """The checkpoint's vocabulary, or one learnt from the training texts for a fresh encoder."""
    if cfg.encoder:
        from llmos_tf.models.pretrained import _load_vocabulary, resolve_checkpoint

        return _load_vocabulary(resolve_checkpoint(cfg.encoder), cfg.encoder)[0]
    from llmos_tf.text.wordpiece import learn_vocabulary

    return learn_vocabulary(train_texts, text_cfg.vocabulary_size, lowercase=text_cfg.lowercase, strip_accents=text_cfg.strip_accents, reserved_tokens=BERT_RESERVED_TOKENS)


def _encoder(cfg: BertClassifierConfig, vocabulary: Sequence[str], max_length: int):
    if cfg.encoder:
        from llmos_tf.models.pretrained import load_pretrained_encoder

        encoder, vocab, info = load_pretrained_encoder(cfg.encoder, dropout=cfg.dropout)
        if list(vocab) != list(vocabulary):
            raise ConfigError(f"model.encoder: the run's vocabulary does not match checkpoint {cfg.encoder!r}")
        return encoder
    from llmos_tf.models.pretrained import encoder_from_config

    return encoder_from_config({
        "vocabulary_size": len(vocabulary),
        "num_layers": cfg.num_layers,
        "hidden_dim": cfg.hidden_dim,
        "num_heads": cfg.num_heads,
        "intermediate_dim": cfg.intermediate_dim,
        "max_sequence_length": max(cfg.max_sequence_length, max_length),
        "dropout": cfg.dropout,
    })


def build_bert_classifier(cfg: BertClassifierConfig, vocabulary: Sequence[str], num_labels: int, max_length: int) -> tf_keras.Model:
    from llmos_tf.models.heads import build_sentence_classifier

    if cfg.pooling not in ("mean", "cls"):
        raise ConfigError(f"model.pooling: expected 'mean' or 'cls', got {cfg.pooling!r}")
    encoder = _encoder(cfg, vocabulary, max_length)
    apply_freezing(encoder, cfg, uses_pooler=cfg.pooling == "cls")
    return build_sentence_classifier(encoder, num_labels, pooling=cfg.pooling, dropout=cfg.dropout)


def apply_freezing(encoder, cfg: BertClassifierConfig, *, uses_pooler: bool) -> None:
    """Freeze what the config asks (embeddings, lowest N blocks) and an unused pooler (it gets no gradients)."""
    if not uses_pooler and "pooler" in [layer.name for layer in encoder.layers]:
        encoder.get_layer("pooler").trainable = False
    if cfg.freeze_embeddings:
        encoder.embeddings.trainable = False
    if cfg.freeze_layers:
        blocks = encoder.transformer_layers
        if cfg.freeze_layers > len(blocks):
            raise ConfigError(f"model.freeze_layers: {cfg.freeze_layers} > the encoder's {len(blocks)} layers")
        for block in blocks[: cfg.freeze_layers]:
            block.trainable = False


def checkpoint_positions(cfg: BertClassifierConfig) -> int | None:
    """The checkpoint's position-embedding count (None for a fresh encoder)."""
    if not cfg.encoder:
        return None
    import json

    from llmos_tf.models.pretrained import checkpoint_format, resolve_checkpoint

    folder = resolve_checkpoint(cfg.encoder)
    if checkpoint_format(folder) == "llmos":  # written by `llmos pretrain`
        from llmos_tf.models.pretrained import ENCODER_CONFIG_FILE

        return int(json.loads((folder / ENCODER_CONFIG_FILE).read_text(encoding="utf-8"))["max_sequence_length"])
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if checkpoint_format(folder) == "huggingface":
        return int(config.get("max_position_embeddings", 512))
    return int(config.get("config", {}).get("max_sequence_length", 512))


def effective_max_length(cfg: BertClassifierConfig, max_length: int) -> int:
    """Clamp ``data.max_length`` to the encoder's positions, with a warning (never crash)."""
    positions = checkpoint_positions(cfg)
    if positions is not None and max_length > positions:
        warnings.warn(f"data.max_length={max_length} exceeds the encoder's {positions} positions; sequences are truncated to {positions}")
        return positions
    return max_length
