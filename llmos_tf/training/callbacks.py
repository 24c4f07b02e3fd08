"""Callbacks that make a run inspectable in TensorBoard and safe to kill.

* :class:`ValidationReport` – per-epoch validation macro-F1, a confusion-matrix
  image, per-class PR curves and the worst misclassified examples as text (the numbers go into
  ``logs`` so early stopping and checkpoints can monitor ``val_macro_f1``).
* :class:`LearningRateLogger` – the learning rate every N steps and per epoch.
* :class:`BestCheckpoint` – keeps the best weights and remembers the best
  value on disk, so a resumed run does not forget what "best" was.
"""
from __future__ import annotations

import json
import pathlib
from typing import Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.training.evaluation import classification_metrics, confusion_figure, figure_to_png
from llmos_tf.training.optimizers import current_learning_rate
from llmos_tf.training.tensorboard_extras import write_pr_curves


def metric_mode(monitor: str) -> str:
    return "min" if "loss" in monitor else "max"


class ValidationReport(tf_keras.callbacks.Callback):
    def __init__(self, dataset: tf.data.Dataset, y_true: np.ndarray, texts: Sequence[str], label_names: Sequence[str], log_dir: str | pathlib.Path, worst_examples: int = 10):
        super().__init__()
        self.dataset = dataset
        self.y_true = np.asarray(y_true)
        self.texts = list(texts)
        self.label_names = list(label_names)
        self.writer = tf.summary.create_file_writer(str(pathlib.Path(log_dir) / "validation"))
        self.worst_examples = worst_examples
        self.last_metrics: dict | None = None

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.dataset, verbose=0)
        y_pred = probs.argmax(axis=-1)
        metrics = classification_metrics(self.y_true, y_pred, self.label_names)
        self.last_metrics = metrics
        if logs is not None:
            logs["val_macro_f1"] = metrics["macro_f1"]  # monitorable; Keras' callback logs it as epoch_macro_f1
        png = figure_to_png(confusion_figure(np.asarray(metrics["confusion_matrix"]), self.label_names, f"validation, epoch {epoch + 1}"))
        # record_if(True): Keras' TensorBoard callback gates summaries on its own update_freq
        with self.writer.as_default(step=epoch), tf.summary.record_if(True):
            tf.summary.image("confusion_matrix", tf.image.decode_png(png, channels=4)[None], max_outputs=1)
            tf.summary.text("worst_misclassified", self._worst_table(probs, y_pred))
        write_pr_curves(self.writer, self.y_true, probs, self.label_names, step=epoch)
        self.writer.flush()

    def _worst_table(self, probs: np.ndarray, y_pred: np.ndarray) -> str:
        wrong = np.flatnonzero(y_pred != self.y_true)
        if wrong.size == 0:
            return "No misclassified validation examples."
        confidence = probs[wrong, y_pred[wrong]]
        rows = ["| text | true | predicted | p |", "|---|---|---|---|"]
        for i in wrong[np.argsort(-confidence)][: self.worst_examples]:
            text = self.texts[i].replace("|", "\\|")[:200]
            rows.append(f"| {text} | {self.label_names[self.y_true[i]]} | {self.label_names[y_pred[i]]} | {probs[i, y_pred[i]]:.2f} |")
        return "\n".join(rows)


class LearningRateLogger(tf_keras.callbacks.Callback):
    def __init__(self, log_dir: str | pathlib.Path, every_steps: int = 50):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(pathlib.Path(log_dir) / "train"))
        self.every_steps = max(int(every_steps), 1)

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1  # a Python counter: reading the variable every batch would slow training
        if self.step % self.every_steps == 0:
            with self.writer.as_default(step=self.step), tf.summary.record_if(True):
                tf.summary.scalar("learning_rate", current_learning_rate(self.model.optimizer))

    def on_epoch_end(self, epoch, logs=None):
        lr = current_learning_rate(self.model.optimizer)
        if logs is not None:
            logs["learning_rate"] = lr
        self.writer.flush()


class BestCheckpoint(tf_keras.callbacks.Callback):
    def __init__(self, directory: str | pathlib.Path, monitor: str):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.monitor = monitor
        self.mode = metric_mode(monitor)
        self.state_path = self.directory / "best.json"
        # TensorFlow checkpoint format: it restores into mirrored / multi-worker variables,
        # which the Keras .weights.h5 loader cannot
        self.weights_path = self.directory / "best"
        self.best = None
        self.best_epoch = None
        if self.state_path.is_file() and self._exists():
            state = json.loads(self.state_path.read_text())
            self.best, self.best_epoch = state["value"], state["epoch"]

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            available = ", ".join(sorted(logs or {}))
            raise ValueError(f"training.monitor: metric {self.monitor!r} is not logged; available: {available}")
        if self._better(float(value)):
            self.best, self.best_epoch = float(value), epoch + 1
            # best.json is written after the weights: on resume it never points at a half-written checkpoint
            self.model.save_weights(str(self.weights_path), save_format="tf")
            self.state_path.write_text(json.dumps({"value": self.best, "epoch": self.best_epoch, "monitor": self.monitor}))

    def _exists(self) -> bool:
        return self.weights_path.with_suffix(".index").is_file()

    def restore(self) -> bool:
        if self._exists():
            self.model.load_weights(str(self.weights_path)).expect_partial()
            return True
        return False
