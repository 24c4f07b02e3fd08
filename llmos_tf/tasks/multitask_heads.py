"""The heads of a multitask run, one class per head task: data, batches, loss and validation.

A multitask model is one shared BERT encoder with a dict of float32 softmax
outputs keyed by head name (:func:`build_multitask_model`):

* ``classification`` heads read the pooled sentence vector → ``[B, num_labels]``;
* ``ner`` heads read the encoder's ``sequence_output`` → ``[B, T, num_tags]``
  (first-subword labelling as in :mod:`llmos_tf.tasks.tagging_data`).

Every training batch comes from one head's data. :func:`with_head` gives it the
full per-head label/weight structure that ``tf.data.Dataset.sample_from_datasets``
needs (the same dict keys and dtypes in every head's dataset, time dimension
``None``): the other classification heads get label 0 with weight 0, the other
NER heads a ``[B, T]`` label of ``-1`` (ignored) with weight 0. So only the
batch's own head moves the shared encoder.

Both head kinds tokenize with one :class:`~llmos_tf.text.bert_tokenizer.BertTextEncoder`
(one WordPiece vocabulary, one ``max_length``): a classification head through
:class:`~llmos_tf.models.bert_classifier.BertTokenIds`, an NER head through its
``.encoder`` with :func:`~llmos_tf.text.alignment.encode_words`.

Example::

    heads = prepare_heads(cfg)                       # validated data, nothing written
    model = build_multitask_model(encoder, {h.name: len(h.labels) for h in heads},
                                  tasks={h.name: h.task for h in heads})
    model(features)["ner"].shape                      # [B, T, num_tags]
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import HEAD_METRICS, HeadConfig, RunConfig
from llmos_tf.data.conll import OUTSIDE_TAG
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
from llmos_tf.data.prepare import PreparedData, prepare_classification_data
from llmos_tf.models.bert import PACKAGE
from llmos_tf.task_kinds import task_kind
from llmos_tf.text.alignment import IGNORE_LABEL
from llmos_tf.training.evaluation import classification_metrics
from llmos_tf.tasks.classification import ClassificationTask
from llmos_tf.tasks.tagging import SUMMARY_KEYS, TaggingTask, MaskedSparseCategoricalCrossentropy, MaskedTokenAccuracy
from llmos_tf.tasks.tagging_data import (
    TaggingData,
    WordTagPredictor,
    evaluate_frame,
    make_tagging_dataset,
    prepare_tagging_data,
    ragged_tag_ids,
    ragged_words,
    truncation_facts,
)

CLASSIFICATION = ClassificationTask.name  # head kinds are the single-task names
NER = TaggingTask.name
Evaluate = Callable[[tf_keras.Model], dict[str, Any]]


def head_labels_file(head: str) -> str:
    """The run-folder (and export asset) file with one head's label names."""
    return f"labels_{head}.txt"


def main_metric(task: str) -> str:
    """The metric ``val_score`` averages: accuracy (classification) or entity F1 (NER)."""
    return HEAD_METRICS[task][0]


# --------------------------------------------------------------------------- model


def build_multitask_model(encoder, heads: dict[str, int], *, tasks: dict[str, str] | None = None,
                          pooling: str = "mean", dropout: float = 0.1) -> tf_keras.Model:
    """Shared encoder → one softmax ``Dense`` per head, named after it (outputs keyed by head name).

    ``tasks`` maps head names to ``classification`` (the default: pooled vector)
    or ``ner`` (every token of ``sequence_output``).
    """
    from llmos_tf.models.bert import _bert_initializer
    from llmos_tf.models.heads import MaskedMeanPooling, _inputs

    tasks = tasks or {}
    inputs = _inputs()
    outputs = encoder(inputs)
    pooled = sequence = None
    probs = {}
    for name, n in heads.items():
        if task_kind(tasks.get(name, CLASSIFICATION)).predicts == "word_tags":
            if sequence is None:
                sequence = tf_keras.layers.Dropout(dropout, name="token_dropout")(outputs["sequence_output"])
            x = sequence
        else:
            if pooled is None:
                if pooling == "cls":
                    pooled = outputs["pooled_output"]
                else:
                    pooled = MaskedMeanPooling(name="mean_pooling")(outputs["sequence_output"], padding_mask=inputs["padding_mask"])
                pooled = tf_keras.layers.Dropout(dropout, name="head_dropout")(pooled)
            x = pooled
        probs[name] = tf_keras.layers.Dense(n, activation="softmax", dtype="float32", kernel_initializer=_bert_initializer(), name=name)(x)
    return tf_keras.Model(inputs, probs, name="multitask_classifier")


