"""Classification metrics: accuracy, macro-F1, per-class P/R/F1, confusion matrix (scikit-learn)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """All figures ``llmos evaluate`` reports, as plain JSON-able Python values."""
    ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(label_names, precision, recall, f1, support)
    }
    return {
        "examples": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # macro over the classes present in the data (or predicted), as sklearn does by default
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "per_class": per_class,
        "labels": list(label_names),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def per_class_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(metrics["per_class"], orient="index")
    frame.index.name = "label"
    return frame


def confusion_figure(matrix: np.ndarray, label_names: Sequence[str], title: str = "confusion matrix"):
    """A matplotlib figure of a confusion matrix (rows: true, columns: predicted).

    Built without pyplot, so logging it never changes the process's backend (a notebook keeps its inline plots).
    """
    from matplotlib.figure import Figure

    n = len(label_names)
    size = min(4 + 0.25 * n, 16)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    matrix = np.asarray(matrix)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels=label_names, rotation=90 if n > 6 else 0, fontsize=8 if n > 20 else 10)
    ax.set_yticks(range(n), labels=label_names, fontsize=8 if n > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    return fig


def figure_to_png(fig) -> bytes:
    import io
    import sys

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    if "matplotlib.pyplot" in sys.modules:  # a pyplot figure: release it
        sys.modules["matplotlib.pyplot"].close(fig)
    return buffer.getvalue()
