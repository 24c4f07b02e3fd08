"""Matplotlib figures for notebooks: training curves, confusion matrices, compression trade-offs.

Every function returns a :class:`matplotlib.figure.Figure` and closes it in
pyplot, so a notebook cell that ends with the call shows it exactly once and a
script can ``fig.savefig(...)`` it.

Example::

    from llmos_tf import plots
    plots.training_curves(run.history)
    plots.confusion_matrix(run.evaluate("data/sample/sentiment_test.csv"))
    plots.compression_tradeoff(run.compress(quantize=("dynamic",)))
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from llmos_tf.errors import DataError


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _done(fig):
    fig.tight_layout()
    _pyplot().close(fig)  # no second, automatic display in Jupyter; the returned figure is shown once
    return fig


def training_curves(history: pd.DataFrame | Mapping[str, Sequence[float]], metrics: Sequence[str] | None = None):
    """One panel per metric (``loss``, ``accuracy``, ...), training and validation curves per epoch.

    ``history`` is :attr:`llmos_tf.Run.history` or a Keras ``History.history`` mapping.
    """
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(dict(history))
    if frame.empty:
        raise DataError("training_curves: the history is empty (no finished epoch)")
    if metrics is None:
        metrics = [c for c in frame.columns if not c.startswith("val_") and c != "learning_rate"]
        metrics += [c[4:] for c in frame.columns if c.startswith("val_") and c[4:] not in metrics]
    missing = [m for m in metrics if m not in frame.columns and f"val_{m}" not in frame.columns]
    if missing:
        raise DataError(f"training_curves: no column {missing[0]!r} in the history; columns: {', '.join(frame.columns)}")
    x = np.asarray(frame.index) if frame.index.name == "epoch" else np.arange(1, len(frame) + 1)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for column, label, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "--s")):
            if column in frame.columns:
                ax.plot(x, frame[column].to_numpy(dtype=float), style, label=label, markersize=3)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return _done(fig)


def confusion_matrix(evaluation: Any, normalize: bool = False, title: str = "confusion matrix"):
    """Heat map of an :class:`llmos_tf.Evaluation` (or a metrics dict with ``confusion_matrix`` and ``labels``).

    ``normalize=True`` shows each true label's row as fractions.
    """
    metrics = getattr(evaluation, "metrics", evaluation)
    if not isinstance(metrics, Mapping) or "confusion_matrix" not in metrics or "labels" not in metrics:
        raise DataError("confusion_matrix: expected an Evaluation or metrics with 'confusion_matrix' and 'labels' (classifier runs)")
    matrix = np.asarray(metrics["confusion_matrix"], dtype=float)
    labels = list(metrics["labels"])
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    size = min(3.5 + 0.3 * n, 14)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), labels=labels, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{matrix[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
                ax.text(j, i, text, ha="center", va="center", color="white" if matrix[i, j] > threshold else "black")
    return _done(fig)


def compression_tradeoff(report: Any, size: str = "gzip_bytes", latency: str = "p50_ms_batch1"):
    """Metric against size and against latency, one labelled point per variant.

    ``report`` is a :class:`~llmos_tf.compression.report.CompressionReport` (its ``to_frame()``)
    or such a frame; the dense model is drawn as a reference line.
    """
    frame = report.to_frame() if hasattr(report, "to_frame") else report
    metric = getattr(report, "metric", None) or next((c for c in ("accuracy", "entity_f1") if c in frame.columns), None)
    needed = [c for c in ("variant", metric, size, latency) if c is None or c not in frame.columns]
    if needed:
        raise DataError(f"compression_tradeoff: the report lacks column(s) {needed}; columns: {', '.join(map(str, frame.columns))}")
    if frame.empty:
        raise DataError("compression_tradeoff: the report has no variants")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    dense = frame[frame["variant"] == "dense"]
    for ax, column, label in ((axes[0], size, "size (MB)"), (axes[1], latency, "latency p50, batch 1 (ms)")):
        xs = frame[column].to_numpy(dtype=float) / (1e6 if column.endswith("_bytes") else 1.0)
        ys = frame[metric].to_numpy(dtype=float)
        ax.scatter(xs, ys, s=40, zorder=3)
        for x, y, name in zip(xs, ys, frame["variant"]):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if not dense.empty:
            ax.axhline(float(dense[metric].iloc[0]), color="grey", linestyle=":", label="dense")
            ax.legend(loc="lower right")
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{metric} vs size")
    axes[1].set_title(f"{metric} vs latency")
    return _done(fig)


def compare_runs(runs: Sequence[Any], metric: str = "accuracy", split: str = "validation"):
    """Bar chart of one figure across runs (``Run`` objects or run folders), e.g. BiLSTM vs BERT."""
    from llmos_tf.api import Run, load_run

    loaded = [r if isinstance(r, Run) else load_run(r) for r in runs]
    values, names = [], []
    for run in loaded:
        figures = run.metrics.get(split, {})
        if metric not in figures:
            raise DataError(f"compare_runs: {run.run_dir} has no {split} {metric!r}; it has {', '.join(k for k in figures if not isinstance(figures[k], (dict, list)))}")
        values.append(float(figures[metric]))
        names.append(run.name)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.2))
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel(f"{split} {metric}")
    ax.set_ylim(0, max(1.0, max(values) * 1.1))
    return _done(fig)