def head_model(model: tf_keras.Model, head: str) -> tf_keras.Model:
    """A view of one head: the same layers (and weights), only that head's probabilities."""
    return tf_keras.Model(model.input, model.get_layer(head).output, name=f"head_{head}")


@tf_keras.saving.register_keras_serializable(package=PACKAGE)
class HeadTokenCrossentropy(MaskedSparseCategoricalCrossentropy):
    """An NER head's loss in a multitask model: the tagger's masked token cross-entropy.

    Keras passes a multi-output model one ``sample_weight [B]`` per head; its own
    weighting would broadcast this scalar loss against it. Here a sentence with
    weight 0 (a batch of another head) has its tokens ignored instead, so an own
    batch gives exactly the single-task tagger's loss.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            keep = tf.reshape(tf.cast(sample_weight, tf.float32) > 0, [-1, 1])
            y_true = tf.where(keep, tf.cast(y_true, tf.int32), self.ignore_label)
        return super().__call__(y_true, y_pred)


def with_head(name: str, tasks: dict[str, str]):
    """Map ``(features, y)`` of head ``name`` to ``(features, labels, weights)`` dicts over all heads."""

    def fn(features, y):
        ids = features["token_ids"]
        batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
        labels, weights = {}, {}
        for head, task in tasks.items():
            own = head == name
            if own:
                labels[head] = tf.cast(y, tf.int32)
            elif task_kind(task).predicts == "word_tags":
                labels[head] = tf.fill(tf.stack([batch, length]), tf.constant(IGNORE_LABEL, tf.int32))
            else:
                labels[head] = tf.zeros(tf.stack([batch]), tf.int32)
            weights[head] = tf.fill(tf.stack([batch]), 1.0 if own else 0.0)
        return features, labels, weights

    return fn


# --------------------------------------------------------------------------- heads


def _head_data_config(run_cfg: RunConfig, head: HeadConfig):
    return dataclasses.replace(
        run_cfg.data, train=head.train, validation=head.validation, test=None,
        format=head.format, text_column=head.text_column, label_column=head.label_column, label_names=head.label_names,
    )


@dataclasses.dataclass
class ClassificationHead:
    """A sentence-classification head: labelled table in, accuracy and macro-F1 out."""

    name: str
    data: PreparedData
    task = CLASSIFICATION

    @property
    def labels(self) -> LabelMap:
        return self.data.labels

    def texts(self) -> list[str]:
        """Training texts (a fresh encoder learns its vocabulary from all heads' texts)."""
        return self.data.train["text"].tolist()

    def summary(self) -> dict[str, Any]:
        return {"task": self.task, **self.data.summary()}

    def train_dataset(self, tokenizer, plan: BatchingPlan, *, seed: int, shuffle_buffer: int) -> tuple[tf.data.Dataset, int]:
        """Repeated ``(features, y [B])`` batches and the number of batches in one pass."""
        from llmos_tf.models.bert_classifier import bert_features

        texts = self.texts()
        steps = count_batches(token_lengths(texts, tokenizer, plan.max_length), plan, training=True)
        ds = make_dataset(texts, self.data.y_train, tokenizer, plan, training=True, seed=seed, shuffle_buffer=shuffle_buffer, repeat=True, features=bert_features)
        return ds, steps

    def loss(self):
        return tf_keras.losses.SparseCategoricalCrossentropy()

    def metric(self):
        return tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def validation(self, tokenizer, plan: BatchingPlan) -> Evaluate:
        """``model -> metrics`` on the head's validation split."""
        from llmos_tf.models.bert_classifier import bert_features

        ds = make_dataset(self.data.validation["text"].tolist(), None, tokenizer, plan, training=False, features=bert_features)
        targets, names, name = self.data.y_validation, self.labels.names, self.name
        return lambda model: classification_metrics(targets, model.predict(ds, verbose=0)[name].argmax(-1), names)

    @staticmethod
    def summary_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
        return {k: metrics[k] for k in ("examples", "accuracy", "macro_f1")}


@dataclasses.dataclass
class NerHead:
    """A token-classification head: CoNLL files in, conlleval entity P/R/F1 out."""

    name: str
    data: TaggingData
    task = NER
    truncation: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def labels(self) -> LabelMap:
        return self.data.labels

    def texts(self) -> list[str]:
        return [" ".join(tokens) for tokens in self.data.train["tokens"]]

    def summary(self) -> dict[str, Any]:
        return {"task": self.task, **self.data.summary(), **self.truncation}

    def train_dataset(self, tokenizer, plan: BatchingPlan, *, seed: int, shuffle_buffer: int) -> tuple[tf.data.Dataset, int]:
        """Repeated ``(features, labels [B, T])`` batches (-1 off first subwords) and the batches in one pass."""
        text_encoder = tokenizer.encoder
        words = ragged_words(self.data.train["tokens"].tolist())
        lengths, self.truncation = truncation_facts(text_encoder, self.data.train, self.data.validation)
        if self.truncation["truncated_train_sentences"] or self.truncation["truncated_validation_sentences"]:
            warnings.warn(
                f"heads: {self.name}: {self.truncation['truncated_train_sentences']} training and "
                f"{self.truncation['truncated_validation_sentences']} validation sentences have more than "
                f"data.max_length={plan.max_length} subwords; their last words are not trained on and are predicted as 'O'"
            )
        tags = ragged_tag_ids(self.data.train["tags"].tolist(), self.labels)
        ds = make_tagging_dataset(text_encoder, words, tags, plan, training=True, seed=seed, shuffle_buffer=shuffle_buffer, repeat=True)
        return ds, count_batches(lengths, plan, training=True)

    def loss(self):
        return HeadTokenCrossentropy()

    def metric(self):
        return MaskedTokenAccuracy(name="token_accuracy")

    def validation(self, tokenizer, plan: BatchingPlan) -> Evaluate:
        frame, names, name = self.data.validation, self.labels.names, self.name
        outside = names.index(OUTSIDE_TAG) if OUTSIDE_TAG in names else 0
        cache: dict[int, WordTagPredictor] = {}

        def evaluate(model):
            if id(model) not in cache:  # one traced predictor per model, not per epoch
                cache[id(model)] = WordTagPredictor(tokenizer.encoder, head_model(model, name), outside_id=outside, batch_size=plan.batch_size)
            return {"examples": len(frame), **evaluate_frame(cache[id(model)], frame, names)}

        return evaluate

    @staticmethod
    def summary_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
        return {"examples": metrics["examples"], **{k: metrics[k] for k in SUMMARY_KEYS}}


Head = ClassificationHead | NerHead


def prepare_heads(cfg: RunConfig) -> list[Head]:
    """Read, validate and split every head's files (nothing is written)."""
    heads: list[Head] = []
    for i, head in enumerate(cfg.heads):
        data_cfg = _head_data_config(cfg, head)
        if task_kind(head.task).predicts == "word_tags":
            heads.append(NerHead(head.name, prepare_tagging_data(data_cfg, cfg.seed)))
        else:
            heads.append(ClassificationHead(head.name, prepare_classification_data(data_cfg, cfg.seed, names_key=f"heads[{i}].label_names")))
    return heads


# --------------------------------------------------------------------------- validation


def validation_logs(per_head: dict[str, dict[str, Any]], tasks: dict[str, str]) -> dict[str, float]:
    """Per-head ``val_<head>_<metric>``, ``val_score`` (mean of the heads' main metrics) and, when
    every head classifies, ``val_accuracy`` / ``val_macro_f1`` (means over heads, as before NER heads)."""
    logs = {f"val_{head}_{m}": float(metrics[m]) for head, metrics in per_head.items() for m in HEAD_METRICS[tasks[head]]}
    logs["val_score"] = float(np.mean([per_head[h][main_metric(tasks[h])] for h in per_head]))
    if all(task_kind(t).predicts == "label" for t in tasks.values()):
        for m in ("accuracy", "macro_f1"):
            logs[f"val_{m}"] = float(np.mean([per_head[h][m] for h in per_head]))
    return logs


class HeadValidation(tf_keras.callbacks.Callback):
    """Every epoch: each head's validation metrics into ``logs`` (see :func:`validation_logs`) and TensorBoard.

    Place it before Keras' TensorBoard callback and the monitors: they read its keys from ``logs``.
    """

    def __init__(self, checks: dict[str, Evaluate], tasks: dict[str, str], log_dir):
        super().__init__()
        self.checks, self.tasks = checks, tasks
        self.writer = tf.summary.create_file_writer(str(log_dir / "validation"))
        self.last: dict[str, dict] = {}

    def evaluate(self) -> dict[str, dict[str, Any]]:
        return {head: check(self.model) for head, check in self.checks.items()}

    def on_epoch_end(self, epoch, logs=None):
        self.last = self.evaluate()
        with self.writer.as_default(step=epoch), tf.summary.record_if(True):
            for head, metrics in self.last.items():
                for m in HEAD_METRICS[self.tasks[head]]:
                    tf.summary.scalar(f"epoch_{head}_{m}", metrics[m])
        self.writer.flush()
        if logs is not None:
            logs.update(validation_logs(self.last, self.tasks))


def summary_metrics(heads: Sequence[Head], per_head: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The figures ``run.json`` keeps per head (no confusion matrices)."""
    return {h.name: h.summary_metrics(per_head[h.name]) for h in heads}
