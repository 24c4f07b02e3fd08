"""BertEncoder and its layers: shapes, masking, get_config round trips, TF-MOT pruning."""
from __future__ import annotations

import numpy as np
import pytest

from llmos_tf._tf import tf, tf_keras
from llmos_tf.models.bert import (
    BertEmbeddings,
    BertEncoder,
    BertPooler,
    TransformerBlock,
    count_parameters,
    get_activation,
)

TINY = dict(vocabulary_size=50, num_layers=2, hidden_dim=16, num_heads=2,
            intermediate_dim=32, max_sequence_length=16, dropout=0.1)


def tiny_inputs(batch=3, length=7, vocab=50, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), dtype=bool)
    mask[1, 4:] = False
    mask[2, 2:] = False
    segments = np.zeros((batch, length), dtype="int32")
    segments[0, 4:] = 1
    return {"token_ids": rng.integers(0, vocab, (batch, length)).astype("int32"),
            "padding_mask": mask, "segment_ids": segments}


@pytest.fixture(scope="module")
def encoder():
    tf_keras.utils.set_random_seed(0)
    return BertEncoder(**TINY)


def test_output_shapes_and_dtypes(encoder):
    out = encoder(tiny_inputs(), training=False)
    assert set(out) == {"sequence_output", "pooled_output"}
    assert out["sequence_output"].shape == (3, 7, 16)
    assert out["pooled_output"].shape == (3, 16)
    assert out["sequence_output"].dtype == tf.float32
    assert np.all(np.abs(out["pooled_output"].numpy()) <= 1.0)  # tanh


