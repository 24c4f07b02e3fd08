"""Int8 weights inside the SavedModel: small on disk, zeros kept, and served by plain TensorFlow."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.compression.conftest import bert_batch, tiny_bert_classifier

# Runs in a fresh interpreter that imports nothing but what tensorflow_model_server links.
PLAIN_TF = r"""
import json, sys
import tensorflow as tf, tensorflow_text  # noqa: F401
path, texts, signature = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
out = tf.saved_model.load(path).signatures[signature](text=tf.constant(texts))
assert not any(m.startswith("llmos_tf") for m in sys.modules), "llmos_tf was imported"
print(json.dumps({k: v.numpy().tolist() if v.dtype != tf.string else [x.decode() if isinstance(x, bytes) else [y.decode() for y in x] for x in v.numpy()] for k, v in out.items()}))
"""


def plain_tf_answers(path, texts, signature: str = "serving_default") -> dict:
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN_TF, str(path), json.dumps(list(texts)), signature],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_quantize_symmetric_keeps_zeros_and_scales_per_output_channel():
    from llmos_tf.compression.int8_weights import quantize_symmetric

    w = np.array([[0.0, 1.0], [0.5, -2.0], [0.0, 0.25]], np.float32)
    q, scale = quantize_symmetric(w, (0,))
    assert q.dtype == np.int8 and scale.shape == (1, 2)
    assert q[0, 0] == 0 and q[2, 0] == 0
    assert np.abs(q).max(axis=0).tolist() == [127, 127]
    np.testing.assert_allclose(q * scale, w, atol=2.0 / 254)


@pytest.mark.parametrize("equation,rank,expected", [("abc,cde->abde", 3, (0,)), ("abcd,cde->abe", 3, (0, 1)), ("ab,bc->ac", 2, (0,))])
def test_einsum_input_axes(equation, rank, expected):
    from llmos_tf.compression.int8_weights import _einsum_input_axes

    assert _einsum_input_axes(equation, rank) == expected


def test_quantized_bert_matches_float_and_stores_int8(tmp_path):
    from llmos_tf._tf import tf
    from llmos_tf.compression.int8_weights import QuantizedModel

    model = tiny_bert_classifier(vocabulary_size=1200)  # the token table (1200 x 16) is large enough to quantize
    inputs, _ = bert_batch(vocabulary_size=1200)
    quantized = QuantizedModel(model, min_elements=256)
    names = quantized.summary()["quantized_weights"]
    assert any("query/kernel" in n for n in names) and any("attention_output/kernel" in n for n in names)
    assert any("token_embedding" in n for n in names)
    expected = model(inputs, training=False).numpy()
    got = quantized(inputs).numpy()
    assert np.abs(got - expected).max() < 0.02
    # the float kernels are not part of what gets saved
    saved = {v.ref() for v in quantized.variables}
    assert not any(v.ref() in saved for t in quantized._targets for v in [t.variable])
    assert all(v.dtype == tf.int8 for v in quantized.compact_weights)


def test_int8_export_is_small_keeps_zeros_and_agrees_with_float(tiny_run, pruned, validation_texts, tmp_path):
    from llmos_tf._tf import tf
    from llmos_tf.export.writer import export_model

    float_dir = export_model(tiny_run, pruned.model, tmp_path, "float", weights="float32")
    int8_dir = export_model(tiny_run, pruned.model, tmp_path, "int8", weights="int8")
    size = lambda p: sum(f.stat().st_size for f in (p / "variables").iterdir())  # noqa: E731
    assert size(int8_dir) < 0.5 * size(float_dir)  # tiny model: biases and the tokenizer stay as they are

    reader = tf.train.load_checkpoint(str(int8_dir / "variables" / "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    int8_values = [reader.get_tensor(k) for k, d in dtypes.items() if d == tf.int8]
    assert int8_values, "no int8 variable in the SavedModel"
    zeros = sum(int((v == 0).sum()) for v in int8_values) / sum(v.size for v in int8_values)
    assert zeros > 0.7, f"pruning's zeros did not survive quantization ({zeros:.2f} zeros)"

    texts = validation_texts[:120]
    plain = plain_tf_answers(int8_dir, texts)
    reference = tf.saved_model.load(str(float_dir)).signatures["serving_default"](text=tf.constant(texts))
    agree = np.mean(np.asarray(plain["class_id"]) == reference["class_id"].numpy())
    assert agree >= 0.98, f"int8 SavedModel agrees with the float model on {agree:.1%} of {len(texts)} texts"
    card = json.loads((int8_dir / "assets" / "llmos.json").read_text())
    assert card["savedmodel_weights"]["weight_dtype"] == "int8"


def test_int4_rows_pack_two_values_per_byte_and_keep_zeros():
    from llmos_tf._tf import tf
    from llmos_tf.compression.int8_weights import dequantize_int4_rows, quantize_int4_rows

    rng = np.random.default_rng(0)
    table = rng.normal(size=(10, 128)).astype(np.float32)
    table[3, :70] = 0.0
    packed, scale = quantize_int4_rows(table)
    assert packed.dtype == np.uint8 and packed.shape == (10, 64) and scale.shape == (10, 2) and scale.dtype == np.float16
    rows = tf.gather(packed, [[3, 0], [9, 9]])
    back = dequantize_int4_rows(rows, tf.gather(scale, [[3, 0], [9, 9]])).numpy()
    assert back.shape == (2, 2, 128)
    assert np.all(back[0, 0, :70] == 0.0)
    step = np.abs(table[0].reshape(2, 64)).max(axis=1).repeat(64) / 7
    assert np.all(np.abs(back[0, 1] - table[0]) <= step / 2 + 1e-3)


def test_quantized_model_with_4bit_vocabulary_table(tmp_path):
    from llmos_tf._tf import tf
    from llmos_tf.compression.int8_weights import QuantizedModel

    from llmos_tf.models.bert import BertEncoder
    from llmos_tf.models.heads import build_sentence_classifier

    encoder = BertEncoder(vocabulary_size=5000, num_layers=1, hidden_dim=64, num_heads=2, intermediate_dim=64, max_sequence_length=16)
    model = build_sentence_classifier(encoder, 3, pooling="mean", dropout=0.0)
    inputs, _ = bert_batch(vocabulary_size=5000, length=12)
    quantized = QuantizedModel(model, embedding_bits=4)
    dtypes = {v.name.split(":")[0].split("/")[-1]: v.dtype for v in quantized.compact_weights}
    assert any(d == tf.uint8 for d in dtypes.values()), dtypes  # the 5000-row table is packed 4-bit
    np.testing.assert_allclose(quantized(inputs).numpy(), model(inputs, training=False).numpy(), atol=0.05)
