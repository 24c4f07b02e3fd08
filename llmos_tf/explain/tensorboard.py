"""TensorBoard: the run's worst misclassified validation examples, with the words that decided them.

At the end of training, :class:`WorstExplained` predicts the validation texts, takes the
misclassified ones the model was most sure of, explains each (integrated gradients for the
wrong class it chose) and writes one markdown table to the text plugin
(``<run>/validation``, tag ``worst_misclassified_explained``): words that pushed towards the
wrong answer in **bold**, words against it in *italics*, each with its score.

Example::

    callbacks.append(WorstExplained(val_inputs, y_val, texts, names, tokenizer, max_length, features, run_dir / "validation"))
"""
from __future__ import annotations

import pathlib
from typing import Callable, Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras

TAG = "worst_misclassified_explained"


def highlighted_markdown(words: Sequence[str], scores: Sequence[float], threshold: float = 0.2) -> str:
    """Markdown of a sentence: supporting words (score >= threshold of the peak) bold, opposing ones italic."""
    peak = max((abs(s) for s in scores), default=0.0) or 1.0
    out = []
    for word, score in zip(words, scores):
        word = word.replace("|", "\\|").replace("*", "\\*")
        if abs(score) / peak >= threshold:
            out.append(f"**{word}**<sub>{score:+.2f}</sub>" if score > 0 else f"*{word}*<sub>{score:+.2f}</sub>")
        else:
            out.append(word)
    return " ".join(out)


class WorstExplained(tf_keras.callbacks.Callback):
    """Explain the ``count`` most confident validation mistakes once training ends (see module doc)."""

    def __init__(self, dataset: tf.data.Dataset, y_true: np.ndarray, texts: Sequence[str], label_names: Sequence[str], tokenizer,
                 max_length: int, features: Callable | None, log_dir: str | pathlib.Path, count: int = 8, steps: int = 16):
        super().__init__()
        self.dataset, self.y_true, self.texts = dataset, np.asarray(y_true), list(texts)
        self.label_names, self.tokenizer, self.max_length, self.features = list(label_names), tokenizer, int(max_length), features
        self.log_dir, self.count, self.steps = pathlib.Path(log_dir), int(count), int(steps)
        self.table: str | None = None

    def on_train_end(self, logs=None):
        history = getattr(self.model, "history", None)
        try:
            self._explain_worst()
        finally:  # predict() installs its own History on the model; fit() returns model.history
            if history is not None:
                self.model.history = history

    def _explain_worst(self) -> None:
        probs = self.model.predict(self.dataset, verbose=0)
        y_pred = probs.argmax(-1)
        wrong = np.flatnonzero(y_pred != self.y_true)
        if wrong.size == 0:
            self.table = "No misclassified validation examples."
        else:
            from llmos_tf.compression.int8_weights import QuantizedModel
            from llmos_tf.explain.attributions import TextExplainer, vocabulary_of

            worst = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][: self.count]
            explainer = TextExplainer(self.tokenizer, QuantizedModel(self.model, weight_dtype="float32"), vocabulary_of(self.tokenizer),
                                      self.max_length, features=self.features, steps=self.steps)
            out = explainer(tf.constant([self.texts[i] for i in worst]))
            rows = ["| true | predicted | p | words (bold: for the prediction, italic: against) |", "|---|---|---|---|"]
            for j, i in enumerate(worst):
                words = [w.decode("utf-8", "replace") for w in out["words"][j].numpy() if w]
                scores = out["attributions"][j].numpy()[: len(words)].tolist()
                rows.append(f"| {self.label_names[self.y_true[i]]} | {self.label_names[y_pred[i]]} | {probs[i, y_pred[i]]:.2f} | "
                            f"{highlighted_markdown(words, scores)} |")
            self.table = "\n".join(rows)
        writer = tf.summary.create_file_writer(str(self.log_dir))
        with writer.as_default(step=0), tf.summary.record_if(True):
            tf.summary.text(TAG, self.table)
        writer.close()
