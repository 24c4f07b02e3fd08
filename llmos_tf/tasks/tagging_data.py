"""Data of ``task: ner``: CoNLL frames, first-subword tf.data pipelines and the word-tag predictor.

Examples are sentences of whitespace tokens; inside tf.data each token is
WordPiece-tokenized and its tag goes on its **first** subword
(:func:`llmos_tf.text.alignment.encode_words`); other subwords, ``[CLS]``,
``[SEP]`` and padding carry label ``-1`` and are ignored by the masked loss and
the token-accuracy metric. Sentences longer than ``data.max_length`` subwords
lose their last whole words; they are counted (``run.json`` ->
``data.truncated_*``) and the lost words are scored as ``O`` in evaluation.

:class:`WordTagPredictor` runs the same ops as the exported signature (and
Viterbi when the model has a CRF layer); the NER heads of a multitask run use
all of this too, which is why it is a module of its own.

Example::

    data = prepare_tagging_data(cfg.data, cfg.seed)
    encoder = tagger_text_encoder(model_cfg, vocab, cfg.text, max_length=128)
    ds = make_tagging_dataset(encoder, ragged_words(data.train["tokens"].tolist()),
                              ragged_tag_ids(data.train["tags"].tolist(), data.labels), plan, training=True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from llmos_tf._tf import tf, tf_keras
from llmos_tf.data.conll import OUTSIDE_TAG, read_conll, tag_label_map
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import AUTOTUNE, TOKENIZE_CHUNK, BatchingPlan
from llmos_tf.errors import ConfigError
from llmos_tf.text.alignment import IGNORE_LABEL, encode_words, word_predictions_from_subwords
from llmos_tf.metrics.conlleval import conlleval


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


def tagger_text_encoder(model_cfg, vocabulary: Sequence[str], text_cfg, max_length: int):
    """The :class:`BertTextEncoder` of a tagger run: the checkpoint's casing, or the config's for a fresh encoder."""
    from llmos_tf.text.bert_tokenizer import BertTextEncoder, detect_lowercase

    # a checkpoint's vocabulary (a BERT encoder, or a BiLSTM's pretrained embeddings) brings its casing rules
    if getattr(model_cfg, "encoder", None) or getattr(model_cfg, "pretrained_embeddings", None):
        lowercase = detect_lowercase(vocabulary)
        return BertTextEncoder(vocabulary, sequence_length=max_length, lowercase=lowercase, strip_accents=lowercase)
    return BertTextEncoder(vocabulary, sequence_length=max_length, lowercase=text_cfg.lowercase, strip_accents=text_cfg.strip_accents)



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


def truncation_facts(text_encoder, train: pd.DataFrame, validation: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
    """Subword lengths of the training sentences and what truncation to ``max_length`` drops (for ``run.json``)."""
    lengths, dropped = encoding_stats(text_encoder, ragged_words(train["tokens"].tolist()))
    _, val_dropped = encoding_stats(text_encoder, ragged_words(validation["tokens"].tolist()))
    return lengths, {
        "truncated_train_sentences": int(np.sum(dropped > 0)),
        "dropped_train_words": int(np.sum(dropped)),
        "truncated_validation_sentences": int(np.sum(val_dropped > 0)),
        "dropped_validation_words": int(np.sum(val_dropped)),
    }
