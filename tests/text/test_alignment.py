"""Word/subword alignment for NER: first-subword labels, truncation, mapping back."""
from __future__ import annotations

import numpy as np
import pytest

from llmos_tf._tf import tf
from llmos_tf.text.alignment import (
    IGNORE_LABEL,
    encode_words,
    split_words,
    word_predictions_from_subwords,
    word_tags_from_subwords,
)
from llmos_tf.text.bert_tokenizer import BertTextEncoder

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "lives", "in", "zu", "##rich",
         ".", ",", "the", "a", "'", "s"]
PAD, UNK, CLS, SEP = 0, 1, 2, 3
TAGS = ["O", "B-PER", "B-LOC", "I-LOC"]
X = IGNORE_LABEL


@pytest.fixture(scope="module")
def text_encoder():
    return BertTextEncoder(VOCAB, sequence_length=8)


def test_first_subword_labels_and_punctuation(text_encoder):
    words = split_words(tf.constant(["John lives in Zurich ."]))
    out = encode_words(text_encoder, words, tf.ragged.constant([[1, 0, 0, 2, 0]]))
    np.testing.assert_array_equal(out["token_ids"], [[CLS, 5, 6, 7, 8, 9, 10, SEP]])
    np.testing.assert_array_equal(out["labels"], [[X, 1, 0, 0, 2, X, 0, X]])
    np.testing.assert_array_equal(out["label_mask"], [[0, 1, 1, 1, 1, 0, 1, 0]])
    np.testing.assert_array_equal(out["word_ids"], [[-1, 0, 1, 2, 3, 3, 4, -1]])
    np.testing.assert_array_equal(out["word_count"], [5])
    np.testing.assert_array_equal(out["dropped_words"], [0])


def test_punctuation_inside_a_word_splits_into_subwords(text_encoder):
    # "john's" is one whitespace token -> john ' s: one label, two ignored pieces
    out = encode_words(text_encoder, split_words(tf.constant(["john's zurich"])),
                       tf.ragged.constant([[1, 2]]))
    np.testing.assert_array_equal(out["token_ids"][0, :7], [CLS, 5, 14, 15, 8, 9, SEP])
    np.testing.assert_array_equal(out["labels"][0, :7], [X, 1, X, X, 2, X, X])


def test_unknown_and_empty_words_keep_one_position(text_encoder):
    # "xyz" -> [UNK]; "\u200b" tokenizes to nothing and becomes [UNK] too
    words = tf.ragged.constant([["xyz", "\u200b", "the"]])
    out = encode_words(text_encoder, words, tf.ragged.constant([[1, 0, 0]]))
    np.testing.assert_array_equal(out["token_ids"][0, :5], [CLS, UNK, UNK, 12, SEP])
    np.testing.assert_array_equal(out["labels"][0, :5], [X, 1, 0, 0, X])
    np.testing.assert_array_equal(out["word_count"], [3])


def test_padding_and_empty_sentence(text_encoder):
    words = split_words(tf.constant(["the", ""]))
    out = encode_words(text_encoder, words, tf.ragged.constant([[0], []], dtype=tf.int32))
    assert out["token_ids"].shape == (2, 8)
    np.testing.assert_array_equal(out["token_ids"], [[CLS, 12, SEP] + [PAD] * 5, [CLS, SEP] + [PAD] * 6])
    np.testing.assert_array_equal(out["padding_mask"][1], [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out["labels"][1], [X] * 8)
    np.testing.assert_array_equal(out["word_ids"][0], [-1, 0, -1, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(out["word_count"], [1, 0])


def test_truncation_drops_whole_words_and_counts_them(text_encoder):
    # 6 subword slots: the a the a zu##rich -> "zurich" (2 pieces) does not fit whole after 5
    words = split_words(tf.constant(["the a the a the zurich john", "the a the a the a"]))
    tags = tf.ragged.constant([[0, 0, 0, 0, 0, 2, 1], [0, 0, 0, 0, 0, 0]])
    out = encode_words(text_encoder, words, tags)
    np.testing.assert_array_equal(out["token_ids"][0], [CLS, 12, 13, 12, 13, 12, SEP, PAD])
    np.testing.assert_array_equal(out["dropped_words"], [2, 0])
    np.testing.assert_array_equal(out["truncated"], [True, False])
    back = word_predictions_from_subwords(out["labels"], out["label_mask"], out["word_count"],
                                          outside_id=0)
    assert back.to_list() == [[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]


def test_ragged_output(text_encoder):
    out = encode_words(text_encoder, split_words(tf.constant(["the", "john lives"])), padded=False)
    assert isinstance(out["token_ids"], tf.RaggedTensor)
    assert out["token_ids"].to_list() == [[CLS, 12, SEP], [CLS, 5, 6, SEP]]
    # without tags every first subword is labelled 0 (inference)
    assert out["labels"].to_list() == [[X, 0, X], [X, 0, 0, X]]


def test_mapping_back_to_words(text_encoder):
    sentences = tf.constant(["John lives in Zurich .", "zurich john's"])
    out = encode_words(text_encoder, split_words(sentences))
    # fake per-subword probabilities: tag = the word index mod 4, put on every piece
    tag_ids = tf.math.floormod(tf.maximum(out["word_ids"], 0), 4)
    probs = tf.one_hot(tag_ids, 4)
    ids = word_predictions_from_subwords(probs, out["label_mask"], out["word_count"])
    assert ids.to_list() == [[0, 1, 2, 3, 0], [0, 1]]
    tags, count = word_tags_from_subwords(probs, out["label_mask"], out["word_count"], TAGS)
    np.testing.assert_array_equal(count, [5, 2])
    assert tags.numpy().tolist() == [[b"O", b"B-PER", b"B-LOC", b"I-LOC", b"O"],
                                     [b"O", b"B-PER", b"", b"", b""]]


def test_inside_tf_data(text_encoder):
    sentences = ["John lives in Zurich .", "the a", "a"]
    tags = tf.ragged.constant([[1, 0, 0, 2, 0], [0, 0], [0]])
    ds = tf.data.Dataset.from_tensor_slices((sentences, tags)).batch(3).map(
        lambda s, t: encode_words(text_encoder, split_words(s), t))
    out = next(iter(ds))
    assert out["token_ids"].shape == (3, 8)
    np.testing.assert_array_equal(out["label_mask"].numpy().sum(axis=1), [5, 2, 1])
