"""Carve a validation set out of a training file, reproducibly.

Some corpora (Banking77) ship no dev split. The carved split is stratified by
label so every class is measured, seeded so a config reproduces it exactly,
and keeps the ``line`` column and ``attrs`` so an error in either half still
points at the user's source file. Classes too rare to stratify stay in
training (a model cannot learn a label it never sees). Frames without a
``label`` column (token-tagging sentences) get a plain seeded random split.

Example::

    >>> train, validation = stratified_split(df, 0.1, seed=0)   # doctest: +SKIP
"""
from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from llmos_tf.errors import DataError


def _check_fraction(fraction: float, path: str) -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise DataError(f"{path}: validation fraction must be a number between 0 and 1, got {fraction!r}") from None
    if not 0.0 < value < 1.0:
        raise DataError(f"{path}: validation fraction must be strictly between 0 and 1, got {fraction!r}")
    return value


def _finish(part: pd.DataFrame, attrs: dict) -> pd.DataFrame:
    """Rows back in file order, a fresh index and the source attrs."""
    part = part.sort_index(kind="stable").reset_index(drop=True)
    part.attrs = dict(attrs)
    return part


def _random_split(df: pd.DataFrame, fraction: float, seed: int, path: str):
    if len(df) < 2:
        raise DataError(f"{path}: {len(df)} example(s) cannot be split into training and validation")
    return train_test_split(df, test_size=fraction, random_state=seed, shuffle=True)


def _stratified(df: pd.DataFrame, fraction: float, seed: int, path: str):
    counts = df["label"].value_counts()
    rare = set(counts[counts < 2].index)
    common = df[~df["label"].isin(rare)]
    kept_in_train = df[df["label"].isin(rare)]
    if len(common) < 2:
        raise DataError(
            f"{path}: cannot carve a validation set: no label has two or more examples; "
            "give a validation file instead"
        )
    try:
        train, validation = train_test_split(
            common, test_size=fraction, random_state=seed, shuffle=True, stratify=common["label"]
        )
    except ValueError as exc:
        n_classes = common["label"].nunique()
        raise DataError(
            f"{path}: cannot carve a stratified validation set of fraction {fraction:g} from "
            f"{len(common)} examples with {n_classes} classes ({exc}); raise the validation "
            "fraction or give a validation file"
        ) from None
    return pd.concat([train, kept_in_train]), validation


def stratified_split(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, validation)``: stratified by ``df["label"]`` when present, deterministic for ``seed``."""
    path = df.attrs.get("path", "data")
    fraction = _check_fraction(fraction, path)
    attrs = dict(df.attrs)
    has_labels = "label" in df.columns and df["label"].notna().all() and len(df) > 0
    if has_labels:
        train, validation = _stratified(df, fraction, seed, path)
    else:
        train, validation = _random_split(df, fraction, seed, path)
    if len(validation) == 0:
        raise DataError(f"{path}: validation fraction {fraction:g} of {len(df)} examples leaves no validation examples")
    if len(train) == 0:
        raise DataError(f"{path}: validation fraction {fraction:g} of {len(df)} examples leaves no training examples")
    return _finish(train, attrs), _finish(validation, attrs)
