"""``task: multitask``: one BERT encoder, several heads (sentence classification or NER).

Each head has its own data files, task, loss weight and sampling rate. Training
batches come from one head at a time, drawn by ``tf.data.Dataset.sample_from_datasets``
with the heads' sampling rates; a batch carries zero sample weights (and ignored
NER labels) for the other heads, so only its own head's loss (times its
``loss_weight``) moves the shared encoder (see :mod:`llmos_tf.tasks.multitask_heads`,
which composes the single tasks' data, losses and metrics per head).

Every head gets its own validation metrics each epoch: ``val_<head>_accuracy`` and
``val_<head>_macro_f1`` for classification heads, ``val_<head>_entity_f1`` /
``_entity_precision`` / ``_entity_recall`` (conlleval) for NER heads.
``val_score`` is the mean of each head's main metric (accuracy, entity F1) and
can be ``training.monitor``; runs whose heads all classify also log
``val_accuracy`` and ``val_macro_f1`` (means over heads).

Example config::

    task: multitask
    model: {architecture: bert, encoder: minilm-l6}
    training: {monitor: val_score}
    heads:
      - {name: sentiment, train: sst2.tsv, sampling_rate: 0.5}
      - {name: intent, train: banking77.csv, loss_weight: 2.0}
      - {name: ner, task: ner, train: conll2003/train.txt, validation: conll2003/valid.txt}
"""
from __future__ import annotations

import pathlib
from typing import Any, Sequence

import numpy as np
import pandas as pd

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import RunConfig
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import BatchingPlan, make_dataset
from llmos_tf.errors import ConfigError, RunError
from llmos_tf.models import registry
from llmos_tf.task_kinds import task_kind
from llmos_tf.tasks.base import Task, TaskInputs, register_task
from llmos_tf.tasks.multitask_heads import (
    CLASSIFICATION,
    NER,
    HeadValidation,
    build_multitask_model,
    head_labels_file,
    head_model,
    prepare_heads,
    summary_metrics,
    validation_logs,
    with_head,
)
from llmos_tf.training import artifacts
from llmos_tf.training.evaluation import classification_metrics

MULTITASK = "multitask"


@register_task
class MultitaskTask(Task):
    """One shared BERT encoder with a head per ``heads:`` entry (see the module docstring)."""

    name = MULTITASK
    kind = task_kind(name)
    summary_metrics = (("score", "score"), ("accuracy", "accuracy"), ("macro_f1", "macro-F1"))  # score: mean of the heads' main metrics; each head evaluates as its own task
    multi_worker = "multi-worker training is implemented for classification runs (each head validates on every worker)"

    def check(self) -> None:
        from llmos_tf.config import multitask_monitors

        monitors = multitask_monitors(self.cfg.heads)
        if self.cfg.training.monitor not in monitors:  # config_from_dict checks it too; a hand-built config may not
            raise ConfigError(f"training.monitor: {self.cfg.training.monitor!r} is not logged by this multitask run; valid: {', '.join(monitors)}")

    def prepare_data(self):
        return prepare_heads(self.cfg)

    def label_maps(self, heads) -> dict[str, LabelMap]:
        return {head_labels_file(h.name): h.labels for h in heads}

    def learn_vocabulary(self, heads) -> list[str]:
        return self.architecture.vocabulary(self.model_config, [t for h in heads for t in h.texts()], self.cfg.text)

    def build_preprocessor(self, vocabulary: Sequence[str]):
        """One tokenizer for every head: classification heads use it whole, NER heads its BertTextEncoder."""
        from llmos_tf.models.bert_classifier import BertTokenIds

        return BertTokenIds.for_run(self.model_config, list(vocabulary), self.cfg.text, self.max_length)

    def build_inputs(self, heads, preprocessor, plan: BatchingPlan, eval_plan: BatchingPlan, *, seed: int) -> TaskInputs:
        tasks = {h.name: h.task for h in heads}
        train_sets, checks, steps = [], {}, 0
        for h in heads:
            ds, n = h.train_dataset(preprocessor, plan, seed=seed, shuffle_buffer=self.cfg.data.shuffle_buffer)
            train_sets.append(ds.map(with_head(h.name, tasks)))
            steps += n
            checks[h.name] = h.validation(preprocessor, eval_plan)
        rates = np.array([h.sampling_rate for h in self.cfg.heads], dtype=np.float64)
        train = tf.data.Dataset.sample_from_datasets(train_sets, weights=list(rates / rates.sum()), seed=seed).prefetch(tf.data.AUTOTUNE)
        return TaskInputs(train=train, steps_per_epoch=steps, examples=f"{sum(len(h.data.train) for h in heads)} examples",
                          extra={"checks": checks, "tasks": tasks})

    def build_model(self, heads, preprocessor, vocabulary: Sequence[str]):
        from llmos_tf.models.bert_classifier import _encoder, apply_freezing

        m = self.model_config
        tasks = {h.name: h.task for h in heads}
        encoder = _encoder(m, list(vocabulary), self.max_length)
        apply_freezing(encoder, m, uses_pooler=m.pooling == "cls" and CLASSIFICATION in tasks.values())
        self._heads = heads
        return build_multitask_model(encoder, {h.name: len(h.labels) for h in heads}, tasks=tasks, pooling=m.pooling, dropout=m.dropout)

    def compile_args(self, model) -> dict[str, Any]:
        return {
            "loss": {h.name: h.loss() for h in self._heads},
            "loss_weights": {h.name: h.loss_weight for h in self.cfg.heads},
            "weighted_metrics": {h.name: [h.metric()] for h in self._heads},
        }

    def validation_callbacks(self, heads, preprocessor, inputs: TaskInputs, log_dir: pathlib.Path, batch_size: int) -> list:
        self._validation = HeadValidation(inputs.extra["checks"], inputs.extra["tasks"], log_dir)
        return [self._validation]

    def evaluate(self, model, heads, preprocessor, inputs: TaskInputs, batch_size: int) -> dict[str, Any]:
        per_head = self._validation.evaluate()
        logs = validation_logs(per_head, inputs.extra["tasks"])
        figures = {"score": logs["val_score"], "heads": per_head}
        if "val_accuracy" in logs:  # every head classifies: the means of runs made before NER heads
            figures.update(accuracy=logs["val_accuracy"], macro_f1=logs["val_macro_f1"])
        return {"validation": figures}

    def run_info(self, heads, metrics: dict[str, Any], inputs: TaskInputs) -> dict[str, Any]:
        per_head = metrics["validation"]["heads"]
        return {
            "heads": {h.name: {"task": h.task, "labels": h.labels.names} for h in heads},
            "labels": [],
            "data": {
                "heads": {h.name: h.summary() for h in heads},
                "train_examples": sum(len(h.data.train) for h in heads),
                "validation_examples": sum(len(h.data.validation) for h in heads),
                "sampling_rates": {h.name: h.sampling_rate for h in self.cfg.heads},
                "loss_weights": {h.name: h.loss_weight for h in self.cfg.heads},
            },
            "metrics": {"validation": summary_metrics(heads, per_head)},
            "validation_score": metrics["validation"]["score"],
            "max_length": self.max_length,
        }

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedMultitask":
        return TrainedMultitask.load(run_dir)


