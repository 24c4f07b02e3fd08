"""The pretraining task's data: a plain-text corpus, BERT masking inside tf.data.

The corpus is one or more UTF-8 text files, one passage per line (blank lines
are skipped). Masking happens inside tf.data with keras-hub's
``MaskedLMMaskGenerator`` (BERT's 80/10/10 rule; ``[CLS]``, ``[SEP]`` and
``[PAD]`` are never selected), so every epoch sees fresh masks.

Example::

    texts, files = read_corpus(["data/sample/corpus.txt"])
    generator = make_mask_generator(vocabulary, mask_rate=0.15, max_length=64)
    ds = mlm_dataset(texts, BertTextEncoder(vocabulary, sequence_length=64), generator, batch_size=32,
                     max_length=64, seed=42, repeat=True)
    features, mask_ids, mask_weights = next(iter(ds))
"""
from __future__ import annotations

import hashlib
import math
import os
import pathlib
from dataclasses import dataclass
from typing import Any, Sequence

from llmos_tf._tf import tf
from llmos_tf.errors import ConfigError, DataError


@dataclass
class Corpus:
    """What :meth:`~llmos_tf.tasks.pretraining.PretrainingTask.prepare_data` reads: the passages and one
    ``{path, lines, sha256}`` per file (recorded in ``run.json`` and ``pretrain.json``)."""

    texts: list[str]
    files: list[dict[str, Any]]

    @property
    def fingerprint(self) -> str:
        return corpus_fingerprint(self.files)


def read_corpus(paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[dict[str, Any]]]:
    """All non-blank lines of the corpus files, and one ``{path, lines, sha256}`` per file."""
    if not paths:
        raise DataError("pretraining needs at least one corpus file (--corpus FILE)")
    texts: list[str] = []
    files = []
    for path in map(pathlib.Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: corpus file not found")
        try:
            raw = path.read_bytes()
            lines = [line.strip() for line in raw.decode("utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read corpus file as UTF-8 text ({exc})") from None
        lines = [line for line in lines if line]
        if not lines:
            raise DataError(f"{path}: corpus file is empty (expected one passage per line)")
        texts += lines
        files.append({"path": str(path), "lines": len(lines), "sha256": hashlib.sha256(raw).hexdigest()})
    return texts, files


def corpus_fingerprint(files: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f["sha256"].encode())
    return digest.hexdigest()[:16]


def mask_selection_length(max_length: int, mask_rate: float) -> int:
    return max(1, math.ceil(max_length * mask_rate))


def make_mask_generator(vocabulary: Sequence[str], *, mask_rate: float, max_length: int):
    """keras-hub ``MaskedLMMaskGenerator`` for a BERT vocabulary ([CLS]/[SEP]/[PAD] unselectable)."""
    import keras_hub

    index = {t: i for i, t in enumerate(vocabulary)}
    missing = [t for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]") if t not in index]
    if missing:
        raise ConfigError(f"vocabulary lacks special token(s) {missing} needed for MLM pretraining")
    return keras_hub.layers.MaskedLMMaskGenerator(
        vocabulary_size=len(vocabulary),
        mask_selection_rate=mask_rate,
        mask_token_id=index["[MASK]"],
        mask_selection_length=mask_selection_length(max_length, mask_rate),
        unselectable_token_ids=[index["[CLS]"], index["[SEP]"], index["[PAD]"]],
    )


def mlm_dataset(texts: Sequence[str], text_encoder, generator, *, batch_size: int, max_length: int,
                seed: int, repeat: bool = False) -> tf.data.Dataset:
    """``(features, mask_ids, mask_weights)`` batches; features hold the masked token ids."""
    pad_id = text_encoder.pad_id

    @tf.autograph.experimental.do_not_convert
    def mask(batch_texts):
        ids = text_encoder(batch_texts, padded=False)["token_ids"]  # ragged [CLS] … [SEP]
        out = generator(ids)
        shape = [None, max_length]
        token_ids = tf.cast(out["token_ids"], tf.int32).to_tensor(default_value=pad_id, shape=shape)
        # from the unmasked ids: a random replacement token may be [PAD]
        padding_mask = tf.ones_like(ids, dtype=tf.int32).to_tensor(default_value=0, shape=shape)
        features = {
            "token_ids": token_ids,
            "padding_mask": padding_mask,
            "segment_ids": tf.zeros_like(token_ids),
            "mask_positions": tf.cast(out["mask_positions"], tf.int32),
        }
        return features, tf.cast(out["mask_ids"], tf.int32), tf.cast(out["mask_weights"], tf.float32)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
    ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=repeat or len(texts) >= batch_size)
    return ds.map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
