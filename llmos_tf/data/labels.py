"""Label names <-> contiguous integer ids, saved next to every model.

A model only knows ids; users only know names. :class:`LabelMap` is the one
place that translates, and its file form (``labels.txt``: one name per line,
id = line index) is what a SavedModel carries in ``assets/`` and what TF
Serving users expect. The order is deterministic (numeric labels sort
numerically, others lexicographically) so that two runs on the same data
agree on ids.

Data files often store label values a person cannot read (SST-2's ``0``/``1``).
A config's ``data.label_names`` names them; the names replace the values as the
data is read, so the vocabulary, metrics, ``labels.txt`` and the served ``label``
output all say ``negative``/``positive``, while ids keep the values' order.

Example::

    >>> labels = LabelMap.from_labels(["neg", "pos", "neg"])
    >>> labels.encode(["pos", "neg"]).tolist()
    [1, 0]
    >>> labels.decode([1])
    ['pos']
    >>> LabelMap.from_labels(["1", "0"], names={"0": "negative", "1": "positive"}).names
    ['negative', 'positive']
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from llmos_tf.errors import ConfigError, DataError

MAX_LABELS_SHOWN = 20


def _numeric_value(label: str) -> float | None:
    try:
        value = float(label)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Unique labels, numerically sorted if all look numeric ("2" < "10"), else lexicographically."""
    unique = set(labels)
    values = {label: _numeric_value(label) for label in unique}
    if unique and all(v is not None for v in values.values()):
        return sorted(unique, key=lambda label: (values[label], label))
    return sorted(unique)


def describe_labels(names: Sequence[str], limit: int = MAX_LABELS_SHOWN) -> str:
    """``"a, b, c"``, or the first ``limit`` names then ``"... (77 in all)"``."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


def _where(path: str | None, line: int | None) -> str:
    parts = [str(path)] if path else []
    if line is not None:
        parts.append(f"line {line}")
    return ", ".join(parts) + ": " if parts else ""


class LabelMap:
    """Label names <-> contiguous ids; saved with the model as labels.txt (one name per line, id = line index)."""

    def __init__(self, names: Sequence[str]) -> None:
        names = [str(n) for n in names]
        if not names:
            raise DataError("a label map needs at least one label")
        seen: set[str] = set()
        for name in names:
            if not name.strip() or "\n" in name or "\r" in name:
                raise DataError(f"invalid label {name!r}: labels must be non-empty and on one line")
            if name in seen:
                raise DataError(f"duplicate label {name!r} in label map")
            seen.add(name)
        self.names: list[str] = names
        self._ids = {name: i for i, name in enumerate(names)}

    # -- construction -----------------------------------------------------
    @classmethod
    def from_labels(cls, labels: Iterable[Any], names: Mapping[str, str] | None = None) -> "LabelMap":
        """All distinct labels, sorted (numerically when they all look like numbers).

        With ``names`` (label value -> name) the ids are still those of the sorted values,
        so class 0 of a ``{0: negative, 1: positive}`` run is the file's ``0``, whatever
        the names' alphabetical order; the map then holds the names.
        """
        labels = [str(label) for label in labels if label is not None]
        if not labels:
            raise DataError("no labels to build a label map from")
        names = names or {}
        return cls([names.get(value, value) for value in sort_labels(labels)])

    # -- container protocol -------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return str(name) in self._ids

    def __iter__(self):
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self.names == other.names

    def __hash__(self) -> int:
        return hash(tuple(self.names))

    def __repr__(self) -> str:
        return f"LabelMap([{describe_labels([repr(n) for n in self.names], 10)}])"

    def to_dict(self) -> dict[str, int]:
        """``{name: id}``."""
        return dict(self._ids)

    def id_of(self, name: str) -> int:
        """The id of one label (``KeyError`` if unknown)."""
        return self._ids[str(name)]

    # -- encoding ---------------------------------------------------------
    def encode(
        self,
        labels: Sequence[Any],
        *,
        path: str | None = None,
        lines: Sequence[int] | None = None,
        names: Mapping[str, str] | None = None,
    ) -> np.ndarray:
        """int32 ids; an unseen label is a :class:`DataError` naming its file and line.

        ``names`` is the run's ``label_names``: a value the map does not hold as it is
        is looked up by its name, so a run that answers ``negative`` evaluates a file
        that says ``0`` (and a run trained before it had names still reads ``0`` as ``0``).
        """
        labels = list(labels)
        ids = np.empty(len(labels), dtype=np.int32)
        for i, label in enumerate(labels):
            key = str(label)
            found = self._ids.get(key)
            if found is None and names and key in names:
                found = self._ids.get(names[key])
            if found is not None:
                ids[i] = found
            else:
                line = None if lines is None else int(lines[i])
                raise DataError(
                    f"{_where(path, line)}label {key!r} was never seen in training "
                    f"(known labels: {describe_labels(self.names)})"
                )
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Names for ids (any int iterable or array)."""
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if not 0 <= int(i) < len(self.names):
                raise DataError(f"label id {i} is out of range for {len(self.names)} labels")
            out.append(self.names[int(i)])
        return out

    # -- files --------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ``labels.txt`` (UTF-8, one name per line) atomically."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(f"{name}\n" for name in self.names), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelMap":
        """Read a ``labels.txt``; :class:`DataError` if it is missing, empty or malformed."""
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{path}: label file not found")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}: label file is not valid UTF-8") from None
        names = text.split("\n")
        if names and names[-1] == "":
            names.pop()
        names = [n.rstrip("\r") for n in names]
        if not names:
            raise DataError(f"{path}: label file is empty")
        for number, name in enumerate(names, start=1):
            if not name.strip():
                raise DataError(f"{path}, line {number}: empty label name")
        try:
            return cls(names)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None


def check_label_names(names: Mapping[str, str], values: Sequence[str], *, where: str, source: str) -> None:
    """Every key of ``names`` is a label value of the data, and no name is the value of another, unnamed label.

    ``values`` are the label values as read (strings); ``where`` names the config key
    (``data.label_names``) and ``source`` the file, so the error says what to fix.
    A :class:`~llmos_tf.errors.ConfigError` otherwise.
    """
    present = set(values)
    for key in names:
        if key not in present:
            raise ConfigError(
                f"{where}: {key!r} is not a label value of {source}; its label values are: {describe_labels(sort_labels(present))}"
            )
    clash = sorted(set(names.values()) & (present - set(names)))
    if clash:
        raise ConfigError(
            f"{where}: the name {clash[0]!r} is also a label value of {source} that has no name; "
            f"name that value too or choose another name"
        )


def apply_label_names(frame: pd.DataFrame, names: Mapping[str, str] | None) -> pd.DataFrame:
    """``frame`` with each named label value replaced by its name (other labels, ``line`` and ``attrs`` unchanged)."""
    if not names:
        return frame
    out = frame.copy()
    out["label"] = pd.Series([names.get(v, v) if v is not None else None for v in frame["label"].tolist()],
                             index=frame.index, dtype=object)
    out.attrs = dict(frame.attrs)
    return out


def check_label_classes(df: pd.DataFrame) -> None:
    """A classifier needs at least two classes: :class:`DataError` otherwise."""
    path = df.attrs.get("path", "data")
    column = df.attrs.get("label_column") or "label"
    if "label" not in df.columns:
        raise DataError(f"{path}: no label column")
    classes = df["label"].dropna().unique().tolist()
    if not classes:
        raise DataError(f"{path}: label column {column!r} has no labels")
    if len(classes) == 1:
        raise DataError(
            f"{path}: label column {column!r} has only one class ({classes[0]!r}); "
            "a classifier needs at least two"
        )
