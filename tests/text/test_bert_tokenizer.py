"""BertTextEncoder: raw strings -> BERT inputs, eager, in tf.data and in a SavedModel."""
from __future__ import annotations

import numpy as np
import pytest

from llmos_tf._tf import tf
from llmos_tf.errors import CheckpointError
from llmos_tf.text.bert_tokenizer import BertTextEncoder, detect_lowercase

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "great", "dull",
         "!", ",", "un", "##great", "a"]
PAD, UNK, CLS, SEP = 0, 1, 2, 3


@pytest.fixture(scope="module")
def encoder():
    return BertTextEncoder(VOCAB, sequence_length=6)


def test_padded_output(encoder):
    out = encoder(tf.constant(["The film was GREAT!", "dull"]))
    assert set(out) == {"token_ids", "padding_mask", "segment_ids", "truncated"}
    assert out["token_ids"].shape == (2, 6) and out["token_ids"].dtype == tf.int32
    np.testing.assert_array_equal(out["token_ids"], [[CLS, 5, 6, 7, 8, SEP], [CLS, 9, SEP, PAD, PAD, PAD]])
    np.testing.assert_array_equal(out["padding_mask"], [[1] * 6, [1, 1, 1, 0, 0, 0]])
    assert out["padding_mask"].dtype == tf.bool
    np.testing.assert_array_equal(out["segment_ids"], np.zeros((2, 6)))
    np.testing.assert_array_equal(out["truncated"], [True, False])  # "!" was cut


def test_ragged_output_for_bucketing(encoder):
    out = encoder(tf.constant(["the film", "ungreat , unknownword"]), padded=False)
    assert isinstance(out["token_ids"], tf.RaggedTensor)
    assert out["token_ids"].to_list() == [[CLS, 5, 6, SEP], [CLS, 12, 13, 11, UNK, SEP]]
    assert out["padding_mask"].to_list() == [[True] * 4, [True] * 6]
    np.testing.assert_array_equal(out["truncated"], [False, False])


def test_empty_text_and_exact_fit(encoder):
    out = encoder(tf.constant(["", "the film was great"]))
    np.testing.assert_array_equal(out["token_ids"][0], [CLS, SEP, PAD, PAD, PAD, PAD])
    np.testing.assert_array_equal(out["truncated"], [False, False])


def test_sentence_pairs(encoder):
    wide = BertTextEncoder(VOCAB, sequence_length=9)
    out = wide(tf.constant(["the film"]), pair=tf.constant(["was great"]))
    np.testing.assert_array_equal(out["token_ids"], [[CLS, 5, 6, SEP, 7, 8, SEP, PAD, PAD]])
    np.testing.assert_array_equal(out["segment_ids"], [[0, 0, 0, 0, 1, 1, 1, 0, 0]])
    # longest-first truncation keeps some of both segments
    out = encoder(tf.constant(["the film was great"]), pair=tf.constant(["a dull film"]))
    np.testing.assert_array_equal(out["token_ids"], [[CLS, 5, SEP, 14, 9, SEP]])
    np.testing.assert_array_equal(out["truncated"], [True])


def test_lowercase_detection():
    assert detect_lowercase(VOCAB)
    cased = VOCAB + [f"Word{i}" for i in range(20)]
    assert not detect_lowercase(cased)
    enc = BertTextEncoder(cased, sequence_length=8, lowercase=None)
    assert enc.lowercase is False
    assert BertTextEncoder.from_checkpoint_info(VOCAB, {"lowercase": True, "config": {
        "max_sequence_length": 32}}).sequence_length == 32


def test_missing_special_tokens():
    with pytest.raises(CheckpointError, match=r"\['\[CLS\]', '\[SEP\]'\]"):
        BertTextEncoder(["[PAD]", "[UNK]", "a"])


def test_inside_tf_data(encoder):
    ds = (tf.data.Dataset.from_tensor_slices(["the film", "was great !", "dull"])
          .batch(2, drop_remainder=True).map(encoder))
    first = next(iter(ds))
    assert first["token_ids"].shape == (2, 6)
    assert int(tf.reduce_sum(tf.cast(first["truncated"], tf.int32))) == 0


def test_saved_model_carries_the_tokenizer(encoder, tmp_path):
    module = tf.Module()
    module.text_encoder = encoder
    module.encode = tf.function(lambda texts: encoder(texts),
                                input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "sm"))
    restored = tf.saved_model.load(str(tmp_path / "sm"))
    out = restored.encode(tf.constant(["the film"]))
    np.testing.assert_array_equal(out["token_ids"], [[CLS, 5, 6, SEP, PAD, PAD]])
