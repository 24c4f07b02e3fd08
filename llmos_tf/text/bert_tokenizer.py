"""BERT inputs from raw strings, inside tf.data or a SavedModel.

:class:`BertTextEncoder` wraps keras-hub's ``BertTokenizer`` (WordPiece on
tensorflow-text ops) and packs ``[CLS] tokens [SEP]`` (or
``[CLS] a [SEP] b [SEP]`` for sentence pairs), truncating to ``sequence_length``
and reporting which rows were truncated so the caller can count and warn.

Example::

    encoder = BertTextEncoder(vocabulary, sequence_length=16, lowercase=True)
    batch = encoder(tf.constant(["a fine film", "a dull film"]))
    batch["token_ids"].shape     # (2, 16) int32, padded with [PAD]
    batch["padding_mask"]        # bool, True on real tokens
    batch["truncated"]           # bool [2]
    ragged = encoder(texts, padded=False)   # RaggedTensor ids, for length bucketing

    # or from a checkpoint
    encoder = BertTextEncoder.from_checkpoint_info(vocabulary, info, sequence_length=128)
"""
from __future__ import annotations

from typing import Any, Sequence

from llmos_tf._tf import tf
from llmos_tf.errors import CheckpointError

try:  # keras-hub's switch that keeps eager outputs as tf tensors (private, guarded)
    from keras_hub.src.utils.tensor_utils import no_convert_scope as _no_convert_scope
except ImportError:  # pragma: no cover - older/newer keras-hub
    import contextlib

    _no_convert_scope = contextlib.nullcontext

CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
MASK_TOKEN = "[MASK]"


def make_bert_tokenizer(vocabulary: Sequence[str], *, lowercase: bool = True,
                        strip_accents: bool = False):
    """keras-hub ``BertTokenizer`` (int32 ragged ids); checks the special tokens exist."""
    import keras_hub

    vocabulary = list(vocabulary)
    missing = [t for t in (CLS_TOKEN, SEP_TOKEN, PAD_TOKEN, UNK_TOKEN) if t not in vocabulary]
    if missing:
        raise CheckpointError(f"BERT vocabulary lacks special token(s) {missing} "
                              f"(it has {len(vocabulary)} tokens, first {vocabulary[:5]})")
    from llmos_tf.text.wordpiece import without_detokenization

    return without_detokenization(keras_hub.tokenizers.BertTokenizer(
        vocabulary=vocabulary, lowercase=lowercase, strip_accents=strip_accents, dtype="int32",
        _allow_python_workflow=False))  # tensorflow-text ops also in eager mode


def detect_lowercase(vocabulary: Sequence[str]) -> bool:
    """Guess casing from a vocabulary: uncased vocabularies hold no capitalised words."""
    upper = sum(1 for t in vocabulary if t[:1].isupper() and not t.startswith("["))
    return upper < 0.001 * max(len(vocabulary), 1)


