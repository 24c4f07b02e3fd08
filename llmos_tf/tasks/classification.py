"""``task: classification``: one label per text (sentiment, intent, topic).

The task reads a labelled table (:func:`~llmos_tf.data.prepare.prepare_classification_data`),
tokenizes with the architecture's tokenizer (WordPiece ids for ``bilstm``, BERT
token ids for ``bert``), trains the architecture's classifier with sparse
cross-entropy and reports accuracy / macro-F1 (per epoch with a confusion matrix,
PR curves, the worst mistakes and, at the end, an embedding projector).

:class:`TrainedRun` is the finished run loaded back: ``predict(texts)`` gives
``text, label, probability`` rows.

Example::

    result = fit(ClassificationTask(load_config("configs/sample_bilstm.yaml")))
    TrainedRun.load(result.run_dir).predict(["a wonderful film"])
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from llmos_tf._tf import tf_keras
from llmos_tf.config import RunConfig, load_config
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
from llmos_tf.data.readers import read_labelled_table, read_texts
from llmos_tf.errors import DataError, RunError
from llmos_tf.task_kinds import task_kind
from llmos_tf.tasks.base import Task, TaskInputs, register_task
from llmos_tf.training import artifacts
from llmos_tf.training.evaluation import classification_metrics

SUMMARY_KEYS = ("examples", "accuracy", "macro_f1")


@register_task
class ClassificationTask(Task):
    """Sentence classification with the ``model.architecture`` classifier (see the module docstring)."""

    name = "classification"
    kind = task_kind(name)

    def prepare_data(self):
        from llmos_tf.data.prepare import prepare_classification_data

        return prepare_classification_data(self.cfg.data, self.cfg.seed)

    def label_maps(self, data) -> dict[str, LabelMap]:
        return {artifacts.LABELS_FILE: data.labels}

    def learn_vocabulary(self, data) -> list[str]:
        return self.architecture.vocabulary(self.model_config, data.train["text"].tolist(), self.cfg.text)

    def build_preprocessor(self, vocabulary: Sequence[str]):
        return self.architecture.tokenizer(self.model_config, list(vocabulary), self.cfg.text, self.max_length)

    def build_inputs(self, data, preprocessor, plan: BatchingPlan, eval_plan: BatchingPlan, *, seed: int) -> TaskInputs:
        features = self.architecture.features
        texts, y_train = __import__("llmos_tf.explain.robustness", fromlist=["_"]).augment_training(data, self.cfg.training, seed)
        lengths = token_lengths(texts, preprocessor, plan.max_length)
        train = make_dataset(texts, y_train, preprocessor, plan, training=True, seed=seed, shuffle_buffer=self.cfg.data.shuffle_buffer,
                             repeat=True, features=features)
        validation = make_dataset(data.validation["text"].tolist(), data.y_validation, preprocessor, eval_plan, training=False, features=features)
        return TaskInputs(train=train, steps_per_epoch=count_batches(lengths, plan, training=True), examples=f"{len(texts)} examples",
                          validation=validation, validation_inputs=validation.map(lambda x, y: x),
                          facts={"truncated_train_examples": int(np.sum(lengths >= plan.max_length))})

    def build_model(self, data, preprocessor, vocabulary: Sequence[str]):
        from llmos_tf.models import registry

        context = registry.BuildContext(num_labels=len(data.labels), vocabulary=list(vocabulary), task=self.name, max_length=self.max_length)
        return self.architecture.build(self.model_config, context)

    def build_losses(self, model):
        return tf_keras.losses.SparseCategoricalCrossentropy()

    def build_metrics(self, model):
        return [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def compile_args(self, model) -> dict[str, Any]:
        return {**super().compile_args(model), "steps_per_execution": 1}

    def validation_callbacks(self, data, preprocessor, inputs: TaskInputs, log_dir: pathlib.Path, batch_size: int) -> list:
        from llmos_tf.training.callbacks import ValidationReport
        from llmos_tf.training.tensorboard_extras import EmbeddingProjector

        texts, names = data.validation["text"].tolist(), data.labels.names
        return [
            ValidationReport(inputs.validation_inputs, data.y_validation, texts, names, log_dir),
            EmbeddingProjector(inputs.validation_inputs, data.y_validation, texts, names, log_dir / "validation"),
            __import__("llmos_tf.explain.tensorboard", fromlist=["_"]).WorstExplained(  # worst mistakes with their attributions
                inputs.validation_inputs, data.y_validation, texts, names, preprocessor, self.max_length, self.architecture.features, log_dir / "validation"),
        ]

    def evaluate(self, model, data, preprocessor, inputs: TaskInputs, batch_size: int) -> dict[str, Any]:
        names = data.labels.names
        metrics: dict[str, Any] = {"validation": classification_metrics(data.y_validation, model.predict(inputs.validation_inputs, verbose=0).argmax(-1), names)}
        if data.test is not None:
            plan = BatchingPlan(batch_size=batch_size, max_length=self.max_length, bucketing=False, tpu_mode=False)
            test = make_dataset(data.test["text"].tolist(), None, preprocessor, plan, training=False, cache=False, features=self.architecture.features)
            metrics["test"] = classification_metrics(data.y_test, model.predict(test, verbose=0).argmax(-1), names)
        return metrics

    def run_info(self, data, metrics: dict[str, Any], inputs: TaskInputs) -> dict[str, Any]:
        d = self.cfg.data
        return {
            "labels": data.labels.names,
            "data": {**data.summary(), "files": {"train": d.train, "validation": d.validation, "test": d.test}, **inputs.facts},
            "metrics": {k: {m: v[m] for m in SUMMARY_KEYS} for k, v in metrics.items()},
        }

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedRun":
        return TrainedRun.load(run_dir)


def load_keras_model(run_dir: pathlib.Path) -> tf_keras.Model:
    """``model.keras`` of a finished run, with every custom layer registered; a clear error when it is missing or broken."""
    import llmos_tf.models.bert  # noqa: F401  (registers custom layers)
    import llmos_tf.models.crf  # noqa: F401
    import llmos_tf.models.heads  # noqa: F401
    import llmos_tf.models.layers  # noqa: F401

    model_path = run_dir / artifacts.MODEL_FILE
    if not model_path.is_file():
        raise RunError(f"{run_dir}: {artifacts.MODEL_FILE} is missing; the run folder is incomplete")
    try:
        return tf_keras.models.load_model(model_path, compile=False)
    except (OSError, ValueError) as err:
        raise RunError(f"{model_path}: cannot load the model ({err})") from None


@dataclass
class TrainedRun:
    """A finished classification run loaded back: model + tokenizer + labels, ready to predict and evaluate.

    Example::

        run = TrainedRun.load("runs/sample_bilstm")
        run.predict(["a wonderful film"])          # DataFrame: text, label, probability
        run.evaluate("data/sample/sentiment_test.csv")["accuracy"]
    """

    run_dir: pathlib.Path
    config: RunConfig
    model: tf_keras.Model
    vocabulary: list[str]
    labels: LabelMap
    info: dict[str, Any]

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedRun":
        from llmos_tf.text.wordpiece import load_vocabulary

        run_dir = pathlib.Path(run_dir)
        info = artifacts.read_run_info(run_dir)
        config = load_config(run_dir / artifacts.CONFIG_FILE)
        model = load_keras_model(run_dir)
        return cls(run_dir=run_dir, config=config, model=model, vocabulary=load_vocabulary(run_dir / artifacts.VOCAB_FILE),
                   labels=LabelMap.load(run_dir / artifacts.LABELS_FILE), info=info)

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
