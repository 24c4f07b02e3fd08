"""``task: ner``: train a token classifier (named entities) from CoNLL files.

The architecture's tagger comes from the model registry: a BERT encoder or a
BiLSTM, each with a softmax head or (``model.crf: true``) a CRF layer, trained on
the sequence log-likelihood and decoded with Viterbi (:mod:`llmos_tf.models.crf`).

The run follows :func:`llmos_tf.training.trainer.train` step for step (validate
first, create or resume ``runs/<name>/``, fit with BackupAndRestore / best
checkpoint / early stopping / TensorBoard, write ``model.keras``, ``metrics.json``
and finally ``run.json``) with three differences:

* examples are sentences of whitespace tokens; inside tf.data each token is
  WordPiece-tokenized and its tag goes on its **first** subword
  (:func:`llmos_tf.text.alignment.encode_words`); other subwords, ``[CLS]``,
  ``[SEP]`` and padding carry label ``-1`` and are ignored by the masked loss
  and the token-accuracy metric;
* sentences longer than ``data.max_length`` subwords lose their last whole
  words; they are counted (``run.json`` → ``data.truncated_*``) and the lost
  words are scored as ``O`` in evaluation — never a crash;
* every epoch, :class:`EntityF1Callback` tags the validation sentences and adds
  conlleval entity precision/recall/F1 to the logs (``val_entity_f1``, shown
  by TensorBoard as ``epoch_entity_f1`` under *validation*).

Example::

    cfg = load_config("configs/sample_ner.yaml")
    result = train_tagger(cfg)
    result.metrics["validation"]["entity_f1"]
"""
from __future__ import annotations

import pathlib
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import RunConfig
from llmos_tf.data.conll import OUTSIDE_TAG, read_conll, tag_label_map
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import AUTOTUNE, TOKENIZE_CHUNK, BatchingPlan, count_batches
from llmos_tf.errors import ConfigError, RunError
from llmos_tf.models.bert import PACKAGE
from llmos_tf.text.alignment import IGNORE_LABEL, encode_words, word_predictions_from_subwords
from llmos_tf.training import artifacts
from llmos_tf.training.callbacks import BestCheckpoint, LearningRateLogger, metric_mode
from llmos_tf.training.conlleval import conlleval
from llmos_tf.training.distribute import resolve_strategy
from llmos_tf.training.optimizers import build_optimizer
from llmos_tf.training.precision import loss_scaled, precision_policy
from llmos_tf.training.run_folder import StartStep, TrainResult, flat_hparams, prepare_run_dir, training_facts

NER_TASK = "ner"
# what an NER run logs per epoch (training.monitor must be one of them)
NER_MONITORS = (
    "val_entity_f1", "val_entity_precision", "val_entity_recall", "val_token_accuracy", "val_loss",
    "token_accuracy", "loss",
)
SUMMARY_KEYS = ("sentences", "tokens", "entity_precision", "entity_recall", "entity_f1", "token_accuracy", "per_type")


# --------------------------------------------------------------------------- data


@dataclass
class TaggingData:
    """Validated CoNLL frames (columns ``tokens``, ``tags``, ``line``) and the tag map."""

    train: pd.DataFrame
    validation: pd.DataFrame
    labels: LabelMap
    fingerprint: str
    test: pd.DataFrame | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "test_examples": 0 if self.test is None else len(self.test),
            "train_tokens": int(self.train["tokens"].map(len).sum()),
            "num_labels": len(self.labels),
            "fingerprint": self.fingerprint,
        }


def _read(path: str, data_cfg) -> pd.DataFrame:
    if data_cfg.format not in (None, "conll"):
        raise ConfigError(f"data.format: task 'ner' reads CoNLL files; got format {data_cfg.format!r} (use conll or leave it unset)")
    return read_conll(path)


def tagger_label_map(*frames: pd.DataFrame) -> LabelMap:
    """Tags of all frames, ``O`` first (added if no sentence uses it: truncated words need it)."""
    frames = [f for f in frames if f is not None]
    merged = pd.concat([f[["tags"]] for f in frames], ignore_index=True)
    merged.attrs = dict(frames[0].attrs)
    names = tag_label_map(merged).names
    if OUTSIDE_TAG not in names:
        names = [OUTSIDE_TAG, *names]
    return LabelMap(names)


