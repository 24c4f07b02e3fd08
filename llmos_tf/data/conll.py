"""Read CoNLL-style token/tag files (named entities) into a pandas frame.

CoNLL files put one token per line with its tag in the last field (the
CoNLL-2003 original has four fields, ``EU NNP B-NP B-ORG``; trimmed copies
have two, ``EU B-ORG``), a blank line between sentences and ``-DOCSTART-``
lines between documents. Any tag string is accepted (IOB1, IOB2, BIOES, ...):
the tagger learns whatever scheme the file uses. Each sentence keeps the
1-based line of its first token so errors can point back at the file.

Example::

    >>> df = read_conll("data/sample/ner_train.conll")   # doctest: +SKIP
    >>> df.loc[0, "tokens"], df.loc[0, "tags"]           # doctest: +SKIP
    (['Anna', 'Berg', 'joined', ...], ['B-PER', 'I-PER', 'O', ...])
"""
from __future__ import annotations

import os

import pandas as pd

from llmos_tf.data.labels import LabelMap
from llmos_tf.data.readers import read_utf8_text
from llmos_tf.errors import DataError

DOCSTART = "-DOCSTART-"
OUTSIDE_TAG = "O"


def _field(fields: list[str], index: int, path, number: int, what: str) -> str:
    try:
        return fields[index]
    except IndexError:
        raise DataError(
            f"{path}, line {number}: no {what} in field {index} (the line has {len(fields)} fields)"
        ) from None


def read_conll(path: str | os.PathLike, *, token_column: int = 0, tag_column: int = -1) -> pd.DataFrame:
    """Sentences as columns ``tokens`` (list[str]), ``tags`` (list[str]) and ``line`` (int)."""
    text = read_utf8_text(path)
    sentences: list[tuple[list[str], list[str], int]] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0

    def close() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append((tokens, tags, first_line))
        tokens, tags = [], []

    for number, raw in enumerate(text.split("\n"), start=1):
        fields = raw.split()
        if not fields:
            close()
            continue
        if fields[0].startswith(DOCSTART):
            close()
            continue
        if len(fields) < 2:
            raise DataError(f"{path}, line {number}: expected 'token tag', found one field only: {raw.strip()!r}")
        if not tokens:
            first_line = number
        tokens.append(_field(fields, token_column, path, number, "token"))
        tags.append(_field(fields, tag_column, path, number, "tag"))
    close()
    if not sentences:
        raise DataError(f"{path}: no sentences (expected 'token tag' lines with blank lines between sentences)")
    frame = pd.DataFrame(
        {
            "tokens": pd.Series([s[0] for s in sentences], dtype=object),
            "tags": pd.Series([s[1] for s in sentences], dtype=object),
            "line": pd.Series([s[2] for s in sentences], dtype="int64"),
        }
    )
    frame.attrs.update({"path": str(path), "format": "conll"})
    return frame


def _tag_order(tag: str) -> tuple[int, str, str]:
    """``O`` first, then by entity type with ``B-`` before ``I-`` (``B-LOC, I-LOC, B-MISC, ...``)."""
    if tag == OUTSIDE_TAG:
        return (0, "", "")
    prefix, sep, entity = tag.partition("-")
    if sep and len(prefix) == 1:
        return (1, entity, prefix)
    return (1, tag, "")


def tag_label_map(df: pd.DataFrame) -> LabelMap:
    """A :class:`LabelMap` over every tag in ``df["tags"]``, with ``"O"`` (if present) as id 0."""
    tags = {tag for row in df["tags"] for tag in row}
    if not tags:
        raise DataError(f"{df.attrs.get('path', 'data')}: no tags")
    return LabelMap(sorted(tags, key=_tag_order))
