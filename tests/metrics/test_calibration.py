"""ECE, reliability bins and temperature scaling on synthetic logits whose calibration is known."""
import numpy as np
import pytest

from llmos_tf.metrics.calibration import (calibration_summary, expected_calibration_error, fit_temperature, reliability_bins,
                                          reliability_figure, softmax)


def _overconfident(n=4000, classes=4, sharpen=3.0, seed=0):
    """Labels drawn from softmax(z); the 'model' reports softmax(sharpen * z): over-confident by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, classes))
    truth = softmax(z)
    labels = np.array([rng.choice(classes, p=p) for p in truth])
    return sharpen * z, labels


def test_ece_of_hand_made_bins():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin of 0.9: accuracy 0.5 (gap 0.4); bin of 0.6: accuracy 1.0 (gap 0.4) -> ECE 0.4
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)
    table = reliability_bins(probs, labels, bins=15)
    assert table["count"].sum() == 4 and np.nansum(table["count"] > 0) == 2
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_temperature_scaling_lowers_ece_on_an_overconfident_model():
    logits, labels = _overconfident()
    fit, held = slice(0, 2000), slice(2000, None)
    t = fit_temperature(logits[fit], labels[fit])
    assert 2.4 < t < 3.6  # the sharpening it undoes
    before = expected_calibration_error(softmax(logits[held]), labels[held])
    after = expected_calibration_error(softmax(logits[held], t), labels[held])
    assert before > 0.08 and after < before / 3, (before, after)
    # dividing logits never changes the answer
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()
    summary = calibration_summary(logits[held], labels[held], t)
    assert summary["nll_after"] < summary["nll_before"] and summary["bins"] == 15


def test_calibrated_model_is_left_alone():
    logits, labels = _overconfident(sharpen=1.0, seed=1)
    assert 0.85 < fit_temperature(logits, labels) < 1.15


def test_reliability_figure_and_bad_shapes():
    logits, labels = _overconfident(n=200)
    fig = reliability_figure(softmax(logits), labels, calibrated=softmax(logits, 3.0))
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "perfect calibration" in texts and sum(t.startswith(("model (ECE", "calibrated (ECE")) for t in texts) == 2
    with pytest.raises(ValueError):
        expected_calibration_error(np.zeros([3, 2]), np.zeros([2]))