def test_segment_ids_optional_and_mask_dtype_free(encoder):
    x = tiny_inputs()
    x["segment_ids"][:] = 0
    full = encoder(x, training=False)["sequence_output"].numpy()
    no_segments = encoder({"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]},
                          training=False)["sequence_output"].numpy()
    int_mask = encoder({**x, "padding_mask": x["padding_mask"].astype("int32")},
                       training=False)["sequence_output"].numpy()
    np.testing.assert_allclose(full, no_segments, atol=1e-6)
    np.testing.assert_allclose(full, int_mask, atol=1e-6)


def test_padded_tokens_do_not_change_real_positions(encoder):
    x = tiny_inputs()
    y = {k: v.copy() for k, v in x.items()}
    y["token_ids"][1, 4:] = (y["token_ids"][1, 4:] + 7) % 50  # change padding only
    a = encoder(x, training=False)["sequence_output"].numpy()[1, :4]
    b = encoder(y, training=False)["sequence_output"].numpy()[1, :4]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_dropout_only_in_training(encoder):
    x = tiny_inputs()
    a = encoder(x, training=False)["pooled_output"].numpy()
    b = encoder(x, training=False)["pooled_output"].numpy()
    c = encoder(x, training=True)["pooled_output"].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_weight_names_are_readable_and_unique(encoder):
    names = [w.name for w in encoder.weights]
    assert len(names) == len(set(names))
    assert "embeddings/token_embedding/embeddings:0" in names
    assert "transformer_layer_1/feedforward_output_dense/kernel:0" in names
    assert "pooler/pooled_dense/kernel:0" in names
    assert count_parameters(encoder) == encoder.count_params()


def test_gelu_variants():
    x = tf.constant([-2.0, -0.5, 0.0, 0.5, 2.0])
    approx = get_activation("gelu_approximate")(x).numpy()
    exact = get_activation("gelu")(x).numpy()
    np.testing.assert_allclose(approx, exact, atol=2e-3)
    assert not np.allclose(approx, exact, atol=1e-7)
    # keras-hub's BertBackbone uses keras.activations.gelu(approximate=True)
    import keras

    np.testing.assert_allclose(approx, keras.activations.gelu(x, approximate=True).numpy(), atol=1e-7)


@pytest.mark.parametrize("layer, call", [
    (BertEmbeddings(50, 8, max_sequence_length=16, num_segments=3, dropout=0.2, name="emb"),
     lambda layer: layer(tf.constant([[1, 2, 3]]), segment_ids=tf.constant([[0, 2, 1]]))),
    (TransformerBlock(2, 12, dropout=0.0, activation="relu", name="block"),
     lambda layer: layer(tf.ones([1, 3, 8]), padding_mask=tf.constant([[1, 1, 0]]))),
    (BertPooler(8, name="pool"), lambda layer: layer(tf.ones([2, 3, 8]))),
])
def test_layer_get_config_round_trip(layer, call):
    out = call(layer)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    call(clone)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(call(clone).numpy(), out.numpy(), atol=1e-6)
    # registered: generic deserialization finds the class by its registered name
    restored = tf_keras.layers.deserialize(tf_keras.layers.serialize(layer))
    assert type(restored) is type(layer)


def test_encoder_get_config_round_trip(encoder):
    config = encoder.get_config()
    assert {k: config[k] for k in TINY} == TINY
    clone = BertEncoder.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(encoder.get_weights())
    x = tiny_inputs()
    np.testing.assert_allclose(clone(x, training=False)["pooled_output"].numpy(),
                               encoder(x, training=False)["pooled_output"].numpy(), atol=1e-6)


def test_keras_format_save_and_load_model(encoder, tmp_path):
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    restored = tf_keras.models.load_model(path)
    assert isinstance(restored, BertEncoder)
    x = tiny_inputs()
    np.testing.assert_allclose(restored(x, training=False)["sequence_output"].numpy(),
                               encoder(x, training=False)["sequence_output"].numpy(), atol=1e-6)


def test_hidden_dim_must_divide_heads():
    with pytest.raises(ValueError, match="divisible"):
        BertEncoder(**{**TINY, "num_heads": 3})


# --------------------------------------------------------------------------- TF-MOT


def test_prune_low_magnitude_accepts_each_layer_type():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude,
    )

    prune = tfmot.sparsity.keras.prune_low_magnitude
    block = TransformerBlock(2, 12, name="block")
    block.build((None, None, 8))
    emb = BertEmbeddings(20, 8, max_sequence_length=8, name="emb")
    for layer in [tf_keras.layers.Dense(4), tf_keras.layers.Embedding(10, 4),
                  tf_keras.layers.MultiHeadAttention(2, 4), emb, block, BertPooler(8)]:
        wrapped = prune(layer)
        assert isinstance(wrapped, PruneLowMagnitude)
        assert wrapped.layer is not None
    assert len(block.get_prunable_weights()) == 6


def test_prune_whole_encoder_model_trains_and_strips():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    sparsity = tfmot.sparsity.keras
    tf_keras.utils.set_random_seed(1)
    encoder = BertEncoder(**{**TINY, "num_layers": 1})
    inputs = {k: tf_keras.Input(shape=(None,), dtype="int32", name=k)
              for k in ("token_ids", "padding_mask", "segment_ids")}
    logits = tf_keras.layers.Dense(2, name="out")(encoder(inputs)["pooled_output"])
    model = tf_keras.Model(inputs, logits)

    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, begin_step=0, frequency=1))
    inner = next(layer for layer in pruned.layers if isinstance(layer, tf_keras.Model))
    wrapped = {type(layer.layer).__name__ for layer in inner.layers
               if type(layer).__name__ == "PruneLowMagnitude"}
    assert wrapped == {"BertEmbeddings", "TransformerBlock", "BertPooler"}

    pruned.compile(optimizer="adam",
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = tiny_inputs()
    x["padding_mask"] = x["padding_mask"].astype("int32")
    pruned.fit(x, np.array([0, 1, 0]), epochs=1, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    kernel = next(w for w in stripped.weights
                  if "feedforward_intermediate_dense/kernel" in w.name).numpy()
    assert abs(float(np.mean(kernel == 0)) - 0.5) < 0.05
    assert stripped(x).shape == (3, 2)
