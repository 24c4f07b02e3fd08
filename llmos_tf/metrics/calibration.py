"""Is 0.97 really 97%? Expected calibration error, reliability diagrams and temperature scaling.

* :func:`expected_calibration_error`: confidences (the top probability) in 15 equal-width
  bins; ECE = sum over bins of ``|accuracy - mean confidence| * share of examples``
  (Guo et al., 2017, "On Calibration of Modern Neural Networks").
* :func:`fit_temperature`: one scalar ``T`` that minimises the negative log-likelihood of
  ``softmax(logits / T)`` on a held-out set. It is fitted on LOGITS, not probabilities:
  dividing logits keeps the argmax (accuracy is unchanged) and is the whole model; fitting
  on probabilities would need a different, non-equivalent map.
* :func:`reliability_figure`: accuracy per confidence bin against the diagonal (a matplotlib
  figure built without pyplot, so a notebook keeps its backend).

Example::

    ece = expected_calibration_error(probs, labels)            # 0.043
    t = fit_temperature(val_logits, val_labels)                 # 1.8: the model was over-confident
    calibrated = softmax(test_logits / t)
"""
from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _check(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels).astype(int)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"expected probabilities [N, C] and labels [N]; got {probabilities.shape} and {labels.shape}")
    return probabilities, labels


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin ``(lo, hi]``: ``count``, mean ``confidence`` and ``accuracy`` (NaN where empty)."""
    probabilities, labels = _check(probabilities, labels)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (lo, hi]; 0 goes to the first
    count = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width confidence bins (0 = perfectly calibrated)."""
    table = reliability_bins(probabilities, labels, bins)
    total = table["count"].sum()
    if total == 0:
        return 0.0
    used = table["count"] > 0
    gaps = np.abs(table["accuracy"][used] - table["confidence"][used])
    return float((gaps * table["count"][used]).sum() / total)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    probs = softmax(logits, temperature)
    labels = np.asarray(labels).astype(int)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature minimising validation NLL of ``softmax(logits / T)`` (searched on log T, within ``bounds``)."""
    from scipy.optimize import minimize_scalar

    logits, labels = _check(logits, labels)
    if len(labels) == 0:
        raise ValueError("fit_temperature: no examples")
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))), bounds=(lo, hi),
                             method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def calibration_summary(logits: np.ndarray, labels: np.ndarray, temperature: float, bins: int = ECE_BINS) -> dict[str, Any]:
    """ECE and NLL before and after dividing ``logits`` by ``temperature`` (JSON-able)."""
    before, after = softmax(logits), softmax(logits, temperature)
    return {
        "temperature": float(temperature),
        "bins": int(bins),
        "examples": int(len(labels)),
        "ece_before": expected_calibration_error(before, labels, bins),
        "ece_after": expected_calibration_error(after, labels, bins),
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
    }


def reliability_figure(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS, title: str = "reliability diagram",
                       calibrated: np.ndarray | None = None):
    """Accuracy per confidence bin (bars) against perfect calibration (the diagonal); ECE in the legend.

    ``calibrated``: the same examples' probabilities after temperature scaling, drawn beside."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    width = 1.0 / bins
    series = [("model", probabilities, "tab:blue")] + ([("calibrated", calibrated, "tab:orange")] if calibrated is not None else [])
    for i, (name, probs, colour) in enumerate(series):
        table = reliability_bins(probs, labels, bins)
        centres = table["edges"][:-1] + width / 2
        used = table["count"] > 0
        shift = (i - (len(series) - 1) / 2) * width / len(series)
        ece = expected_calibration_error(probs, labels, bins)
        ax.bar(centres[used] + shift, table["accuracy"][used], width=width / len(series), color=colour, alpha=0.75,
               edgecolor="black", linewidth=0.4, label=f"{name} (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
