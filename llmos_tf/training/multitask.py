"""``task: multitask``: one BERT encoder, several sentence-classification heads.

Each head has its own data files, loss weight and sampling rate. Training batches
come from one head at a time, drawn by ``tf.data.Dataset.sample_from_datasets``
with the heads' sampling rates; a batch carries zero sample weights for the other
heads, so only its own head's loss (times its ``loss_weight``) moves the shared
encoder. Every head gets its own validation metrics each epoch
(``val_<head>_accuracy`` ...) and ``val_accuracy`` is their mean.

Example config::

    task: multitask
    model: {architecture: bert, encoder: minilm-l6}
    heads:
      - {name: sentiment, train: sst2.tsv, sampling_rate: 0.5}
      - {name: intent, train: banking77.csv, loss_weight: 2.0}
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import RunConfig
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
from llmos_tf.data.prepare import PreparedData, prepare_classification_data
from llmos_tf.errors import ConfigError, RunError
from llmos_tf.models import registry
from llmos_tf.training import artifacts
from llmos_tf.training.callbacks import BestCheckpoint, LearningRateLogger, metric_mode
from llmos_tf.training.distribute import resolve_strategy
from llmos_tf.training.evaluation import classification_metrics
from llmos_tf.training.optimizers import build_optimizer
from llmos_tf.training.trainer import StartStep, TrainResult, _prepare_run_dir, training_facts, write_hparams

MULTITASK = "multitask"


def head_labels_file(head: str) -> str:
    return f"labels_{head}.txt"


def build_multitask_model(encoder, heads: dict[str, int], *, pooling: str = "mean", dropout: float = 0.1) -> tf_keras.Model:
    """Shared encoder → pooled vector → one softmax ``Dense`` per head (outputs keyed by head name)."""
    from llmos_tf.models.bert import _bert_initializer
    from llmos_tf.models.heads import MaskedMeanPooling, _inputs

    inputs = _inputs()
    outputs = encoder(inputs)
    if pooling == "cls":
        pooled = outputs["pooled_output"]
    else:
        pooled = MaskedMeanPooling(name="mean_pooling")(outputs["sequence_output"], padding_mask=inputs["padding_mask"])
    pooled = tf_keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    probs = {
        name: tf_keras.layers.Dense(n, activation="softmax", dtype="float32", kernel_initializer=_bert_initializer(), name=name)(pooled)
        for name, n in heads.items()
    }
    return tf_keras.Model(inputs, probs, name="multitask_classifier")


class HeadValidation(tf_keras.callbacks.Callback):
    """Per-head validation accuracy and macro-F1 into ``logs`` and TensorBoard; ``val_accuracy`` = their mean."""

    def __init__(self, datasets: dict[str, tf.data.Dataset], targets: dict[str, np.ndarray], labels: dict[str, LabelMap], log_dir: pathlib.Path):
        super().__init__()
        self.datasets, self.targets, self.labels = datasets, targets, labels
        self.writer = tf.summary.create_file_writer(str(log_dir / "validation"))
        self.last: dict[str, dict] = {}

    def evaluate(self) -> dict[str, dict]:
        results = {}
        for head, ds in self.datasets.items():
            probs = self.model.predict(ds, verbose=0)[head]
            results[head] = classification_metrics(self.targets[head], probs.argmax(-1), self.labels[head].names)
        return results

    def on_epoch_end(self, epoch, logs=None):
        self.last = self.evaluate()
        with self.writer.as_default(step=epoch), tf.summary.record_if(True):
            for head, m in self.last.items():
                tf.summary.scalar(f"epoch_{head}_accuracy", m["accuracy"])
                tf.summary.scalar(f"epoch_{head}_macro_f1", m["macro_f1"])
        self.writer.flush()
        if logs is not None:
            for head, m in self.last.items():
                logs[f"val_{head}_accuracy"] = m["accuracy"]
                logs[f"val_{head}_macro_f1"] = m["macro_f1"]
            logs["val_accuracy"] = float(np.mean([m["accuracy"] for m in self.last.values()]))
            logs["val_macro_f1"] = float(np.mean([m["macro_f1"] for m in self.last.values()]))


def _head_data(cfg: RunConfig) -> dict[str, PreparedData]:
    out = {}
    for head in cfg.heads:
        data_cfg = dataclasses.replace(
            cfg.data, train=head.train, validation=head.validation, test=None,
            format=head.format, text_column=head.text_column, label_column=head.label_column,
        )
        out[head.name] = prepare_classification_data(data_cfg, cfg.seed)
    return out


def _with_head(name: str, names: Sequence[str]):
    """Map ``(features, y)`` of one head to the multi-output structure (zero weight for the others)."""

    def fn(features, y):
        labels = {n: (y if n == name else tf.zeros_like(y)) for n in names}
        weights = {n: (tf.ones_like(y, tf.float32) if n == name else tf.zeros_like(y, tf.float32)) for n in names}
        return features, labels, weights

    return fn


def train_multitask(cfg: RunConfig, *, overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, command: str | None = None) -> TrainResult:
    """Train one shared encoder with a head per ``heads:`` entry; writes a run folder like ``llmos train``."""
    from llmos_tf.models.bert_classifier import BertTokenIds, _encoder, apply_freezing, bert_features, bert_vocabulary

    started = time.time()
    tf_keras.utils.set_random_seed(cfg.seed)
    if not cfg.training.monitor.startswith("val_") or cfg.training.monitor.replace("val_", "", 1) not in ("accuracy", "macro_f1", *[f"{h.name}_{m}" for h in cfg.heads for m in ("accuracy", "macro_f1")]):
        raise ConfigError(f"training.monitor: {cfg.training.monitor!r} is not logged by a multitask run; use val_accuracy (mean over heads), val_macro_f1 or val_<head>_accuracy")
    data = _head_data(cfg)
    names = [h.name for h in cfg.heads]
    model_cfg = registry.model_config(cfg.model)
    arch = registry.get("bert")
    run_dir, resuming = _prepare_run_dir(cfg, overwrite)

    from llmos_tf.text.wordpiece import load_vocabulary, save_vocabulary

    vocab_path = run_dir / artifacts.VOCAB_FILE
    if vocab_path.is_file():
        vocab = load_vocabulary(vocab_path)
    else:
        vocab = bert_vocabulary(model_cfg, [t for d in data.values() for t in d.train["text"].tolist()], cfg.text)
        save_vocabulary(vocab, vocab_path)
    for name, d in data.items():
        d.labels.save(run_dir / head_labels_file(name))
    max_length = arch.max_length(model_cfg, cfg.data.max_length)
    tokenizer = BertTokenIds.for_run(model_cfg, vocab, cfg.text, max_length)
    dist = resolve_strategy(strategy)
    replicas = dist.num_replicas_in_sync
    plan = BatchingPlan(cfg.training.batch_size * replicas, max_length, bucketing=cfg.data.bucketing, bucket_boundaries=tuple(cfg.data.bucket_boundaries), tpu_mode=cfg.data.tpu_mode)
    eval_plan = BatchingPlan(plan.batch_size, max_length, bucketing=False)

    train_sets, val_sets, val_targets, steps = [], {}, {}, 0
    for name, d in data.items():
        texts = d.train["text"].tolist()
        steps += count_batches(token_lengths(texts, tokenizer, max_length), plan, training=True)
        ds = make_dataset(texts, d.y_train, tokenizer, plan, training=True, seed=cfg.seed, shuffle_buffer=cfg.data.shuffle_buffer, repeat=True, features=bert_features)
        train_sets.append(ds.map(_with_head(name, names)))
        val_sets[name] = make_dataset(d.validation["text"].tolist(), None, tokenizer, eval_plan, training=False, features=bert_features)
        val_targets[name] = d.y_validation
    rates = np.array([h.sampling_rate for h in cfg.heads], dtype=np.float64)
    train_ds = tf.data.Dataset.sample_from_datasets(train_sets, weights=list(rates / rates.sum()), seed=cfg.seed).prefetch(tf.data.AUTOTUNE)
    steps_per_epoch = min(steps, cfg.training.steps_per_epoch) if cfg.training.steps_per_epoch else steps

    with dist.scope():
        encoder = _encoder(model_cfg, vocab, max_length)
        apply_freezing(encoder, model_cfg, uses_pooler=model_cfg.pooling == "cls")
        model = build_multitask_model(encoder, {n: len(d.labels) for n, d in data.items()}, pooling=model_cfg.pooling, dropout=model_cfg.dropout)
        model.compile(
            optimizer=build_optimizer(cfg.training, steps_per_epoch * cfg.training.epochs),
            loss={n: tf_keras.losses.SparseCategoricalCrossentropy() for n in names},
            loss_weights={h.name: h.loss_weight for h in cfg.heads},
            weighted_metrics={n: [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")] for n in names},
        )
    if not resuming:
        write_hparams(run_dir, cfg)
    best = BestCheckpoint(run_dir / artifacts.CHECKPOINT_DIR, cfg.training.monitor)
    start_step = StartStep()
    validation = HeadValidation(val_sets, val_targets, {n: d.labels for n, d in data.items()}, run_dir)
    callbacks = [
        tf_keras.callbacks.BackupAndRestore(str(run_dir / artifacts.BACKUP_DIR), save_freq=max(1, cfg.training.backup_every_steps), delete_checkpoint=False),
        start_step,
        validation,
        LearningRateLogger(run_dir, cfg.training.log_every_steps),
        tf_keras.callbacks.TensorBoard(str(run_dir), update_freq=max(1, cfg.training.log_every_steps), write_graph=True, profile_batch=0),
        best,
    ]
    if cfg.training.early_stopping_patience > 0:
        callbacks.append(tf_keras.callbacks.EarlyStopping(monitor=cfg.training.monitor, mode=metric_mode(cfg.training.monitor), patience=cfg.training.early_stopping_patience))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    history = model.fit(train_ds, epochs=cfg.training.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose)
    final_step = int(model.optimizer.iterations.numpy())
    best.restore()
    per_head = validation.evaluate()
    metrics = {
        "validation": {
            "accuracy": float(np.mean([m["accuracy"] for m in per_head.values()])),
            "macro_f1": float(np.mean([m["macro_f1"] for m in per_head.values()])),
            "heads": per_head,
        }
    }
    info = {
        "name": cfg.name,
        "task": MULTITASK,
        "architecture": cfg.architecture,
        "heads": {n: d.labels.names for n, d in data.items()},
        "labels": [],
        "data": {
            "heads": {n: d.summary() for n, d in data.items()},
            "train_examples": sum(len(d.train) for d in data.values()),
            "validation_examples": sum(len(d.validation) for d in data.values()),
            "sampling_rates": {h.name: h.sampling_rate for h in cfg.heads},
            "loss_weights": {h.name: h.loss_weight for h in cfg.heads},
        },
        "metrics": {"validation": {n: {k: m[k] for k in ("examples", "accuracy", "macro_f1")} for n, m in per_head.items()}},
        "max_length": max_length,
        **training_facts(
            model=model, history=history, best=best, monitor=cfg.training.monitor, steps_per_epoch=steps_per_epoch,
            replicas=replicas, resumed=resuming, start_step=start_step.step, final_step=final_step, started=started, command=command,
        ),
    }
    artifacts.finish_run(run_dir, model, metrics, info)
    return TrainResult(run_dir=run_dir, metrics=metrics, info=info, history={k: [float(x) for x in v] for k, v in history.history.items()})


class TrainedMultitask:
    """A finished multitask run: predict and evaluate one head at a time."""

    def __init__(self, run_dir: pathlib.Path, model, tokenizer, heads: dict[str, LabelMap], info: dict[str, Any], max_length: int):
        self.run_dir, self.model, self.tokenizer, self.heads, self.info, self.max_length = run_dir, model, tokenizer, heads, info, max_length

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
        return cls(run_dir, model, tokenizer, heads, info, max_length)

    def _head(self, head: str | None) -> str:
        if head is None:
            raise RunError(f"{self.run_dir}: a multitask run has heads {', '.join(self.heads)}; choose one with --head")
        if head not in self.heads:
            raise RunError(f"--head: unknown head {head!r}; this run has {', '.join(self.heads)}")
        return head

    def predict_proba(self, texts: Sequence[str], head: str | None) -> np.ndarray:
        from llmos_tf.models.bert_classifier import bert_features

        head = self._head(head)
        ds = make_dataset([str(t) for t in texts], None, self.tokenizer, BatchingPlan(64, self.max_length, bucketing=False), training=False, cache=False, features=bert_features)
        return self.model.predict(ds, verbose=0)[head]

    def predict(self, texts: Sequence[str], head: str | None) -> pd.DataFrame:
        probs = self.predict_proba(texts, head)
        ids = probs.argmax(-1)
        return pd.DataFrame({"text": list(texts), "label": self.heads[head].decode(ids), "probability": probs[np.arange(len(ids)), ids]})

    def evaluate(self, path: str | pathlib.Path, head: str | None) -> dict[str, Any]:
        from llmos_tf.data.readers import read_labelled_table

        head = self._head(head)
        frame = read_labelled_table(path)
        y = self.heads[head].encode(frame["label"].tolist(), path=str(path), lines=frame["line"].tolist())
        return classification_metrics(y, self.predict_proba(frame["text"].tolist(), head).argmax(-1), self.heads[head].names)

    def read_unlabelled(self, path) -> list[str]:
        from llmos_tf.data.readers import read_texts

        return read_texts(path)["text"].tolist()


def is_multitask_run(run_dir: str | pathlib.Path) -> bool:
    try:
        return artifacts.read_run_info(run_dir).get("task") == MULTITASK
    except Exception:
        return False
