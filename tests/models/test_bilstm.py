import numpy as np
import pytest

from llmos_tf._tf import tf, tf_keras
from llmos_tf.models.bilstm import BiLSTMConfig, build_bilstm_classifier
from llmos_tf.models.layers import MaskedMaxMeanPooling


@pytest.mark.parametrize("layers, labels", [(1, 2), (2, 5)])
def test_shapes_and_probabilities(layers, labels):
    model = build_bilstm_classifier(BiLSTMConfig(embedding_dim=8, lstm_units=8, lstm_layers=layers), vocabulary_size=50, num_labels=labels)
    probs = model(tf.constant([[3, 4, 5, 0], [7, 0, 0, 0]]), training=False).numpy()
    assert probs.shape == (2, labels)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_padding_does_not_change_the_output():
    model = build_bilstm_classifier(BiLSTMConfig(embedding_dim=8, lstm_units=8, lstm_layers=2), vocabulary_size=50, num_labels=3)
    short = model(tf.constant([[3, 4, 5]]), training=False)
    padded = model(tf.constant([[3, 4, 5, 0, 0, 0, 0]]), training=False)
    np.testing.assert_allclose(short, padded, atol=1e-6)


def test_pooling_ignores_masked_steps_and_get_config():
    x = tf.constant([[[1.0], [5.0], [100.0]]])
    out = MaskedMaxMeanPooling()(x, mask=tf.constant([[True, True, False]])).numpy()
    np.testing.assert_allclose(out, [[5.0, 3.0]])
    empty = MaskedMaxMeanPooling()(x, mask=tf.constant([[False, False, False]])).numpy()
    np.testing.assert_allclose(empty, [[0.0, 0.0]])
    layer = MaskedMaxMeanPooling(name="p")
    assert MaskedMaxMeanPooling.from_config(layer.get_config()).name == "p"


def test_save_and_load_round_trip(tmp_path):
    model = build_bilstm_classifier(BiLSTMConfig(embedding_dim=8, lstm_units=8), vocabulary_size=40, num_labels=2)
    x = tf.constant([[1, 2, 3, 0]])
    path = tmp_path / "model.keras"
    model.save(path)
    again = tf_keras.models.load_model(path)
    np.testing.assert_allclose(model(x, training=False), again(x, training=False), atol=1e-6)
    assert again.get_config() == model.get_config()
