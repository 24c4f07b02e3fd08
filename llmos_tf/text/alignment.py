"""Word <-> subword alignment for token classification (NER), in pure TF ops.

CoNLL-style data labels whitespace tokens ("words"); BERT sees WordPiece
subwords. :func:`encode_words` tokenizes each word (a ragged
``[B, words, subwords]`` tensor), puts every word's tag on its **first**
subword and ignores the rest (label ``-1``, ``label_mask`` False), adds
``[CLS]``/``[SEP]`` and pads. A word that WordPiece turns into nothing (e.g. a
lone control character) becomes ``[UNK]`` so every word keeps one position.
Words that no longer fit in ``sequence_length`` are dropped whole and counted
(``dropped_words``); :func:`word_predictions_from_subwords` maps per-subword
predictions back to one tag id per word and gives dropped words the outside tag.

Everything runs inside ``tf.data`` and inside a SavedModel signature.

Example::

    text_encoder = BertTextEncoder(vocabulary, sequence_length=64)
    words = split_words(tf.constant(["John lives in Zürich ."]))
    batch = encode_words(text_encoder, words, tags=tf.ragged.constant([[1, 0, 0, 2, 0]]))
    # batch: token_ids, padding_mask, segment_ids, labels, label_mask, word_ids,
    #        word_count, dropped_words, truncated
    probs = model(batch)                                   # [B, T, num_tags]
    word_ids = word_predictions_from_subwords(probs, batch["label_mask"], batch["word_count"])
"""
from __future__ import annotations

from typing import Sequence

from llmos_tf._tf import tf

IGNORE_LABEL = -1


def split_words(texts) -> tf.RaggedTensor:
    """Sentences ``[B]`` -> whitespace tokens, ragged ``[B, words]`` (no empty tokens)."""
    return tf.strings.split(tf.convert_to_tensor(texts, tf.string))


def _row_cumsum(values, row_splits):
    """Inclusive cumulative sum of ``values`` restarting at each row of ``row_splits``."""
    total = tf.cumsum(values)
    before = tf.concat([tf.zeros([1], values.dtype), total], axis=0)
    row_start = tf.gather(before, row_splits[:-1])
    row_lengths = row_splits[1:] - row_splits[:-1]
    return total - tf.repeat(row_start, row_lengths)


