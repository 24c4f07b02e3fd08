"""The fused inference BiLSTM computes what Keras' Bidirectional(LSTM) computes, and exports use it."""
import numpy as np
import pytest

from llmos_tf._tf import tf, tf_keras
from llmos_tf.compression.int8_weights import QuantizedModel
from llmos_tf.models import fused_lstm
from llmos_tf.models.bilstm import BiLSTMConfig, build_bilstm_classifier


def _random_model(layers: int = 2) -> tf_keras.Model:
    tf_keras.utils.set_random_seed(3)
    config = BiLSTMConfig(embedding_dim=24, lstm_units=16, lstm_layers=layers, dropout=0.0, embedding_dropout=0.0)
    model = build_bilstm_classifier(config, vocabulary_size=300, num_labels=3)
    for weight in model.weights:  # large enough weights that a wrong gate or direction shows
        if "kernel" in weight.name:
            weight.assign(tf.random.normal(weight.shape, stddev=0.3, seed=1))
    return model


def _right_padded_ids(lengths, steps=None, seed=0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    steps = steps or max(lengths)
    ids = np.zeros((len(lengths), steps), np.int32)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, 300, length)
    return tf.constant(ids)


def test_layer_outputs_match_keras_at_valid_steps_and_are_zero_at_padding():
    layer = tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(8, return_sequences=True))
    x = tf.random.normal([4, 7, 5], seed=2)
    mask = tf.sequence_mask([7, 3, 1, 5], 7)
    expected = layer(x, mask=mask)
    assert fused_lstm.supports(layer)
    got = fused_lstm.bidirectional_lstm(layer, x, mask)
    valid = tf.cast(mask, tf.float32)[:, :, None]
    np.testing.assert_allclose((got * valid).numpy(), (expected * valid).numpy(), atol=1e-5)
    np.testing.assert_array_equal((got * (1 - valid)).numpy(), 0.0)


def test_unsupported_layers_keep_keras():
    assert not fused_lstm.supports(tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(4, return_sequences=True), merge_mode="sum"))
    assert not fused_lstm.supports(tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(4, return_sequences=True, activation="relu")))
    assert not fused_lstm.supports(tf_keras.layers.LSTM(4, return_sequences=True))


@pytest.mark.parametrize("weight_dtype", ["float32", "int8"])
def test_quantized_model_traces_the_fused_lstm_with_the_same_answers(weight_dtype):
    model = _random_model()
    ids = _right_padded_ids([9, 4, 1, 6, 9], steps=11)  # extra all-padding columns, as a length group may have
    keras_module = QuantizedModel(model, weight_dtype=weight_dtype, fused_lstm_dtype=None, min_elements=64)
    fused_module = QuantizedModel(model, weight_dtype=weight_dtype, min_elements=64)
    assert fused_module.summary()["fused_lstm"]["layers"] == ["bilstm_1", "bilstm_2"]
    expected = tf.function(keras_module.__call__)(ids).numpy()
    got = tf.function(fused_module.__call__)(ids).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the traced graph really is the fused one: one loop per BiLSTM layer instead of one per direction
    graph = tf.function(fused_module.__call__).get_concrete_function(tf.TensorSpec([None, None], tf.int32)).graph
    assert sum(op.type == "While" or op.type == "StatelessWhile" for op in graph.get_operations()) == 2


def test_bfloat16_matmuls_stay_close_to_float():
    model = _random_model(layers=1)
    ids = _right_padded_ids([12, 5, 8])
    float_probs = QuantizedModel(model, weight_dtype="float32")(ids).numpy()
    bf16_probs = QuantizedModel(model, weight_dtype="float32", fused_lstm_dtype="bfloat16")(ids).numpy()
    assert np.abs(bf16_probs - float_probs).max() < 0.03
    with pytest.raises(ValueError, match="fused_lstm_dtype"):
        QuantizedModel(model, fused_lstm_dtype="float16")


def test_export_cli_bfloat16_lstm_is_recorded_and_close_to_the_run(tmp_path, trained_run):
    import json

    from llmos_tf.cli import main
    from llmos_tf.tasks.classification import TrainedRun

    assert main(["export", "--run", str(trained_run), "--model_base_path", str(tmp_path), "--name", "bf16",
                 "--lstm_matmul_dtype", "bfloat16"]) == 0
    version = tmp_path / "bf16" / "1"
    card = json.loads((version / "assets" / "llmos.json").read_text(encoding="utf-8"))
    assert card["fused_lstm"] == {"layers": ["bilstm_1"], "compute_dtype": "bfloat16"}
    texts = ["the film was wonderful and lovely", "the plot was dull and boring"]
    served = tf.saved_model.load(str(version)).signatures["serving_default"](text=tf.constant(texts))["probabilities"].numpy()
    assert np.abs(served - TrainedRun.load(trained_run).predict_proba(texts)).max() < 0.02