def prepare_tagging_data(data_cfg, seed: int) -> TaggingData:
    """Read, validate and split the CoNLL files an NER run names (nothing is written)."""
    from llmos_tf.data.fingerprint import data_fingerprint
    from llmos_tf.data.splits import stratified_split

    if not data_cfg.train:
        raise ConfigError("data.train: no training file given (set it in the config or with --set data.train=PATH)")
    train = _read(data_cfg.train, data_cfg)
    if data_cfg.validation:
        validation = _read(data_cfg.validation, data_cfg)
    else:
        train, validation = stratified_split(train, data_cfg.validation_fraction, seed)  # seeded random split
    if data_cfg.max_train_examples and data_cfg.max_train_examples < len(train):
        train, _ = stratified_split(train, 1.0 - data_cfg.max_train_examples / len(train), seed)
    test = _read(data_cfg.test, data_cfg) if data_cfg.test else None
    labels = tagger_label_map(train, validation)
    fingerprint = data_fingerprint(
        {"train": data_cfg.train, "validation": data_cfg.validation, "test": data_cfg.test},
        {
            "format": "conll",
            "validation_fraction": None if data_cfg.validation else data_cfg.validation_fraction,
            "seed": None if data_cfg.validation and not data_cfg.max_train_examples else seed,
            "max_train_examples": data_cfg.max_train_examples,
        },
    )
    return TaggingData(train=train, validation=validation, labels=labels, fingerprint=fingerprint, test=test)


def ragged_words(token_lists: Sequence[Sequence[str]]) -> tf.RaggedTensor:
    """Python token lists → string RaggedTensor ``[B, words]`` (no re-splitting of tokens)."""
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    flat = [w for tokens in token_lists for w in tokens]
    return tf.RaggedTensor.from_row_lengths(tf.constant(flat, dtype=tf.string, shape=[len(flat)]), lengths)


def ragged_tag_ids(tag_lists: Sequence[Sequence[str]], labels: LabelMap) -> tf.RaggedTensor:
    index = labels.to_dict()
    lengths = np.fromiter((len(t) for t in tag_lists), dtype=np.int64, count=len(tag_lists))
    flat = np.fromiter((index[t] for tags in tag_lists for t in tags), dtype=np.int32)
    return tf.RaggedTensor.from_row_lengths(tf.constant(flat, shape=[len(flat)]), lengths)


# --------------------------------------------------------------------------- tokenizer / model


def tagger_text_encoder(model_cfg, vocabulary: Sequence[str], text_cfg, max_length: int):
    """The :class:`BertTextEncoder` of a tagger run: the checkpoint's casing, or the config's for a fresh encoder."""
    from llmos_tf.text.bert_tokenizer import BertTextEncoder, detect_lowercase

    # a checkpoint's vocabulary (a BERT encoder, or a BiLSTM's pretrained embeddings) brings its casing rules
    if getattr(model_cfg, "encoder", None) or getattr(model_cfg, "pretrained_embeddings", None):
        lowercase = detect_lowercase(vocabulary)
        return BertTextEncoder(vocabulary, sequence_length=max_length, lowercase=lowercase, strip_accents=lowercase)
    return BertTextEncoder(vocabulary, sequence_length=max_length, lowercase=text_cfg.lowercase, strip_accents=text_cfg.strip_accents)


def build_bert_tagger(model_cfg, vocabulary: Sequence[str], num_tags: int, max_length: int) -> tf_keras.Model:
    """BERT encoder (checkpoint or fresh) + per-token head (softmax, or CRF with ``model.crf``), with the config's freezing."""
    from llmos_tf.models.taggers import build_bert_tagger as build

    return build(model_cfg, vocabulary, num_tags, max_length)


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


# --------------------------------------------------------------------------- tf.data


def _dense_row(*tensors):
    return tuple(t.flat_values if isinstance(t, tf.RaggedTensor) else t for t in tensors)


