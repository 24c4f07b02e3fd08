"""Every TFLite variant loads, runs and agrees with the float model on >= 98% of fixture predictions."""
from __future__ import annotations

import numpy as np
import pytest

from llmos_tf.compression.run_data import model_inputs, representative_inputs
from llmos_tf.compression.tflite import TFLiteRunner, convert_to_tflite, make_interpreter
from tests.compression.conftest import bert_batch, tiny_bert_classifier


def _agreement(run, model, content, texts) -> float:
    runner = TFLiteRunner(make_interpreter(content))
    inputs = model_inputs(run, texts)
    expected = model(inputs["token_ids"]).numpy().argmax(-1)
    got = runner(inputs).argmax(-1)
    return float(np.mean(expected == got))


@pytest.mark.parametrize("mode", ["dynamic", "float16"])
def test_lstm_variants_agree_with_float(tiny_run, pruned, validation_texts, mode):
    example = representative_inputs(tiny_run, 1)
    conversion = convert_to_tflite(pruned.model, mode, example_inputs=example, max_length=tiny_run.max_length)
    # the LSTM loop needs static shapes with builtin ops only, and says so
    assert conversion.static_shape == [1, tiny_run.max_length] and not conversion.select_tf_ops
    assert any("static input shape" in n for n in conversion.notes)
    assert _agreement(tiny_run, pruned.model, conversion.content, validation_texts) >= 0.98


def test_lstm_int8_is_refused_with_the_reason(tiny_run):
    from llmos_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="calibrator crashes"):
        convert_to_tflite(tiny_run.model, "int8", example_inputs=representative_inputs(tiny_run, 1), max_length=tiny_run.max_length)


@pytest.mark.parametrize("mode", ["dynamic", "int8", "float16"])
def test_bert_variants_agree_with_float_with_dynamic_shapes(mode):
    from llmos_tf._tf import tf_keras

    tf_keras.utils.set_random_seed(3)
    model = tiny_bert_classifier()
    x, y = bert_batch(64)
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=20, batch_size=16, verbose=0)  # confident outputs, as a trained model has
    example = [{k: v[:1] for k, v in x.items()}]
    representative = [{k: v[i:i + 1] for k, v in x.items()} for i in range(64)] if mode == "int8" else None
    conversion = convert_to_tflite(model, mode, example_inputs=example, representative=representative)
    assert conversion.static_shape is None
    runner = TFLiteRunner(make_interpreter(conversion.content))
    # measured on examples neither the training nor the int8 calibration saw (calibration ranges fitted
    # to the very batch they are scored on would flatter int8)
    held_out, _ = bert_batch(256, seed=1)
    got = runner(held_out)  # a whole batch at once
    expected = model(held_out).numpy()
    assert got.shape == expected.shape
    agreement = np.mean(got.argmax(-1) == expected.argmax(-1))
    # full-integer int8 too: the masked attention softmax stays float (measured here: int8 0.992, dynamic 0.996, float16 1.0)
    assert agreement >= 0.98, agreement


def test_unknown_mode_is_a_clear_error(pruned):
    from llmos_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="valid modes"):
        convert_to_tflite(pruned.model, "int4", example_inputs=[])
