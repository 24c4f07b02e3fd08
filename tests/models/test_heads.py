"""Sentence and token classification heads on the tf_keras BERT encoder."""
from __future__ import annotations

import numpy as np
import pytest

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError
from llmos_tf.models.bert import BertEncoder
from llmos_tf.models.heads import (
    MaskedMeanPooling,
    build_sentence_classifier,
    build_token_classifier,
)


@pytest.fixture(scope="module")
def encoder():
    tf_keras.utils.set_random_seed(0)
    return BertEncoder(vocabulary_size=40, num_layers=1, hidden_dim=8, num_heads=2,
                       intermediate_dim=16, max_sequence_length=12)


def batch():
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=bool)
    return {"token_ids": np.array([[2, 5, 6, 7, 3], [2, 9, 3, 0, 0]], dtype="int32"),
            "padding_mask": mask, "segment_ids": np.zeros((2, 5), dtype="int32")}


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sentence_classifier_shapes(encoder, pooling):
    model = build_sentence_classifier(encoder, num_labels=4, pooling=pooling, dropout=0.1)
    assert sorted(model.input) == ["padding_mask", "segment_ids", "token_ids"]
    probs = model(batch(), training=False).numpy()
    assert probs.shape == (2, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)


def test_token_classifier_shapes(encoder):
    model = build_token_classifier(encoder, num_tags=9)
    probs = model(batch(), training=False).numpy()
    assert probs.shape == (2, 5, 9) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)


def test_heads_share_the_encoder(encoder):
    classifier = build_sentence_classifier(encoder, 2)
    tagger = build_token_classifier(encoder, 3)
    shared = {id(w) for w in encoder.weights}
    assert shared <= {id(w) for w in classifier.weights}
    assert shared <= {id(w) for w in tagger.weights}


def test_masked_mean_pooling_ignores_padding():
    seq = tf.constant([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                       [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = tf.constant([[True, True, False], [False, False, False]])
    out = MaskedMeanPooling()(seq, padding_mask=mask).numpy()
    np.testing.assert_allclose(out, [[2.0, 3.0], [0.0, 0.0]])
    layer = MaskedMeanPooling(name="pool")
    assert MaskedMeanPooling.from_config(layer.get_config()).get_config() == layer.get_config()


def test_classifier_trains_one_step_and_round_trips(encoder, tmp_path):
    model = build_sentence_classifier(encoder, 2, pooling="mean")
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = batch()
    x["padding_mask"] = x["padding_mask"].astype("int32")
    history = model.fit(x, np.array([0, 1]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "classifier.keras"
    model.save(path)
    restored = tf_keras.models.load_model(path)
    np.testing.assert_allclose(restored(x, training=False).numpy(),
                               model(x, training=False).numpy(), atol=1e-6)


def test_bad_head_arguments(encoder):
    with pytest.raises(ConfigError, match="pooling='max'"):
        build_sentence_classifier(encoder, 2, pooling="max")
    with pytest.raises(ConfigError, match="num_labels=0"):
        build_sentence_classifier(encoder, 0)
    with pytest.raises(ConfigError, match="dropout=1.5"):
        build_token_classifier(encoder, 3, dropout=1.5)