def encoded_examples(text_encoder, words: tf.RaggedTensor, tags: tf.RaggedTensor) -> tf.data.Dataset:
    """Unbatched ``(token_ids [T], labels [T])``: subwords with first-subword labels, truncated to whole words."""

    def encode(w, t):
        enc = encode_words(text_encoder, w, t, padded=False)
        return enc["token_ids"], enc["labels"]

    ds = tf.data.Dataset.from_tensor_slices((words, tags)).batch(TOKENIZE_CHUNK)
    ds = ds.map(encode, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.unbatch().map(_dense_row)


def encoding_stats(text_encoder, words: tf.RaggedTensor) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence: subword length (with [CLS]/[SEP], after truncation) and words dropped by truncation."""

    def stats(w):
        enc = encode_words(text_encoder, w, padded=False)
        return tf.cast(enc["token_ids"].row_lengths(), tf.int32), enc["dropped_words"]

    ds = tf.data.Dataset.from_tensor_slices(words).batch(TOKENIZE_CHUNK).map(stats)
    parts = [(a.numpy(), b.numpy()) for a, b in ds]
    if not parts:
        return np.zeros([0], np.int32), np.zeros([0], np.int32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def tagger_features(token_ids, pad_id: int = 0) -> dict[str, tf.Tensor]:
    token_ids = tf.cast(token_ids, tf.int32)
    return {
        "token_ids": token_ids,
        "padding_mask": tf.cast(tf.not_equal(token_ids, pad_id), tf.int32),
        "segment_ids": tf.zeros_like(token_ids),
    }


def make_tagging_dataset(text_encoder, words: tf.RaggedTensor, tags: tf.RaggedTensor, plan: BatchingPlan, *,
                         training: bool, seed: int = 0, shuffle_buffer: int = 10000, repeat: bool = False,
                         cache: bool = True) -> tf.data.Dataset:
    """encode → cache → shuffle(seed) → bucket / pad (labels padded with -1) → features → (repeat) → prefetch."""
    pad_id = text_encoder.pad_id
    ds = encoded_examples(text_encoder, words, tags)
    if cache:
        ds = ds.cache()
    n = int(words.nrows())
    if training:
        ds = ds.shuffle(min(shuffle_buffer, max(n, 1)), seed=seed, reshuffle_each_iteration=True)
    padding = (tf.constant(pad_id, tf.int32), tf.constant(IGNORE_LABEL, tf.int32))
    if plan.tpu_mode:
        ds = ds.padded_batch(plan.batch_size, padded_shapes=([plan.max_length], [plan.max_length]), padding_values=padding, drop_remainder=True)
    elif plan.bucketing and training:
        edges = plan.boundaries()
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda ids, labels: tf.shape(ids)[0],
            bucket_boundaries=edges,
            bucket_batch_sizes=[plan.batch_size] * (len(edges) + 1),
            padding_values=padding,
            drop_remainder=False,
        )
    else:
        ds = ds.padded_batch(plan.batch_size, padded_shapes=([None], [None]), padding_values=padding)
    ds = ds.map(lambda ids, labels: (tagger_features(ids, pad_id), labels), num_parallel_calls=AUTOTUNE)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(AUTOTUNE)


class WordTagPredictor:
    """Sentences (word lists or raw strings) → one tag id per whitespace word, in input order.

    The same ops as the exported signature: :func:`encode_words` (first-subword
    alignment, whole-word truncation), the model, Viterbi over the first subwords
    when the model has a CRF layer, then :func:`word_predictions_from_subwords`
    (dropped words get the outside tag).
    """

    def __init__(self, text_encoder, model: tf_keras.Model, outside_id: int = 0, batch_size: int = 64):
        from llmos_tf.models.crf import find_crf

        self.text_encoder = text_encoder
        self.model = model
        self.crf = find_crf(model)
        self.outside_id = int(outside_id)
        self.batch_size = int(batch_size)
        spec = tf.TensorSpec([None, None], tf.int32)
        self._step = tf.function(self._predict_batch, input_signature=[
            {"token_ids": spec, "padding_mask": spec, "segment_ids": spec},
            tf.TensorSpec([None, None], tf.bool), tf.TensorSpec([None], tf.int32)])

    def _predict_batch(self, features, label_mask, word_count):
        probabilities = self.model(features, training=False)
        if self.crf is not None:
            probabilities = self.crf.decode(probabilities, label_mask)  # tag ids [B, T] on the first subwords
        ids = word_predictions_from_subwords(probabilities, label_mask, word_count, outside_id=self.outside_id)
        return ids.to_tensor(default_value=-1), tf.cast(ids.row_lengths(), tf.int32)

    def dataset(self, words: tf.RaggedTensor) -> tf.data.Dataset:
        enc_ = self.text_encoder

        def encode(w):
            enc = encode_words(enc_, w, padded=False)
            features = {
                "token_ids": enc["token_ids"].to_tensor(default_value=enc_.pad_id),
                "padding_mask": tf.cast(enc["padding_mask"].to_tensor(default_value=False), tf.int32),
                "segment_ids": enc["segment_ids"].to_tensor(default_value=0),
            }
            return features, enc["label_mask"].to_tensor(default_value=False), enc["word_count"]

        ds = tf.data.Dataset.from_tensor_slices(words).batch(self.batch_size)
        return ds.map(encode, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)

    def predict_ids(self, words: tf.RaggedTensor | Sequence[Sequence[str]]) -> list[list[int]]:
        if not isinstance(words, tf.RaggedTensor):
            words = ragged_words(words)
        if int(words.nrows()) == 0:
            return []
        out: list[list[int]] = []
        for features, label_mask, word_count in self.dataset(words):
            ids, counts = self._step(features, label_mask, word_count)
            out += [row[:n].tolist() for row, n in zip(ids.numpy(), counts.numpy())]
        return out

    def predict_tags(self, words, tag_names: Sequence[str]) -> list[list[str]]:
        names = list(tag_names)
        return [[names[i] for i in row] for row in self.predict_ids(words)]


def evaluate_frame(predictor: WordTagPredictor, frame: pd.DataFrame, tag_names: Sequence[str]) -> dict[str, Any]:
    """conlleval metrics of ``predictor`` on a CoNLL frame (truncated words count as predicted ``O``)."""
    gold = frame["tags"].tolist()
    predicted = predictor.predict_tags(frame["tokens"].tolist(), tag_names)
    return conlleval(gold, predicted)


# --------------------------------------------------------------------------- callbacks


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


# --------------------------------------------------------------------------- training


def write_tagger_hparams(run_dir: pathlib.Path, cfg: RunConfig) -> None:
    """HParams dashboard entry, with the NER metrics."""
    from tensorboard.plugins.hparams import api as hp

    values = flat_hparams(cfg)
    values["task"] = cfg.task
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        hp.hparams_config(
            hparams=[hp.HParam(name) for name in values],
            metrics=[
                hp.Metric("epoch_entity_f1", group="validation", display_name="val entity-F1"),
                hp.Metric("epoch_token_accuracy", group="validation", display_name="val token accuracy"),
                hp.Metric("epoch_loss", group="validation", display_name="val loss"),
            ],
        )
        hp.hparams(values, trial_id=cfg.name)


def _check_config(cfg: RunConfig) -> None:
    from llmos_tf.models import registry

    if registry.get(cfg.architecture).tagger is None:
        raise ConfigError(f"model.architecture: architecture {cfg.architecture!r} has no token classifier for task 'ner'; "
                          f"valid: {', '.join(registry.taggers())}")
    if cfg.training.monitor not in NER_MONITORS:
        raise ConfigError(f"training.monitor: {cfg.training.monitor!r} is not logged by an NER run; valid: {', '.join(NER_MONITORS)}")


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in SUMMARY_KEYS}


def _tagger_vocabulary(model_cfg, data: TaggingData, cfg: RunConfig, run_dir: pathlib.Path) -> list[str]:
    from llmos_tf.models import registry
    from llmos_tf.text.wordpiece import load_vocabulary, save_vocabulary

    path = run_dir / artifacts.VOCAB_FILE
    if path.is_file():
        return load_vocabulary(path)
    texts = [" ".join(tokens) for tokens in data.train["tokens"]]
    arch = registry.get(cfg.architecture)
    vocab = (arch.tagger_vocabulary or arch.vocabulary)(model_cfg, texts, cfg.text)
    save_vocabulary(vocab, path)
    return vocab


def train_tagger(cfg: RunConfig, *, overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, command: str | None = None) -> TrainResult:
    """Train the tagger the config describes; see the module docstring."""
    from llmos_tf.models import registry

    started = time.time()
    _check_config(cfg)
    tf_keras.utils.set_random_seed(cfg.seed)
    data = prepare_tagging_data(cfg.data, cfg.seed)
    model_cfg = registry.model_config(cfg.model)
    run_dir, resuming = prepare_run_dir(cfg, overwrite)
    vocab = _tagger_vocabulary(model_cfg, data, cfg, run_dir)
    data.labels.save(run_dir / artifacts.LABELS_FILE)
    tag_names = data.labels.names

    d = cfg.data
    arch = registry.get(cfg.architecture)
    max_length = arch.max_length(model_cfg, d.max_length)
    text_encoder = tagger_text_encoder(model_cfg, vocab, cfg.text, max_length)
    dist = resolve_strategy(strategy)
    replicas = dist.num_replicas_in_sync
    plan = BatchingPlan(batch_size=cfg.training.batch_size * replicas, max_length=max_length, bucketing=d.bucketing,
                        bucket_boundaries=tuple(d.bucket_boundaries), tpu_mode=d.tpu_mode)

    train_words = ragged_words(data.train["tokens"].tolist())
    val_words = ragged_words(data.validation["tokens"].tolist())
    lengths, dropped = encoding_stats(text_encoder, train_words)
    _, val_dropped = encoding_stats(text_encoder, val_words)
    truncation = {
        "truncated_train_sentences": int(np.sum(dropped > 0)),
        "dropped_train_words": int(np.sum(dropped)),
        "truncated_validation_sentences": int(np.sum(val_dropped > 0)),
        "dropped_validation_words": int(np.sum(val_dropped)),
    }
    if truncation["truncated_train_sentences"] or truncation["truncated_validation_sentences"]:
        warnings.warn(
            f"data.max_length={max_length}: {truncation['truncated_train_sentences']} training and "
            f"{truncation['truncated_validation_sentences']} validation sentences have more subwords; their "
            f"last {truncation['dropped_train_words']} (training) and {truncation['dropped_validation_words']} "
            "(validation) words are dropped: not trained on, predicted as 'O'"
        )
    steps_per_epoch = count_batches(lengths, plan, training=True)
    if cfg.training.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.training.steps_per_epoch)
    if steps_per_epoch < 1:
        raise RunError(f"data.train: {len(data.train)} sentences make no full batch of {plan.batch_size} in TPU mode; lower training.batch_size")
    train_ds = make_tagging_dataset(text_encoder, train_words, ragged_tag_ids(data.train["tags"].tolist(), data.labels), plan,
                                    training=True, seed=cfg.seed, shuffle_buffer=d.shuffle_buffer, repeat=True)
    eval_plan = BatchingPlan(batch_size=plan.batch_size, max_length=max_length, bucketing=False, tpu_mode=False)
    val_ds = make_tagging_dataset(text_encoder, val_words, ragged_tag_ids(data.validation["tags"].tolist(), data.labels), eval_plan, training=False)

    total_steps = steps_per_epoch * cfg.training.epochs
    context = registry.BuildContext(num_labels=len(tag_names), vocabulary=vocab, task=NER_TASK, max_length=max_length)
    with dist.scope(), precision_policy(cfg.training.mixed_precision):  # layers take the policy when built
        model = arch.tagger(model_cfg, context)
        model.compile(
            optimizer=loss_scaled(build_optimizer(cfg.training, total_steps), cfg.training.mixed_precision),
            loss=tagger_loss(model),
            metrics=[MaskedTokenAccuracy()],
        )

    if not resuming:
        write_tagger_hparams(run_dir, cfg)
    best = BestCheckpoint(run_dir / artifacts.CHECKPOINT_DIR, cfg.training.monitor)
    start_step = StartStep()
    entity_f1 = EntityF1Callback(text_encoder, data.validation, tag_names, run_dir, batch_size=plan.batch_size)
    callbacks: list[tf_keras.callbacks.Callback] = [
        tf_keras.callbacks.BackupAndRestore(str(run_dir / artifacts.BACKUP_DIR), save_freq=max(1, cfg.training.backup_every_steps), delete_checkpoint=False),
        start_step,
        entity_f1,  # before TensorBoard and the monitors: they read val_entity_f1 from logs
        LearningRateLogger(run_dir, cfg.training.log_every_steps),
        tf_keras.callbacks.TensorBoard(str(run_dir), update_freq=max(1, cfg.training.log_every_steps), write_graph=True, profile_batch=0),
        best,
    ]
    if cfg.training.early_stopping_patience > 0:
        callbacks.append(tf_keras.callbacks.EarlyStopping(monitor=cfg.training.monitor, mode=metric_mode(cfg.training.monitor), patience=cfg.training.early_stopping_patience))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.training.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose)
    final_step = int(model.optimizer.iterations.numpy())
    best.restore()

    outside = tag_names.index(OUTSIDE_TAG)
    predictor = WordTagPredictor(text_encoder, model, outside_id=outside, batch_size=plan.batch_size)
    metrics: dict[str, Any] = {"validation": evaluate_frame(predictor, data.validation, tag_names)}
    if data.test is not None:
        metrics["test"] = evaluate_frame(predictor, data.test, tag_names)

    info = {
        "name": cfg.name,
        "task": NER_TASK,
        "architecture": cfg.architecture,
        "labels": tag_names,
        "data": {**data.summary(), "files": {"train": d.train, "validation": d.validation, "test": d.test}, **truncation},
        "metrics": {k: _summary(v) for k, v in metrics.items()},
        "max_length": max_length,
        **training_facts(
            model=model, history=history, best=best, monitor=cfg.training.monitor, steps_per_epoch=steps_per_epoch,
            replicas=replicas, resumed=resuming, start_step=start_step.step, final_step=final_step, started=started, command=command,
        ),
    }
    artifacts.finish_run(run_dir, model, metrics, info)
    return TrainResult(run_dir=run_dir, metrics=metrics, info=info, history={k: [float(x) for x in v] for k, v in history.history.items()})
