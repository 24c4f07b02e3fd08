"""``task: ner``: a token classifier (named entities) trained on CoNLL files.

The architecture's tagger comes from the model registry: a BERT encoder or a
BiLSTM, each with a softmax head or (``model.crf: true``) a CRF layer, trained on
the sequence log-likelihood and decoded with Viterbi (:mod:`llmos_tf.models.crf`).
Data, tf.data and the word-tag predictor are in :mod:`llmos_tf.tasks.tagging_data`.

What differs from a classification run (the trainer, :mod:`llmos_tf.training.loop`, is the same):

* the loss is the masked token cross-entropy (:func:`tagger_loss`; the CRF's
  negative log-likelihood with a CRF) and the metric the masked token accuracy;
* every epoch, :class:`EntityF1Callback` tags the validation sentences and adds
  conlleval entity precision/recall/F1 to the logs (``val_entity_f1``, shown by
  TensorBoard as ``epoch_entity_f1`` under *validation*);
* truncated sentences are counted in ``run.json`` (``data.truncated_*``).

:class:`TrainedTagger` is the finished run loaded back: ``predict(texts)`` gives
``text, tokens, tags, entities`` rows.

Example::

    result = fit(TaggingTask(load_config("configs/sample_ner.yaml")))
    TrainedTagger.load(result.run_dir).predict_tags(["Anna Berg joined Acme Corp in Oslo ."])
"""
from __future__ import annotations

import json
import pathlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import RunConfig, load_config
from llmos_tf.data.conll import OUTSIDE_TAG, read_conll
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import BatchingPlan, count_batches
from llmos_tf.errors import ConfigError, DataError
from llmos_tf.models.bert import PACKAGE
from llmos_tf.task_kinds import task_kind
from llmos_tf.tasks.base import Task, TaskInputs, register_task
from llmos_tf.tasks.classification import load_keras_model
from llmos_tf.tasks.tagging_data import (
    WordTagPredictor,
    evaluate_frame,
    make_tagging_dataset,
    prepare_tagging_data,
    ragged_tag_ids,
    ragged_words,
    tagger_text_encoder,
    truncation_facts,
)
from llmos_tf.text.alignment import IGNORE_LABEL, split_words
from llmos_tf.training import artifacts
from llmos_tf.metrics.conlleval import conlleval, entity_spans

NER_TASK = "ner"
# what an NER run logs per epoch (training.monitor must be one of them)
NER_MONITORS = (
    "val_entity_f1", "val_entity_precision", "val_entity_recall", "val_token_accuracy", "val_loss",
    "token_accuracy", "loss",
)
SUMMARY_KEYS = ("sentences", "tokens", "entity_precision", "entity_recall", "entity_f1", "token_accuracy", "per_type")
CONLL_SUFFIXES = (".conll", ".conllu", ".iob", ".iob2", ".bio", ".ner")


def tagger_loss(model: tf_keras.Model) -> tf_keras.losses.Loss:
    """The CRF's sequence negative log-likelihood when ``model`` has a CRF layer, else the masked cross-entropy."""
    from llmos_tf.models.crf import CRFLoss, find_crf

    crf = find_crf(model)
    return CRFLoss(crf) if crf is not None else MaskedSparseCategoricalCrossentropy()


@tf_keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedSparseCategoricalCrossentropy(tf_keras.losses.Loss):
    """Cross-entropy averaged over the positions whose label is not ``ignore_label`` (-1)."""

    def __init__(self, ignore_label: int = IGNORE_LABEL, name: str = "masked_sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_label = int(ignore_label)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.not_equal(y_true, self.ignore_label)
        ce = tf_keras.backend.sparse_categorical_crossentropy(tf.where(mask, y_true, 0), y_pred)
        weights = tf.cast(mask, ce.dtype)
        return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label}


