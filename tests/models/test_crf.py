"""The CRF layer against brute force: every one of the K**n tag sequences of a 3-token, 3-tag fixture."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from llmos_tf._tf import tf, tf_keras
from llmos_tf.models.crf import CRF, CRFLoss, crf_log_likelihood, find_crf, log_probabilities, viterbi_decode

K = 3
RNG = np.random.default_rng(7)
TRANSITIONS = RNG.normal(size=(K, K)).astype(np.float32)
START = RNG.normal(size=K).astype(np.float32)
END = RNG.normal(size=K).astype(np.float32)
# rows of 4 positions; the masks keep 3, 3 (not a prefix), 2, 1 and 0 of them
SCORES = RNG.normal(size=(5, 4, K)).astype(np.float32) * 2
MASKS = np.array([[1, 1, 1, 0], [1, 0, 1, 1], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]], bool)
TAGS = np.array([[2, 0, 1, 0], [1, 2, 0, 2], [0, 2, 2, 1], [1, 1, 0, 1], [0, 0, 0, 0]], np.int32)


def path_score(scores: np.ndarray, path: tuple[int, ...]) -> float:
    """The CRF score of one path over the kept positions (scores [n, K])."""
    if not path:
        return 0.0
    total = START[path[0]] + END[path[-1]] + sum(scores[i, t] for i, t in enumerate(path))
    return float(total + sum(TRANSITIONS[a, b] for a, b in zip(path, path[1:])))


def brute_force(scores: np.ndarray, mask: np.ndarray) -> tuple[float, tuple[int, ...], float]:
    """(log Z, best path, best score) over the kept positions by enumerating all K**n paths."""
    kept = scores[mask]
    paths = list(itertools.product(range(K), repeat=len(kept)))
    values = np.array([path_score(kept, p) for p in paths], np.float64)
    log_z = float(np.log(np.exp(values - values.max()).sum()) + values.max()) if len(kept) else 0.0
    best = int(np.argmax(values))
    return log_z, paths[best], float(values[best]) if len(kept) else 0.0


def test_fixture_covers_3_tokens_3_tags_and_masks():
    assert MASKS.sum(axis=1).tolist() == [3, 3, 2, 1, 0] and not MASKS[1][:3].all()


@pytest.mark.parametrize("use_mask", [False, True])
def test_log_likelihood_matches_enumeration(use_mask):
    scores = SCORES[:, :3] if not use_mask else SCORES
    masks = np.ones(scores.shape[:2], bool) if not use_mask else MASKS
    tags = TAGS[:, : scores.shape[1]]
    got = crf_log_likelihood(scores, tags, masks if use_mask else None, TRANSITIONS, START, END).numpy()
    for row in range(len(scores)):
        log_z, _, _ = brute_force(scores[row], masks[row])
        expected = path_score(scores[row][masks[row]], tuple(tags[row][masks[row]])) - log_z
        np.testing.assert_allclose(got[row], expected, rtol=1e-5, atol=1e-5)
    if use_mask:
        assert got[-1] == 0.0  # nothing kept: log p = 0


@pytest.mark.parametrize("use_mask", [False, True])
def test_viterbi_matches_enumeration(use_mask):
    scores = SCORES[:, :3] if not use_mask else SCORES
    masks = np.ones(scores.shape[:2], bool) if not use_mask else MASKS
    tags, best = viterbi_decode(scores, masks if use_mask else None, TRANSITIONS, START, END)
    tags, best = tags.numpy(), best.numpy()
    assert tags.dtype == np.int32 and tags.shape == scores.shape[:2]
    for row in range(len(scores)):
        _, path, value = brute_force(scores[row], masks[row])
        assert tuple(tags[row][masks[row]]) == path
        assert (tags[row][~masks[row]] == 0).all()
        np.testing.assert_allclose(best[row], value, rtol=1e-5, atol=1e-5)


def test_transitions_change_the_best_path():
    """Same unary scores, a forbidding transition: Viterbi leaves the per-token argmax."""
    scores = np.array([[[2.0, 1.0, 0.0], [2.0, 1.9, 0.0], [0.0, 0.0, 3.0]]], np.float32)
    forbid = np.zeros((K, K), np.float32)
    forbid[0, 0] = -10.0  # tag 0 never follows tag 0
    tags, _ = viterbi_decode(scores, None, forbid, np.zeros(K, np.float32), np.zeros(K, np.float32))
    assert np.argmax(scores[0], -1).tolist() == [0, 0, 2] and tags.numpy()[0].tolist() == [0, 1, 2]


def test_log_softmax_gives_the_same_likelihood_and_path():
    """A constant per position cancels: the layer's softmax output decodes like its emissions."""
    layer = CRF(K)
    layer.build([None, None, K])
    layer.set_weights([TRANSITIONS, START, END])
    probabilities = layer(tf.constant(SCORES))
    np.testing.assert_allclose(tf.reduce_sum(probabilities, -1).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(layer.log_likelihood(log_probabilities(probabilities), TAGS, MASKS).numpy(),
                               layer.log_likelihood(SCORES, TAGS, MASKS).numpy(), rtol=1e-5, atol=1e-5)
    assert layer.decode(probabilities, MASKS).numpy().tolist() == layer.viterbi(SCORES, MASKS)[0].numpy().tolist()


def test_empty_batch_and_no_positions():
    tags, best = viterbi_decode(np.zeros([0, 0, K], np.float32), np.zeros([0, 0], bool), TRANSITIONS, START, END)
    assert tags.shape == (0, 0) and best.shape == (0,)
    tags, best = viterbi_decode(np.zeros([2, 0, K], np.float32), np.zeros([2, 0], bool), TRANSITIONS, START, END)
    assert tags.shape == (2, 0) and best.numpy().tolist() == [0.0, 0.0]


def test_decode_inside_a_tf_function_with_unknown_shapes():
    layer = CRF(K)
    layer.build([None, None, K])
    layer.set_weights([TRANSITIONS, START, END])
    fn = tf.function(layer.decode, input_signature=[tf.TensorSpec([None, None, K], tf.float32), tf.TensorSpec([None, None], tf.bool)])
    probabilities = tf.nn.softmax(SCORES)
    assert fn(probabilities, MASKS).numpy().tolist() == layer.decode(probabilities, MASKS).numpy().tolist()


def test_loss_gradients_reach_transitions_and_the_loss_is_per_labelled_token():
    layer = CRF(K)
    emissions = tf.Variable(SCORES)
    labels = np.where(MASKS, TAGS, -1)
    with tf.GradientTape() as tape:
        loss = CRFLoss(layer)(labels, layer(emissions))
    grads = tape.gradient(loss, [emissions, *layer.trainable_weights])
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)
    expected = -layer.log_likelihood(SCORES, TAGS, MASKS).numpy().sum() / MASKS.sum()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert np.abs(grads[0].numpy()[~MASKS]).max() == 0.0  # positions outside the chain get no gradient


