"""TensorBoard beyond scalars: embedding projector, per-class PR curves, profiler traces.

* :class:`EmbeddingProjector` – at the end of training, the validation sentence
  embeddings (the pooled features the classifier head reads) go to
  ``<run>/validation/`` as a checkpoint + ``metadata.tsv`` (label, predicted
  label, text) + ``projector_config.pbtxt``, so the Projector tab colours the
  points by label (``tensorboard.plugins.projector``).
* :func:`write_pr_curves` – one PR curve per class per epoch (one-vs-rest on the
  validation probabilities) with the ``pr_curve`` plugin's summary API.
* :func:`profile_batches` – parses ``llmos train --profile [START,STOP]`` into
  tf_keras' ``TensorBoard(profile_batch=...)``, which writes
  ``<run>/plugins/profile/<time>/<host>.xplane.pb`` (the Profile tab; needs tensorboard-plugin-profile).

Example::

    callbacks.append(EmbeddingProjector(val_inputs, y_val, texts, labels, run_dir / "validation"))
    write_pr_curves(writer, y_val, probabilities, labels, step=epoch)
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError

PROJECTOR_TENSOR = "embedding/.ATTRIBUTES/VARIABLE_VALUE"  # the checkpoint key of Checkpoint(embedding=...)
METADATA_FILE = "metadata.tsv"
DEFAULT_PROFILE = "2,4"  # skip the first batch (tracing), profile the next three
PR_THRESHOLDS = 51


def feature_model(model: tf_keras.Model, head: str = "classifier") -> tf_keras.Model:
    """``model`` with a second output: the input of its classifier head (the pooled sentence embedding)."""
    try:
        layer = model.get_layer(head)
    except ValueError:
        raise ValueError(f"model {model.name!r} has no {head!r} layer to take sentence embeddings from") from None
    return tf_keras.Model(model.inputs, [layer.input, model.output], name=f"{model.name}_features")


def _tsv_cell(text: str) -> str:
    return " ".join(str(text).split())[:300] or "(empty)"  # no tabs/newlines inside a cell


class EmbeddingProjector(tf_keras.callbacks.Callback):
    """Writes validation sentence embeddings with label metadata for the Projector when training ends."""

    def __init__(self, dataset: tf.data.Dataset, y_true: np.ndarray, texts: Sequence[str], label_names: Sequence[str],
                 log_dir: str | pathlib.Path, max_points: int = 2000):
        super().__init__()
        self.dataset = dataset
        self.y_true = np.asarray(y_true)
        self.texts = list(texts)
        self.label_names = list(label_names)
        self.log_dir = pathlib.Path(log_dir)
        self.max_points = max_points

    def on_train_end(self, logs=None):
        embeddings, probabilities = feature_model(self.model).predict(self.dataset, verbose=0)
        n = min(len(self.texts), self.max_points)
        write_projector(self.log_dir, embeddings[:n], self.y_true[:n], probabilities[:n].argmax(-1), self.texts[:n], self.label_names)


def write_projector(log_dir: str | pathlib.Path, embeddings: np.ndarray, y_true: Sequence[int], y_pred: Sequence[int],
                    texts: Sequence[str], label_names: Sequence[str]) -> pathlib.Path:
    """Embeddings checkpoint + ``metadata.tsv`` + ``projector_config.pbtxt`` in ``log_dir``; returns the config path."""
    from tensorboard.plugins import projector

    log_dir = pathlib.Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    rows = ["label\tpredicted\ttext"] + [
        f"{label_names[t]}\t{label_names[p]}\t{_tsv_cell(text)}" for t, p, text in zip(y_true, y_pred, texts)
    ]
    (log_dir / METADATA_FILE).write_text("\n".join(rows) + "\n", encoding="utf-8")
    checkpoint = tf.train.Checkpoint(embedding=tf.Variable(np.asarray(embeddings, np.float32), name="sentence_embeddings"))
    checkpoint.save(str(log_dir / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = PROJECTOR_TENSOR
    entry.metadata_path = METADATA_FILE
    projector.visualize_embeddings(str(log_dir), config)
    return log_dir / "projector_config.pbtxt"


def write_pr_curves(writer, y_true: np.ndarray, probabilities: np.ndarray, label_names: Sequence[str], step: int,
                    num_thresholds: int = PR_THRESHOLDS) -> None:
    """One-vs-rest PR curve per class (tag ``pr_curve/<label>``) at ``step`` through ``writer``."""
    from tensorboard.plugins.pr_curve import summary as pr_summary

    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    with writer.as_default(step=step), tf.summary.record_if(True):
        for class_id, name in enumerate(label_names):
            proto = pr_summary.pb(name, labels=y_true == class_id, predictions=np.clip(probabilities[:, class_id], 0.0, 1.0),
                                  num_thresholds=num_thresholds, display_name=f"PR curve: {name}")
            proto.value[0].tag = f"pr_curve/{name}"  # pb() names it "<name>/pr_curves" (TF1 scopes)
            tf.summary.experimental.write_raw_pb(proto.SerializeToString(), step=step)


def profile_batches(spec: str | int | None) -> tuple[int, int] | int:
    """``--profile`` value → tf_keras ``profile_batch``: ``None`` → 0 (off), ``"2,4"`` → (2, 4), ``"3"`` → (3, 3)."""
    if spec is None or spec is False:
        return 0
    text = DEFAULT_PROFILE if spec is True else str(spec)
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 1 <= parts[0] <= parts[1]:
        raise ConfigError(f"--profile: expected START,STOP batch numbers (1-based, START <= STOP), e.g. {DEFAULT_PROFILE}; got {spec!r}")
    return parts[0], parts[1]