class BertTextEncoder(tf.Module):
    """Raw strings ``[B]`` -> BERT model inputs.

    ``__call__(texts, pair=None, padded=True)`` returns a dict with
    ``token_ids`` int32, ``padding_mask`` bool, ``segment_ids`` int32 — dense
    ``[B, sequence_length]`` when ``padded`` (fixed shape, TPU-friendly) else
    RaggedTensors ``[B, None]`` — and ``truncated`` bool ``[B]``.
    """

    def __init__(self, vocabulary: Sequence[str], *, sequence_length: int = 128,
                 lowercase: bool | None = None, strip_accents: bool = False, name=None):
        super().__init__(name=name)
        if sequence_length < 3:
            raise ValueError(f"sequence_length={sequence_length}: must be at least 3")
        self.vocabulary = list(vocabulary)
        self.lowercase = detect_lowercase(self.vocabulary) if lowercase is None else bool(lowercase)
        self.sequence_length = int(sequence_length)
        self.tokenizer = make_bert_tokenizer(self.vocabulary, lowercase=self.lowercase,
                                             strip_accents=strip_accents)
        index = {t: i for i, t in enumerate(self.vocabulary)}
        self.cls_id = index[CLS_TOKEN]
        self.sep_id = index[SEP_TOKEN]
        self.pad_id = index[PAD_TOKEN]
        self.unk_id = index[UNK_TOKEN]
        self.mask_id = index.get(MASK_TOKEN, -1)

    @classmethod
    def from_checkpoint_info(cls, vocabulary: Sequence[str], info: dict[str, Any],
                             sequence_length: int | None = None) -> "BertTextEncoder":
        """Build from :func:`~llmos_tf.models.pretrained.load_pretrained_encoder`'s output."""
        max_len = int(info.get("config", {}).get("max_sequence_length", 512))
        return cls(vocabulary, sequence_length=sequence_length or max_len,
                   lowercase=info.get("lowercase"))

    def get_config(self) -> dict[str, Any]:
        return {"sequence_length": self.sequence_length, "lowercase": self.lowercase,
                "vocabulary_size": len(self.vocabulary)}

    def tokenize(self, texts) -> tf.RaggedTensor:
        """WordPiece ids, ragged ``[B, None]`` (no special tokens)."""
        texts = tf.convert_to_tensor(texts, tf.string)
        # keras-hub turns eager ragged outputs into Python lists unless asked not to.
        with _no_convert_scope():
            ids = self.tokenizer(texts)
        if not isinstance(ids, tf.RaggedTensor):  # a batch of equal lengths may come dense
            ids = tf.RaggedTensor.from_tensor(ids)
        return tf.cast(ids, tf.int32).with_row_splits_dtype(tf.int64)

    def __call__(self, texts, pair=None, padded: bool = True) -> dict[str, Any]:
        first = self.tokenize(texts)
        batch = first.nrows()
        cls = tf.fill([batch, 1], self.cls_id)
        sep = tf.fill([batch, 1], self.sep_id)
        if pair is None:
            budget = self.sequence_length - 2
            truncated = first.row_lengths() > budget
            first = first[:, :budget]
            token_ids = tf.concat([cls, first, sep], axis=1)
            segment_ids = tf.zeros_like(token_ids)
        else:
            second = self.tokenize(pair)
            budget = self.sequence_length - 3
            len_a = tf.cast(first.row_lengths(), tf.int32)
            len_b = tf.cast(second.row_lengths(), tf.int32)
            truncated = len_a + len_b > budget
            # Longest-first ("round robin") trimming, as BERT's preprocessors do.
            keep_a = tf.minimum(len_a, tf.maximum(budget // 2, budget - len_b))
            keep_b = tf.minimum(len_b, budget - keep_a)
            first = tf.ragged.boolean_mask(
                first, tf.ragged.range(len_a, row_splits_dtype=first.row_splits.dtype) < keep_a[:, None])
            second = tf.ragged.boolean_mask(
                second, tf.ragged.range(len_b, row_splits_dtype=second.row_splits.dtype) < keep_b[:, None])
            token_ids = tf.concat([cls, first, sep, second, sep], axis=1)
            segment_ids = tf.concat(
                [tf.zeros_like(tf.concat([cls, first, sep], axis=1)),
                 tf.ones_like(tf.concat([second, sep], axis=1))], axis=1)
        padding_mask = tf.ones_like(token_ids, dtype=tf.bool)
        if padded:
            shape = [None, self.sequence_length]
            token_ids = token_ids.to_tensor(default_value=self.pad_id, shape=shape)
            segment_ids = segment_ids.to_tensor(default_value=0, shape=shape)
            padding_mask = padding_mask.to_tensor(default_value=False, shape=shape)
        return {"token_ids": token_ids, "padding_mask": padding_mask,
                "segment_ids": segment_ids, "truncated": truncated}