class TrainedMultitask:
    """A finished multitask run: predict and evaluate one head at a time.

    Classification heads give ``text, label, probability`` rows and accuracy /
    macro-F1; NER heads take sentences of whitespace tokens and give ``text,
    tokens, tags, entities`` rows and conlleval entity P/R/F1, as a single-task
    :class:`~llmos_tf.tasks.tagging.TrainedTagger` does.

    Example::

        run = TrainedMultitask.load("runs/mt")
        run.predict(["a wonderful film"], "sentiment")
        run.predict_tags(["Peter lives in Paris"], "ner")   # [['B-PER', 'O', 'O', 'B-LOC']]
    """

    def __init__(self, run_dir: pathlib.Path, model, tokenizer, heads: dict[str, LabelMap], info: dict[str, Any], max_length: int,
                 tasks: dict[str, str] | None = None, config: RunConfig | None = None):
        self.run_dir, self.model, self.tokenizer, self.heads, self.info, self.max_length = run_dir, model, tokenizer, heads, info, max_length
        self.tasks = tasks or {n: CLASSIFICATION for n in heads}
        self.config = config
        self._predictors: dict[str, Any] = {}

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedMultitask":
        import llmos_tf.models.bert  # noqa: F401  (registers custom layers)
        import llmos_tf.models.heads  # noqa: F401  (registers MaskedMeanPooling)
        from llmos_tf.config import load_config
        from llmos_tf.models.bert_classifier import BertTokenIds
        from llmos_tf.text.wordpiece import load_vocabulary

        run_dir = pathlib.Path(run_dir)
        info = artifacts.read_run_info(run_dir)
        cfg = load_config(run_dir / artifacts.CONFIG_FILE)
        vocab = load_vocabulary(run_dir / artifacts.VOCAB_FILE)
        model = tf_keras.models.load_model(run_dir / artifacts.MODEL_FILE, compile=False)
        heads = {n: LabelMap.load(run_dir / head_labels_file(n)) for n in info["heads"]}
        max_length = int(info["max_length"])
        tokenizer = BertTokenIds.for_run(registry.model_config(cfg.model), vocab, cfg.text, max_length)
        return cls(run_dir, model, tokenizer, heads, info, max_length, head_tasks(info), cfg)

    def _head(self, head: str | None, task: str | None = None) -> str:
        if head is None:
            raise RunError(f"{self.run_dir}: a multitask run has heads {', '.join(self.heads)}; choose one with --head")
        if head not in self.heads:
            raise RunError(f"--head: unknown head {head!r}; this run has {', '.join(self.heads)}")
        if task is not None and self.tasks[head] != task:
            raise RunError(f"--head {head}: a {self.tasks[head]} head, not {task}")
        return head

    # -- classification heads ------------------------------------------------
    def predict_proba(self, texts: Sequence[str], head: str | None = None) -> np.ndarray:
        """Label probabilities ``[N, num_labels]`` of a classification head."""
        from llmos_tf.models.bert_classifier import bert_features

        head = self._head(head, CLASSIFICATION)
        ds = make_dataset([str(t) for t in texts], None, self.tokenizer, BatchingPlan(64, self.max_length, bucketing=False), training=False, cache=False, features=bert_features)
        return self.model.predict(ds, verbose=0)[head]

    # -- NER heads -------------------------------------------------------------
    def text_encoder(self):
        """The :class:`BertTextEncoder` NER heads tokenize with (the classifiers' tokenizer inside)."""
        return self.tokenizer.encoder

    def predictor(self, head: str):
        """A :class:`~llmos_tf.tasks.tagging_data.WordTagPredictor` on one NER head (cached)."""
        from llmos_tf.data.conll import OUTSIDE_TAG
        from llmos_tf.tasks.tagging_data import WordTagPredictor

        head = self._head(head, NER)
        if head not in self._predictors:
            names = self.heads[head].names
            outside = names.index(OUTSIDE_TAG) if OUTSIDE_TAG in names else 0
            self._predictors[head] = WordTagPredictor(self.text_encoder(), head_model(self.model, head), outside_id=outside)
        return self._predictors[head]

    def predict_tags(self, sentences: Sequence[str], head: str | None = None) -> list[list[str]]:
        """One tag per whitespace token of every sentence (tokens past ``max_length`` subwords: ``O``)."""
        from llmos_tf.text.alignment import split_words

        predictor = self.predictor(head)
        if not len(sentences):
            return []
        words = split_words(tf.constant([str(s) for s in sentences], dtype=tf.string, shape=[len(sentences)]))
        return predictor.predict_tags(words, self.heads[head].names)

    # -- any head --------------------------------------------------------------
    def predict(self, texts: Sequence[str], head: str | None = None) -> pd.DataFrame:
        """Classification: ``text, label, probability``; NER: ``text, tokens, tags, entities``."""
        head = self._head(head)
        if task_kind(self.tasks[head]).predicts == "word_tags":
            from llmos_tf.metrics.conlleval import entity_spans

            from llmos_tf.text.alignment import split_words

            texts = [str(t) for t in texts]
            split = split_words(tf.constant(texts, dtype=tf.string, shape=[len(texts)]))
            words = [[w.decode("utf-8") for w in row] for row in split.to_list()]
            tags = self.predictor(head).predict_tags(words, self.heads[head].names) if texts else []
            entities = [[{"type": k, "text": " ".join(w[s:e]), "start": s, "end": e} for k, s, e in entity_spans(row)] for w, row in zip(words, tags)]
            return pd.DataFrame({"text": texts, "tokens": words, "tags": tags, "entities": entities})
        probs = self.predict_proba(texts, head)
        ids = probs.argmax(-1)
        return pd.DataFrame({"text": list(texts), "label": self.heads[head].decode(ids), "probability": probs[np.arange(len(ids)), ids]})

    def evaluate(self, path: str | pathlib.Path, head: str | None = None) -> dict[str, Any]:
        """Classification heads: accuracy, macro-F1, per class; NER heads: conlleval on a CoNLL file."""
        head = self._head(head)
        if task_kind(self.tasks[head]).data_format == "conll":
            from llmos_tf.data.conll import read_conll
            from llmos_tf.tasks.tagging_data import evaluate_frame

            frame = read_conll(path)
            return {"examples": len(frame), **evaluate_frame(self.predictor(head), frame, self.heads[head].names)}
        from llmos_tf.data.readers import read_labelled_table

        frame = read_labelled_table(path)
        names = next((h.label_names for h in self.config.heads if h.name == head), None) if self.config else None
        y = self.heads[head].encode(frame["label"].tolist(), path=str(path), lines=frame["line"].tolist(), names=names)
        return classification_metrics(y, self.predict_proba(frame["text"].tolist(), head).argmax(-1), self.heads[head].names)

    def read_unlabelled(self, path) -> list[str]:
        """Texts to label: a CoNLL file (tokens joined by spaces) or any file ``llmos predict --data`` reads."""
        from llmos_tf.tasks.tagging import CONLL_SUFFIXES

        if pathlib.Path(path).suffix.lower() in CONLL_SUFFIXES:
            from llmos_tf.data.conll import read_conll

            return [" ".join(tokens) for tokens in read_conll(path)["tokens"]]
        from llmos_tf.data.readers import read_texts

        return read_texts(path)["text"].tolist()


def head_tasks(info: dict[str, Any]) -> dict[str, str]:
    """``{head: task}`` from ``run.json``; runs made before NER heads stored ``heads: {name: [labels]}``."""
    return {n: (CLASSIFICATION if isinstance(v, list) else v.get("task", CLASSIFICATION)) for n, v in info["heads"].items()}


def is_multitask_run(run_dir: str | pathlib.Path) -> bool:
    try:
        return artifacts.read_run_info(run_dir).get("task") == MULTITASK
    except Exception:
        return False
