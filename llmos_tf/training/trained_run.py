"""A finished run loaded back: model + tokenizer + labels, ready to predict and evaluate.

Example::

    run = TrainedRun.load("runs/sample_bilstm")
    run.predict(["a wonderful film"])          # DataFrame: text, label, probability
    run.evaluate("data/sample/sentiment_test.csv")["accuracy"]
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import RunConfig, load_config
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import BatchingPlan, make_dataset
from llmos_tf.data.readers import read_labelled_table, read_texts
from llmos_tf.errors import DataError, RunError
from llmos_tf.training import artifacts
from llmos_tf.training.evaluation import classification_metrics


@dataclass
class TrainedRun:
    run_dir: pathlib.Path
    config: RunConfig
    model: tf_keras.Model
    vocabulary: list[str]
    labels: LabelMap
    info: dict[str, Any]

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedRun":
        from llmos_tf.text.wordpiece import load_vocabulary
        import llmos_tf.models.bert  # noqa: F401  (registers custom layers)
        import llmos_tf.models.heads  # noqa: F401
        import llmos_tf.models.layers  # noqa: F401

        run_dir = pathlib.Path(run_dir)
        info = artifacts.read_run_info(run_dir)
        config = load_config(run_dir / artifacts.CONFIG_FILE)
        model_path = run_dir / artifacts.MODEL_FILE
        if not model_path.is_file():
            raise RunError(f"{run_dir}: {artifacts.MODEL_FILE} is missing; the run folder is incomplete")
        try:
            model = tf_keras.models.load_model(model_path, compile=False)
        except (OSError, ValueError) as err:
            raise RunError(f"{model_path}: cannot load the model ({err})") from None
        return cls(
            run_dir=run_dir,
            config=config,
            model=model,
            vocabulary=load_vocabulary(run_dir / artifacts.VOCAB_FILE),
            labels=LabelMap.load(run_dir / artifacts.LABELS_FILE),
            info=info,
        )

    # -- inference ---------------------------------------------------------
    @property
    def architecture(self):
        from llmos_tf.models import registry

        return registry.get(self.config.architecture)

    @property
    def model_config(self):
        from llmos_tf.models import registry

        return registry.model_config(self.config.model)

    @property
    def max_length(self) -> int:
        return self.architecture.max_length(self.model_config, self.config.data.max_length)

    def tokenizer(self):
        """Raw strings → ragged ids, exactly as in training (also saved inside exports)."""
        return self.architecture.tokenizer(self.model_config, self.vocabulary, self.config.text, self.max_length)

    def _plan(self, batch_size: int = 64) -> BatchingPlan:
        return BatchingPlan(batch_size=batch_size, max_length=self.max_length, bucketing=False)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``[len(texts), num_labels]`` in input order.

        Texts are run shortest first, so each batch pads to a similar length (a batch pads to its
        longest text); the rows are put back in input order."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros([0, len(self.labels)], np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        ds = make_dataset([texts[i] for i in order], None, self.tokenizer(), self._plan(batch_size), training=False, cache=False,
                          features=self.architecture.features)
        probs = np.empty([len(texts), len(self.labels)], np.float32)
        probs[order] = self.model.predict(ds, verbose=0)
        return probs

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        """One row per text: predicted label and its probability."""
        probs = self.predict_proba(texts)
        ids = probs.argmax(axis=-1) if len(probs) else np.zeros([0], int)
        return pd.DataFrame({
            "text": list(texts),
            "label": self.labels.decode(ids),
            "probability": probs[np.arange(len(ids)), ids] if len(ids) else [],
        })

    def evaluate(self, data: str | pathlib.Path | pd.DataFrame) -> dict[str, Any]:
        """Metrics on a labelled file (or a frame from :func:`read_labelled_table`).

        The file may hold the label values (``0``) or the names the run answers (``negative``)
        when the run's config has ``data.label_names``."""
        if isinstance(data, pd.DataFrame):
            frame = data
        else:
            d = self.config.data
            frame = read_labelled_table(data, d.text_column, d.label_column)
        y_true = self.labels.encode(frame["label"].tolist(), path=frame.attrs.get("path"), lines=frame["line"].tolist(),
                                    names=self.config.data.label_names)
        probs = self.predict_proba(frame["text"].tolist())
        return classification_metrics(y_true, probs.argmax(axis=-1), self.labels.names)

    def read_unlabelled(self, path: str | pathlib.Path) -> list[str]:
        frame = read_texts(path, self.config.data.text_column)
        if frame.empty:
            raise DataError(f"{path}: no texts")
        return frame["text"].tolist()