@tf_keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedTokenAccuracy(tf_keras.metrics.Metric):
    """Accuracy over labelled positions (first subwords); ``ignore_label`` positions do not count."""

    def __init__(self, name: str = "token_accuracy", ignore_label: int = IGNORE_LABEL, **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_label = int(ignore_label)
        self.correct = self.add_weight("correct", initializer="zeros")
        self.total = self.add_weight("total", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.cast(tf.not_equal(y_true, self.ignore_label), tf.float32)
        hit = tf.cast(tf.equal(y_true, tf.argmax(y_pred, axis=-1, output_type=tf.int32)), tf.float32) * mask
        self.correct.assign_add(tf.reduce_sum(hit))
        self.total.assign_add(tf.reduce_sum(mask))

    def result(self):
        return tf.math.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label}


class EntityF1Callback(tf_keras.callbacks.Callback):
    """Per epoch: tag the validation sentences, put conlleval P/R/F1 into ``logs``.

    Place it before Keras' TensorBoard callback: that one then writes
    ``epoch_entity_f1`` (and precision/recall) under ``validation``. Per-type F1
    goes to ``validation`` as ``entity_f1/<TYPE>``.
    """

    def __init__(self, text_encoder, frame: pd.DataFrame, tag_names: Sequence[str], log_dir: str | pathlib.Path | None = None, batch_size: int = 64):
        super().__init__()
        self.text_encoder = text_encoder
        self.words = ragged_words(frame["tokens"].tolist())
        self.gold = frame["tags"].tolist()
        self.tag_names = list(tag_names)
        self.batch_size = batch_size
        self.writer = tf.summary.create_file_writer(str(pathlib.Path(log_dir) / "validation")) if log_dir else None
        self.last_metrics: dict[str, Any] | None = None
        self._predictor: WordTagPredictor | None = None

    def on_train_begin(self, logs=None):
        outside = self.tag_names.index(OUTSIDE_TAG) if OUTSIDE_TAG in self.tag_names else 0
        self._predictor = WordTagPredictor(self.text_encoder, self.model, outside_id=outside, batch_size=self.batch_size)

    def on_epoch_end(self, epoch, logs=None):
        if self._predictor is None:
            self.on_train_begin()
        predicted = self._predictor.predict_tags(self.words, self.tag_names)
        metrics = conlleval(self.gold, predicted)
        self.last_metrics = metrics
        if logs is not None:
            logs["val_entity_f1"] = metrics["entity_f1"]
            logs["val_entity_precision"] = metrics["entity_precision"]
            logs["val_entity_recall"] = metrics["entity_recall"]
        if self.writer is not None:
            with self.writer.as_default(step=epoch), tf.summary.record_if(True):
                for type_, values in metrics["per_type"].items():
                    tf.summary.scalar(f"entity_f1/{type_}", values["f1"])
            self.writer.flush()


@register_task
class TaggingTask(Task):
    """Token classification with the ``model.architecture`` tagger (see the module docstring)."""

    name = NER_TASK
    kind = task_kind(name)
    summary_metrics = (("examples", "examples"), ("entity_precision", "entity precision"), ("entity_recall", "entity recall"),
                       ("entity_f1", "entity f1"), ("token_accuracy", "token accuracy"))  # as `llmos train` printed them
    hparam_metrics = (("epoch_entity_f1", "val entity-F1"), ("epoch_token_accuracy", "val token accuracy"), ("epoch_loss", "val loss"))
    multi_worker = "multi-worker training is implemented for classification runs (the entity-F1 validation tags on every worker)"

    def check(self) -> None:
        from llmos_tf.models import registry

        if self.architecture.tagger is None:
            raise ConfigError(f"model.architecture: architecture {self.cfg.architecture!r} has no token classifier for task 'ner'; "
                              f"valid: {', '.join(registry.taggers())}")
        if self.cfg.training.monitor not in NER_MONITORS:
            raise ConfigError(f"training.monitor: {self.cfg.training.monitor!r} is not logged by an NER run; valid: {', '.join(NER_MONITORS)}")

    def extra_hparams(self) -> dict[str, Any]:
        return {"task": self.name}

    def prepare_data(self):
        return prepare_tagging_data(self.cfg.data, self.cfg.seed)

    def label_maps(self, data) -> dict[str, LabelMap]:
        return {artifacts.LABELS_FILE: data.labels}

    def learn_vocabulary(self, data) -> list[str]:
        texts = [" ".join(tokens) for tokens in data.train["tokens"]]
        arch = self.architecture
        return (arch.tagger_vocabulary or arch.vocabulary)(self.model_config, texts, self.cfg.text)

    def build_preprocessor(self, vocabulary: Sequence[str]):
        return tagger_text_encoder(self.model_config, list(vocabulary), self.cfg.text, self.max_length)

    def build_inputs(self, data, preprocessor, plan: BatchingPlan, eval_plan: BatchingPlan, *, seed: int) -> TaskInputs:
        lengths, truncation = truncation_facts(preprocessor, data.train, data.validation)
        if truncation["truncated_train_sentences"] or truncation["truncated_validation_sentences"]:
            warnings.warn(
                f"data.max_length={plan.max_length}: {truncation['truncated_train_sentences']} training and "
                f"{truncation['truncated_validation_sentences']} validation sentences have more subwords; their "
                f"last {truncation['dropped_train_words']} (training) and {truncation['dropped_validation_words']} "
                "(validation) words are dropped: not trained on, predicted as 'O'"
            )
        train = make_tagging_dataset(preprocessor, ragged_words(data.train["tokens"].tolist()), ragged_tag_ids(data.train["tags"].tolist(), data.labels),
                                     plan, training=True, seed=seed, shuffle_buffer=self.cfg.data.shuffle_buffer, repeat=True)
        validation = make_tagging_dataset(preprocessor, ragged_words(data.validation["tokens"].tolist()),
                                          ragged_tag_ids(data.validation["tags"].tolist(), data.labels), eval_plan, training=False)
        return TaskInputs(train=train, steps_per_epoch=count_batches(lengths, plan, training=True), examples=f"{len(data.train)} sentences",
                          validation=validation, facts=truncation)

    def build_model(self, data, preprocessor, vocabulary: Sequence[str]):
        from llmos_tf.models import registry

        context = registry.BuildContext(num_labels=len(data.labels), vocabulary=list(vocabulary), task=self.name, max_length=self.max_length)
        return self.architecture.tagger(self.model_config, context)

    def build_losses(self, model):
        return tagger_loss(model)

    def build_metrics(self, model):
        return [MaskedTokenAccuracy()]

    def validation_callbacks(self, data, preprocessor, inputs: TaskInputs, log_dir: pathlib.Path, batch_size: int) -> list:
        return [EntityF1Callback(preprocessor, data.validation, data.labels.names, log_dir, batch_size=batch_size)]

    def evaluate(self, model, data, preprocessor, inputs: TaskInputs, batch_size: int) -> dict[str, Any]:
        names = data.labels.names
        predictor = WordTagPredictor(preprocessor, model, outside_id=names.index(OUTSIDE_TAG), batch_size=batch_size)
        metrics: dict[str, Any] = {"validation": evaluate_frame(predictor, data.validation, names)}
        if data.test is not None:
            metrics["test"] = evaluate_frame(predictor, data.test, names)
        return metrics

    def run_info(self, data, metrics: dict[str, Any], inputs: TaskInputs) -> dict[str, Any]:
        d = self.cfg.data
        return {
            "labels": data.labels.names,
            "data": {**data.summary(), "files": {"train": d.train, "validation": d.validation, "test": d.test}, **inputs.facts},
            "metrics": {k: {m: v[m] for m in SUMMARY_KEYS} for k, v in metrics.items()},
            "max_length": self.max_length,
        }

    @classmethod
    def per_class_frame(cls, metrics: dict[str, Any]) -> Any:
        """Per entity type, as conlleval reports it."""
        from llmos_tf.metrics.conlleval import per_type_frame

        return per_type_frame(metrics)

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedTagger":
        return TrainedTagger.load(run_dir)


def build_bert_tagger(model_cfg, vocabulary: Sequence[str], num_tags: int, max_length: int) -> tf_keras.Model:
    """BERT encoder (checkpoint or fresh) + per-token head (softmax, or CRF with ``model.crf``), with the config's freezing."""
    from llmos_tf.models.taggers import build_bert_tagger as build

    return build(model_cfg, vocabulary, num_tags, max_length)


def is_tagger_run(run_dir: str | pathlib.Path) -> bool:
    """True when ``run_dir`` is a finished run of ``task: ner`` (reads ``run.json`` only)."""
    path = pathlib.Path(run_dir) / artifacts.RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("task") == NER_TASK
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class TrainedTagger:
    """A finished NER run loaded back: tag sentences (whitespace tokens, the serving contract), list entities, evaluate.

    Tokens that do not fit in the run's ``max_length`` subwords are tagged ``O``.
    """

    run_dir: pathlib.Path
    config: RunConfig
    model: tf_keras.Model
    vocabulary: list[str]
    labels: LabelMap
    info: dict[str, Any]
    _predictor: WordTagPredictor | None = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedTagger":
        from llmos_tf.errors import RunError
        from llmos_tf.text.wordpiece import load_vocabulary

        run_dir = pathlib.Path(run_dir)
        info = artifacts.read_run_info(run_dir)
        if info.get("task") != NER_TASK:
            raise RunError(f"{run_dir}: a {info.get('task', 'classification')!r} run, not an NER tagger (task 'ner')")
        config = load_config(run_dir / artifacts.CONFIG_FILE)
        return cls(run_dir=run_dir, config=config, model=load_keras_model(run_dir), vocabulary=load_vocabulary(run_dir / artifacts.VOCAB_FILE),
                   labels=LabelMap.load(run_dir / artifacts.LABELS_FILE), info=info)

    # -- pieces --------------------------------------------------------------
    @property
    def model_config(self):
        from llmos_tf.models import registry

        return registry.model_config(self.config.model)

    @property
    def max_length(self) -> int:
        if "max_length" in self.info:
            return int(self.info["max_length"])
        from llmos_tf.models import registry

        return registry.get(self.config.architecture).max_length(self.model_config, self.config.data.max_length)

    @property
    def outside_id(self) -> int:
        return self.labels.names.index(OUTSIDE_TAG) if OUTSIDE_TAG in self.labels else 0

    def text_encoder(self):
        """The run's :class:`BertTextEncoder` (also saved inside exports)."""
        return tagger_text_encoder(self.model_config, self.vocabulary, self.config.text, self.max_length)

    @property
    def crf(self):
        """The model's :class:`~llmos_tf.models.crf.CRF` layer (Viterbi decoding), or None for a softmax tagger."""
        from llmos_tf.models.crf import find_crf

        return find_crf(self.model)

    @property
    def predictor(self) -> WordTagPredictor:
        if self._predictor is None:
            self._predictor = WordTagPredictor(self.text_encoder(), self.model, outside_id=self.outside_id)
        return self._predictor

    # -- inference -------------------------------------------------------------
    @staticmethod
    def split(sentences: Sequence[str]) -> tf.RaggedTensor:
        """Sentences → whitespace tokens, exactly as the serving signature splits them."""
        return split_words(tf.constant([str(s) for s in sentences], dtype=tf.string, shape=[len(sentences)]))

    def predict_tags(self, sentences: Sequence[str]) -> list[list[str]]:
        """One tag per whitespace token of every sentence."""
        if not len(sentences):
            return []
        return self.predictor.predict_tags(self.split(sentences), self.labels.names)

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        """One row per text (a sentence of whitespace tokens): ``text``, ``tokens``, ``tags`` and ``entities``
        (``[{type, text, start, end}]``, token offsets, ``end`` exclusive)."""
        sentences = [str(s) for s in texts]
        words = [[w.decode("utf-8") for w in row] for row in self.split(sentences).to_list()] if sentences else []
        tags = self.predictor.predict_tags(words, self.labels.names) if sentences else []
        entities = [
            [{"type": t, "text": " ".join(tokens[s:e]), "start": s, "end": e} for t, s, e in entity_spans(row)]
            for tokens, row in zip(words, tags)
        ]
        return pd.DataFrame({"text": sentences, "tokens": words, "tags": tags, "entities": entities})

    def evaluate(self, data: str | pathlib.Path | pd.DataFrame) -> dict[str, Any]:
        """conlleval metrics (overall and per entity type) on a CoNLL file or a :func:`read_conll` frame."""
        frame = data if isinstance(data, pd.DataFrame) else read_conll(data)
        predicted = self.predictor.predict_tags(frame["tokens"].tolist(), self.labels.names)
        return {"examples": len(frame), **conlleval(frame["tags"].tolist(), predicted)}

    def read_unlabelled(self, path: str | pathlib.Path) -> list[str]:
        """Sentences to tag: a CoNLL file (tokens joined by spaces) or a text file, one sentence per line."""
        path = pathlib.Path(path)
        if path.suffix.lower() in CONLL_SUFFIXES:
            return [" ".join(tokens) for tokens in read_conll(path)["tokens"]]
        from llmos_tf.data.readers import read_utf8_text

        sentences = [line.strip() for line in read_utf8_text(path).splitlines() if line.strip()]
        if not sentences:
            raise DataError(f"{path}: no sentences (expected one sentence per line)")
        return sentences
