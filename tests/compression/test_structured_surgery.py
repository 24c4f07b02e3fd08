"""Structured surgery: smaller kernels that compute what the masked dense model computes."""
from __future__ import annotations

import numpy as np
import pytest

from tests.compression.conftest import bert_batch, tiny_bert_classifier


@pytest.fixture(scope="module")
def dense():
    from llmos_tf._tf import tf_keras

    tf_keras.utils.set_random_seed(3)
    model = tiny_bert_classifier(vocabulary_size=64)
    x, _ = bert_batch(8, vocabulary_size=64)
    model(x)
    # random init has tiny biases and near-uniform outputs; spread the weights so differences would show
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def masked_copy(model, removed_heads: dict, removed_neurons: dict):
    """The dense model with removed heads' output-projection slices and removed neurons' output rows zeroed."""
    from llmos_tf.compression.pruning import copy_model
    from llmos_tf.compression.structured.surgery import encoder_of

    copy = copy_model(model)
    for i, block in enumerate(encoder_of(copy).transformer_layers):
        out = block.attention._output_dense.kernel
        value = out.numpy()
        value[removed_heads.get(i, [])] = 0.0
        out.assign(value)
        ffn = block.output_dense.kernel
        value = ffn.numpy()
        value[removed_neurons.get(i, [])] = 0.0
        ffn.assign(value)
    return copy


def test_pruned_heads_and_neurons_have_smaller_kernels_and_match_the_masked_model(dense):
    from llmos_tf.compression.structured.surgery import encoder_of, rebuild

    small = rebuild(dense, keep_heads={0: [1]}, keep_neurons={0: list(range(0, 32, 2)), 1: list(range(5, 32))})
    blocks = encoder_of(small).transformer_layers
    a = blocks[0].attention
    assert a._query_dense.kernel.shape == (16, 1, 8) and a._key_dense.kernel.shape == (16, 1, 8)
    assert a._value_dense.kernel.shape == (16, 1, 8) and a._output_dense.kernel.shape == (1, 8, 16)
    assert blocks[0].intermediate_dense.kernel.shape == (16, 16) and blocks[0].output_dense.kernel.shape == (16, 16)
    assert blocks[1].attention._query_dense.kernel.shape == (16, 2, 8)
    assert blocks[1].intermediate_dense.kernel.shape == (16, 27) and blocks[1].intermediate_dense.bias.shape == (27,)
    x, _ = bert_batch(16, vocabulary_size=64, seed=5)
    masked = masked_copy(dense, {0: [0]}, {0: list(range(1, 32, 2)), 1: list(range(5))})
    expected = masked(x, training=False).numpy()
    np.testing.assert_allclose(small(x, training=False).numpy(), expected, atol=1e-5)
    assert np.abs(dense(x, training=False).numpy() - expected).max() > 1e-3  # the mask did change the function


def test_kept_layers_and_tokens(dense):
    from llmos_tf.compression.structured.surgery import describe, encoder_of, rebuild

    keep = np.array([0, 1, 2, 3] + list(range(10, 40)))
    small = rebuild(dense, keep_tokens=keep, keep_layers=[1])
    assert describe(small) == {"vocabulary_size": 34, "layers": 1, "heads": [2], "key_dim": 8, "ffn_units": [32]}
    x, _ = bert_batch(8, vocabulary_size=64, seed=2)
    ids = x["token_ids"]
    x_small = dict(x, token_ids=np.searchsorted(keep, np.where(np.isin(ids, keep), ids, 0)).astype("int32"))
    x_dense = dict(x, token_ids=np.where(np.isin(ids, keep), ids, 0).astype("int32"))
    # the reference: the dense encoder's embeddings, then block 1 alone, then the same head
    reference = rebuild(dense, keep_layers=[1])
    np.testing.assert_allclose(small(x_small, training=False).numpy(), reference(x_dense, training=False).numpy(), atol=1e-5)
    table = encoder_of(small).embeddings.token_embedding.embeddings.numpy()
    np.testing.assert_array_equal(table, encoder_of(dense).embeddings.token_embedding.embeddings.numpy()[keep])


def test_rebuilt_encoder_config_round_trips(dense):
    from llmos_tf.compression.structured.surgery import encoder_of, rebuild
    from llmos_tf.models.bert import BertEncoder

    encoder = encoder_of(rebuild(dense, keep_heads={1: [0]}, keep_neurons={0: [3, 4]}))
    again = BertEncoder.from_config(encoder.get_config())
    assert [b.attention._query_dense.kernel.shape[1] for b in again.transformer_layers] == [2, 1]
    assert [b.intermediate_dense.kernel.shape[1] for b in again.transformer_layers] == [2, 32]


def test_bad_keep_lists_are_refused(dense):
    from llmos_tf.compression.structured.surgery import rebuild
    from llmos_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="keep_layers"):
        rebuild(dense, keep_layers=[0, 2])
    with pytest.raises(ConfigError, match="heads of layer 0"):
        rebuild(dense, keep_heads={0: []})


def test_lowest_removes_globally_but_keeps_one_per_layer():
    from llmos_tf.compression.structured.importance import lowest

    scores = [np.array([0.1, 0.2, 0.9]), np.array([0.05, 0.01])]
    assert lowest(scores, 0.6) == {0: [2], 1: [0]}  # 3 of 5 removed; layer 1 keeps its best
    assert lowest(scores, 0.2) == {0: [0, 1, 2], 1: [0]}


def test_flops_shrink_with_the_structure(dense):
    from llmos_tf.compression.structured.flops import model_flops, parameter_count
    from llmos_tf.compression.structured.surgery import rebuild

    L, H = 10.0, 16.0
    per_block = 2 * L * H * 16 * 4 + 2 * 2 * L * L * 16 + 2 * 2 * L * H * 32
    assert model_flops(dense, L) == pytest.approx(2 * per_block + 2 * H * H + 2 * H * 3)
    small = rebuild(dense, keep_layers=[0], keep_heads={0: [0]})
    assert model_flops(small, L) == pytest.approx(2 * L * H * 8 * 4 + 2 * 2 * L * L * 8 + 2 * 2 * L * H * 32 + 2 * H * H + 2 * H * 3)
    assert parameter_count(small) < parameter_count(dense)