def encode_words(text_encoder, words, tags=None, *, padded: bool = True) -> dict:
    """Subword model inputs with first-subword labels.

    Args:
        text_encoder: a :class:`~llmos_tf.text.bert_tokenizer.BertTextEncoder`
            (its tokenizer, special ids and ``sequence_length`` are used).
        words: string RaggedTensor ``[B, words]`` (see :func:`split_words`).
        tags: int RaggedTensor ``[B, words]`` of tag ids, or None at inference.
        padded: dense ``[B, sequence_length]`` outputs, else RaggedTensors ``[B, None]``.

    Returns a dict: ``token_ids`` int32, ``padding_mask`` bool, ``segment_ids``
    int32, ``labels`` int32 (``-1`` where ignored), ``label_mask`` bool (first
    subword of a kept word), ``word_ids`` int32 (word index of every subword,
    ``-1`` on special tokens and padding), and per sentence ``word_count``,
    ``dropped_words`` int32 ``[B]`` and ``truncated`` bool ``[B]``.
    """
    if not isinstance(words, tf.RaggedTensor):
        words = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(words, tf.string))
    words = words.with_row_splits_dtype(tf.int64)
    budget = text_encoder.sequence_length - 2
    batch = words.nrows()

    # [num_words, subwords]; words with no subword become [UNK].
    pieces = text_encoder.tokenize(words.flat_values).with_row_splits_dtype(tf.int64)
    lengths = pieces.row_lengths()
    unk = tf.fill(tf.stack([tf.size(lengths, out_type=tf.int64), 1]), text_encoder.unk_id)
    pieces = tf.concat([pieces, tf.RaggedTensor.from_tensor(unk)], axis=1)
    new_lengths = tf.maximum(lengths, 1)
    pieces = tf.ragged.boolean_mask(pieces, tf.ragged.range(lengths + 1) < new_lengths[:, None])

    # Keep the longest prefix of whole words that fits between [CLS] and [SEP].
    ends = _row_cumsum(new_lengths, words.row_splits)
    keep = ends <= budget
    word_count = tf.cast(words.row_lengths(), tf.int32)
    kept_count = tf.math.unsorted_segment_sum(
        tf.cast(keep, tf.int32), words.value_rowids(), num_segments=batch)
    kept_pieces = tf.ragged.boolean_mask(pieces, keep)          # [kept_words, subwords]
    piece_counts = kept_pieces.row_lengths()
    flat_ids = tf.cast(kept_pieces.flat_values, tf.int32)
    is_first = tf.equal(tf.ragged.range(piece_counts).flat_values, 0)
    word_index = tf.ragged.range(tf.cast(kept_count, tf.int64)).flat_values
    flat_word_ids = tf.cast(tf.repeat(word_index, piece_counts), tf.int32)
    subwords_per_row = tf.math.unsorted_segment_sum(
        piece_counts, tf.boolean_mask(words.value_rowids(), keep), num_segments=batch)

    def rows(flat):
        return tf.RaggedTensor.from_row_lengths(flat, subwords_per_row)

    if tags is not None:
        if not isinstance(tags, tf.RaggedTensor):
            tags = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(tags))
        kept_tags = tf.cast(tf.boolean_mask(tags.flat_values, keep), tf.int32)
        flat_labels = tf.where(is_first, tf.repeat(kept_tags, piece_counts), IGNORE_LABEL)
    else:
        flat_labels = tf.where(is_first, 0, IGNORE_LABEL)

    def wrap(ragged, left, right):
        cols = lambda value, dtype: tf.fill(tf.stack([batch, 1]), tf.constant(value, dtype))  # noqa: E731
        return tf.concat([cols(left, ragged.dtype), ragged, cols(right, ragged.dtype)], axis=1)

    token_ids = wrap(rows(flat_ids), text_encoder.cls_id, text_encoder.sep_id)
    labels = wrap(rows(flat_labels), IGNORE_LABEL, IGNORE_LABEL)
    label_mask = wrap(rows(is_first), False, False)
    word_ids = wrap(rows(flat_word_ids), -1, -1)
    padding_mask = tf.ones_like(token_ids, dtype=tf.bool)
    segment_ids = tf.zeros_like(token_ids)
    out = {"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": segment_ids,
           "labels": labels, "label_mask": label_mask, "word_ids": word_ids}
    if padded:
        shape = [None, text_encoder.sequence_length]
        defaults = {"token_ids": text_encoder.pad_id, "padding_mask": False, "segment_ids": 0,
                    "labels": IGNORE_LABEL, "label_mask": False, "word_ids": -1}
        out = {k: v.to_tensor(default_value=defaults[k], shape=shape) for k, v in out.items()}
    dropped = word_count - kept_count
    out.update(word_count=word_count, dropped_words=dropped, truncated=dropped > 0)
    return out


def word_predictions_from_subwords(predictions, label_mask, word_count, *,
                                   outside_id: int = 0) -> tf.RaggedTensor:
    """Per-subword predictions -> one tag id per whitespace word, ragged ``[B, words]``.

    ``predictions`` is ``[B, T]`` tag ids or ``[B, T, num_tags]`` scores
    (argmax taken); the first subword of each word carries the word's tag
    (``label_mask``). Words dropped by truncation get ``outside_id``.
    Use ``.to_tensor(default_value=...)`` for a dense result.
    """
    predictions = tf.convert_to_tensor(predictions)
    if predictions.shape.rank == 3:
        predictions = tf.argmax(predictions, axis=-1, output_type=tf.int32)
    predictions = tf.cast(predictions, tf.int32)
    kept = tf.ragged.boolean_mask(predictions, tf.cast(label_mask, tf.bool))
    word_count = tf.cast(word_count, kept.row_splits.dtype)
    missing = tf.maximum(word_count - kept.row_lengths(), 0)
    fill = tf.ragged.range(missing) * 0 + outside_id
    return tf.concat([kept, tf.cast(fill, tf.int32)], axis=1)


def word_tags_from_subwords(predictions, label_mask, word_count, labels: Sequence[str], *,
                            outside_label: str = "O"):
    """Like :func:`word_predictions_from_subwords` but returns tag strings.

    Returns ``(tags, token_count)``: ``tags`` tf.string ``[B, max_words]``
    padded with ``""`` (the NER serving signature's output) and ``token_count``
    int32 ``[B]``.
    """
    labels = list(labels)
    outside_id = labels.index(outside_label) if outside_label in labels else 0
    ids = word_predictions_from_subwords(predictions, label_mask, word_count, outside_id=outside_id)
    table = tf.constant(labels)
    tags = tf.ragged.map_flat_values(lambda i: tf.gather(table, i), ids)
    return tags.to_tensor(default_value=""), tf.cast(ids.row_lengths(), tf.int32)
