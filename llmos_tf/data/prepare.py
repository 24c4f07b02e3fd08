"""From the ``data:`` config to validated, labelled, split frames.

Everything that can be wrong with the input is found here, before a run
folder exists: a run that fails validation writes nothing. ``data.label_names``
is checked against the training file's label values and applied to every split
here, so everything after (vocabulary, metrics, exports) only sees names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmos_tf.data.fingerprint import data_fingerprint
from llmos_tf.data.labels import LabelMap, apply_label_names, check_label_classes, check_label_names, sort_labels
from llmos_tf.data.readers import read_labelled_table
from llmos_tf.data.splits import stratified_split
from llmos_tf.errors import ConfigError


@dataclass
class PreparedData:
    train: pd.DataFrame
    validation: pd.DataFrame
    labels: LabelMap
    fingerprint: str
    test: pd.DataFrame | None = None
    y_train: np.ndarray = field(default=None)
    y_validation: np.ndarray = field(default=None)
    y_test: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "test_examples": 0 if self.test is None else len(self.test),
            "num_labels": len(self.labels),
            "fingerprint": self.fingerprint,
        }


def _encode(labels: LabelMap, frame: pd.DataFrame) -> np.ndarray:
    return labels.encode(frame["label"].tolist(), path=frame.attrs.get("path"), lines=frame["line"].tolist())


def prepare_classification_data(data_cfg, seed: int, *, names_key: str = "data.label_names") -> PreparedData:
    """Read, validate and split the files a classification run names.

    ``names_key`` is where ``data_cfg.label_names`` came from (``heads[1].label_names`` for
    a multitask head), for the error when a name's key is not one of the file's label values.
    """
    if not data_cfg.train:
        raise ConfigError("data.train: no training file given (set it in the config or with --set data.train=PATH)")
    read = lambda path: read_labelled_table(path, data_cfg.text_column, data_cfg.label_column, format=data_cfg.format)  # noqa: E731
    train = read(data_cfg.train)
    check_label_classes(train)
    names = getattr(data_cfg, "label_names", None) or None
    if names:
        source = f"{data_cfg.train} (column {train.attrs.get('label_column')!r})"
        check_label_names(names, sort_labels(train["label"].dropna().tolist()), where=names_key, source=source)
    if data_cfg.validation:
        validation = read(data_cfg.validation)
    else:
        train, validation = stratified_split(train, data_cfg.validation_fraction, seed)
    if data_cfg.max_train_examples and data_cfg.max_train_examples < len(train):
        train, _ = stratified_split(train, 1.0 - data_cfg.max_train_examples / len(train), seed)
    labels = LabelMap.from_labels(train["label"].tolist(), names=names)
    test = read(data_cfg.test) if data_cfg.test else None
    train, validation = apply_label_names(train, names), apply_label_names(validation, names)
    test = apply_label_names(test, names) if test is not None else None
    fingerprint = data_fingerprint(
        {"train": data_cfg.train, "validation": data_cfg.validation, "test": data_cfg.test},
        {
            "text_column": train.attrs.get("text_column"),
            "label_column": train.attrs.get("label_column"),
            "validation_fraction": None if data_cfg.validation else data_cfg.validation_fraction,
            "seed": None if data_cfg.validation and not data_cfg.max_train_examples else seed,
            "max_train_examples": data_cfg.max_train_examples,
        },
    )
    prepared = PreparedData(train=train, validation=validation, labels=labels, fingerprint=fingerprint, test=test)
    prepared.y_train = _encode(labels, train)
    prepared.y_validation = _encode(labels, validation)
    prepared.y_test = _encode(labels, test) if test is not None else None
    return prepared