def test_training_learns_a_transition_rule():
    """Tags alternate 1, 2, 1, 2 whatever the (uninformative) input: only the transitions can learn it."""
    inputs = tf_keras.Input((None,), dtype="int32")
    x = tf_keras.layers.Embedding(5, 4)(inputs)
    emissions = tf_keras.layers.Dense(K)(x)
    model = tf_keras.Model(inputs, CRF(K, name="crf")(emissions))
    crf = find_crf(model)
    model.compile(optimizer=tf_keras.optimizers.Adam(0.1), loss=CRFLoss(crf))
    x = np.ones([32, 6], np.int32)
    y = np.tile([1, 2, 1, 2, 1, 2], [32, 1])
    y[16:] = np.tile([2, 1, 2, 1, 2, 1], [16, 1])
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    paths = crf.decode(model(x[:1]), np.ones([1, 6], bool)).numpy()[0].tolist()
    assert paths in ([1, 2, 1, 2, 1, 2], [2, 1, 2, 1, 2, 1])
    assert crf.transitions.numpy()[1, 2] > crf.transitions.numpy()[1, 1]


def test_a_compiled_model_saves_and_loads_its_transitions(tmp_path):
    """model.save walks the compiled loss first: the CRF's weights must still be filed under the layer."""
    inputs = tf_keras.Input((None, K))
    model = tf_keras.Model(inputs, CRF(K, name="crf")(inputs))
    crf = find_crf(model)
    crf.set_weights([TRANSITIONS, START, END])
    model.compile(optimizer="adam", loss=CRFLoss(crf))
    model.save(tmp_path / "compiled.keras")
    loaded = tf_keras.models.load_model(tmp_path / "compiled.keras", compile=False)
    np.testing.assert_array_equal(find_crf(loaded).transitions.numpy(), TRANSITIONS)


def test_get_config_round_trip_and_saving(tmp_path):
    layer = CRF(4, name="crf")
    clone = CRF.from_config(layer.get_config())
    assert clone.num_tags == 4 and clone.name == "crf" and clone.dtype == "float32"
    inputs = tf_keras.Input((None, 4))
    model = tf_keras.Model(inputs, layer(inputs))
    layer.set_weights([np.eye(4, dtype=np.float32), np.arange(4, dtype=np.float32), -np.arange(4, dtype=np.float32)])
    model.save(tmp_path / "m.keras")
    loaded = tf_keras.models.load_model(tmp_path / "m.keras", compile=False)
    for a, b in zip(find_crf(loaded).get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert CRFLoss.from_config(CRFLoss().get_config()).ignore_label == -1


def test_float32_under_a_mixed_policy():
    from llmos_tf.training.precision import precision_policy

    with precision_policy("mixed_bfloat16"):
        dense = tf_keras.layers.Dense(K)
        layer = CRF(K)
    out = layer(dense(tf.ones([1, 2, 4])))
    assert dense.compute_dtype == "bfloat16" and layer.compute_dtype == "float32" and out.dtype == tf.float32
    assert layer.transitions.dtype == tf.float32
