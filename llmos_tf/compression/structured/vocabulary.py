"""Vocabulary trimming: keep the WordPiece tokens a corpus uses, drop the rest of the embedding table.

MiniLM's 30,522 × 384 token table is half of its 22.7M weights, and a
sentiment corpus uses a fraction of it (SST-2's training sentences about 40%).
Trimming keeps the tokens that occur when the training texts (or a given
corpus) are tokenized, plus the special tokens, in their original order (so
``[PAD]`` stays id 0); the tokenizer is rebuilt from the shorter list and the
embedding rows are gathered (:func:`~.surgery.rebuild`).

Why outputs do not change on texts whose tokens all survive: WordPiece is
greedy longest-match-first within a word. If a word's pieces ``t1 t2 …`` are all
kept, at each position ``t_k`` is still in the vocabulary and no longer match
can exist (it was not in the full vocabulary either), so the word splits the
same way and maps to the same rows. A word that needed a dropped piece becomes
``[UNK]``, exactly as WordPiece treats any unknown word. :func:`coverage`
measures how often that happens on the validation text.

Example::

    keep = corpus_token_ids(run, train_texts)                   # sorted ids, specials included
    small_vocab = [run.vocabulary[i] for i in keep]
    coverage(run, keep, validation_texts)["token_coverage"]     # e.g. 0.985
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.errors import ConfigError, DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHUNK = 4096


def _word_pieces(run):
    """texts → ragged WordPiece ids without [CLS]/[SEP] and without truncation (whole words only)."""
    tokenizer = run.tokenizer()
    encoder = getattr(tokenizer, "encoder", None)  # BertTokenIds wraps a BertTextEncoder
    if encoder is None or not hasattr(encoder, "tokenize"):
        raise ConfigError("--trim_vocabulary needs a BERT run (WordPiece tokenizer with [CLS]/[SEP]); "
                          f"this run's architecture is {run.config.architecture!r}")
    return encoder.tokenize


def token_ids(run, texts: Sequence[str]) -> np.ndarray:
    """All WordPiece ids of ``texts`` (flat, with repeats), tokenized by the run's own tokenizer."""
    tokenize = _word_pieces(run)
    parts = [tokenize(tf.constant([str(t) for t in texts[i:i + _CHUNK]])).flat_values.numpy()
             for i in range(0, len(texts), _CHUNK)]
    return np.concatenate(parts) if parts else np.zeros([0], np.int32)


def corpus_token_ids(run, texts: Sequence[str]) -> np.ndarray:
    """Sorted ids to keep: every token of ``texts`` plus the special tokens the vocabulary has."""
    if not len(texts):
        raise DataError("--trim_vocabulary: the corpus has no texts")
    index = {token: i for i, token in enumerate(run.vocabulary)}
    specials = [index[t] for t in SPECIAL_TOKENS if t in index]
    if index.get("[PAD]") != 0:
        raise ConfigError("--trim_vocabulary: the vocabulary's id 0 must be [PAD]")
    return np.union1d(np.unique(token_ids(run, texts)), np.asarray(specials, np.int64)).astype(np.int64)


def coverage(run, keep: np.ndarray, texts: Sequence[str]) -> dict:
    """Share of the tokens of ``texts`` (e.g. the validation text) that stay in the trimmed vocabulary, and of
    texts with every token kept (those get exactly the untrimmed model's outputs)."""
    kept = np.zeros(len(run.vocabulary), bool)
    kept[keep] = True
    tokenize = _word_pieces(run)
    tokens = covered = whole = 0
    for i in range(0, len(texts), _CHUNK):
        ids = tokenize(tf.constant([str(t) for t in texts[i:i + _CHUNK]]))
        flat = kept[ids.flat_values.numpy()]
        tokens += flat.size
        covered += int(flat.sum())
        rows = np.split(flat, ids.row_splits.numpy()[1:-1])
        whole += sum(bool(r.all()) for r in rows)
    return {"token_coverage": covered / tokens if tokens else 1.0, "texts_fully_covered": whole / len(texts) if len(texts) else 1.0,
            "tokens": int(tokens)}


def read_corpus(path: str | pathlib.Path, text_column: str | None = None) -> list[str]:
    """A corpus for ``--trim_vocabulary CORPUS``: a ``.txt`` file (one text per line) or any table ``llmos``
    reads (csv, tsv, jsonl, parquet) with a text column."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"--trim_vocabulary {path}: no such file")
    if path.suffix.lower() == ".txt":
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        from llmos_tf.data.readers import read_texts

        texts = read_texts(path, text_column)["text"].astype(str).tolist()
    if not texts:
        raise DataError(f"--trim_vocabulary {path}: no texts in it")
    return texts
