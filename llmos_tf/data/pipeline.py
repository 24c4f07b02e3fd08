"""tf.data pipelines: raw strings in, padded token-id batches out.

Tokenization runs inside the graph (tensorflow-text ops through keras-hub), in
parallel over batches of 512 strings, before the examples are cached. Training
batches are then either bucketed by length (CPU/GPU: little padding, fast
LSTMs) or padded to ``max_length`` with ``drop_remainder=True`` (TPU: static
shapes). Evaluation and prediction keep the input order.

Example::

    ds = make_dataset(texts, labels, tokenize, batch_size=32, max_length=64,
                      training=True, seed=0)
    for token_ids, label_ids in ds.take(1): ...
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from llmos_tf._tf import tf

AUTOTUNE = tf.data.AUTOTUNE
TOKENIZE_CHUNK = 512

# raw strings [B] -> ragged int32 token ids [B, None]
Tokenize = Callable[[tf.Tensor], tf.RaggedTensor]


@dataclass(frozen=True)
class BatchingPlan:
    """How examples become batches; one object so train/eval/benchmark agree."""

    batch_size: int
    max_length: int
    bucketing: bool = True
    bucket_boundaries: tuple[int, ...] = (8, 16, 24, 32, 48, 64)
    tpu_mode: bool = False

    def boundaries(self) -> list[int]:
        """Bucket edges strictly inside (1, max_length]; the last bucket holds up to max_length."""
        edges = sorted({b for b in self.bucket_boundaries if 1 < b <= self.max_length})
        return edges or [self.max_length]


def truncating(tokenize: Tokenize, max_length: int) -> Tokenize:
    """Wrap a tokenizer so every sequence has at most ``max_length`` ids."""

    def _tokenize(texts: tf.Tensor) -> tf.RaggedTensor:
        ids = tokenize(texts)
        return ids[:, :max_length]

    return _tokenize


def tokenized_examples(texts: Sequence[str], labels: np.ndarray | None, tokenize: Tokenize) -> tf.data.Dataset:
    """Unbatched ``(token_ids[None], label)`` (or ``token_ids`` alone) examples, tokenized in batches."""
    texts_t = tf.constant(list(texts), dtype=tf.string)
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(texts_t).batch(TOKENIZE_CHUNK)
        ds = ds.map(tokenize, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        labels_t = tf.constant(np.asarray(labels, dtype=np.int32))
        ds = tf.data.Dataset.from_tensor_slices((texts_t, labels_t)).batch(TOKENIZE_CHUNK)
        ds = ds.map(lambda x, y: (tokenize(x), y), num_parallel_calls=AUTOTUNE, deterministic=True)
    # unbatched ragged rows arrive as RaggedTensorSpec(ragged_rank=0); an identity map makes them plain tensors
    return ds.unbatch().map(_as_tensor)


def _as_tensor(ids, *rest):
    ids = ids.flat_values if isinstance(ids, tf.RaggedTensor) else ids
    return (ids, *rest) if rest else ids


def _length(token_ids: tf.Tensor, *_rest) -> tf.Tensor:
    return tf.shape(token_ids)[0]


def batch_examples(ds: tf.data.Dataset, plan: BatchingPlan, *, training: bool, labelled: bool = True) -> tf.data.Dataset:
    """Batch tokenized examples by ``plan``: bucketed, per-batch padded, or TPU fixed-shape."""
    if plan.tpu_mode:
        shapes = ([plan.max_length], []) if labelled else [plan.max_length]
        return ds.padded_batch(plan.batch_size, padded_shapes=shapes, drop_remainder=True)
    if plan.bucketing and training:
        edges = plan.boundaries()
        return ds.bucket_by_sequence_length(
            element_length_func=_length,
            bucket_boundaries=edges,
            bucket_batch_sizes=[plan.batch_size] * (len(edges) + 1),
            drop_remainder=False,
        )
    shapes = ([None], []) if labelled else [None]
    return ds.padded_batch(plan.batch_size, padded_shapes=shapes)


def make_dataset(
    texts: Sequence[str],
    labels: np.ndarray | None,
    tokenize: Tokenize,
    plan: BatchingPlan,
    *,
    training: bool,
    seed: int = 0,
    shuffle_buffer: int = 10000,
    repeat: bool = False,
    cache: bool = True,
    features: Callable[[tf.Tensor], object] | None = None,
) -> tf.data.Dataset:
    """The whole pipeline: tokenize → cache → shuffle(seed) → bucket/pad → (features) → (repeat) → prefetch.

    ``features`` maps a padded id batch to the model's inputs (e.g. BERT's
    token_ids/padding_mask/segment_ids dict); identity when None.
    """
    ds = tokenized_examples(texts, labels, truncating(tokenize, plan.max_length))
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(shuffle_buffer, max(len(texts), 1)), seed=seed, reshuffle_each_iteration=True)
    ds = batch_examples(ds, plan, training=training, labelled=labels is not None)
    if features is not None:
        if labels is None:
            ds = ds.map(features, num_parallel_calls=AUTOTUNE)
        else:
            ds = ds.map(lambda x, y: (features(x), y), num_parallel_calls=AUTOTUNE)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(AUTOTUNE)


def count_batches(lengths: Sequence[int], plan: BatchingPlan, *, training: bool) -> int:
    """Exact number of batches one pass yields (bucketing makes it data-dependent)."""
    n = len(lengths)
    if plan.tpu_mode:
        return n // plan.batch_size
    if not (plan.bucketing and training):
        return math.ceil(n / plan.batch_size)
    edges = plan.boundaries()
    buckets = np.searchsorted(np.asarray(edges), np.asarray(lengths), side="right")
    counts = np.bincount(buckets, minlength=len(edges) + 1)
    return int(sum(math.ceil(c / plan.batch_size) for c in counts))


def token_lengths(texts: Sequence[str], tokenize: Tokenize, max_length: int) -> np.ndarray:
    """Token count of every text after truncation (for batch counts and padding statistics)."""
    ds = tokenized_examples(texts, None, truncating(tokenize, max_length))
    ds = ds.map(lambda ids: tf.shape(ids)[0]).batch(4096)
    parts = [b.numpy() for b in ds]
    return np.concatenate(parts) if parts else np.zeros([0], np.int32)
