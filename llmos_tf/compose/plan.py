"""Checks of the compose commands that need no TensorFlow: members, labels, weights, validation file, corpus.

The CLI runs them before TensorFlow is imported, so a label mismatch between members, a wrong weight
count, an empty corpus or an empty row is refused in a fraction of a second and before any model loads.

Example::

    plan = plan_ensemble(["saved_models/sst2_bert@compressed", "saved_models/sst2_bilstm_distilled/1"])
    plan.labels, plan.weights                 # (['negative', 'positive'], [0.5, 0.5])
    texts, payloads, frame = read_corpus("faq.csv", "question", "answer")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from llmos_tf.compose.refs import VersionRef, resolve_version
from llmos_tf.errors import ConfigError, DataError, RunError
from llmos_tf.task_kinds import task_kind

MATRIX_DTYPES = ("float32", "int8")
COMBINERS = ("weighted_average", "stacking")


@dataclass
class Plan:
    """Everything checked before any model loads."""

    members: list[VersionRef]
    labels: list[str]
    orders: list[list[int]]  # per member: its probability columns in the ensemble's label order
    weights: list[float] | None
    validation: Any  # pandas frame with text, label (mapped to the label names) or None
    validation_path: str | None


def _map_labels(frame, labels: Sequence[str], label_names: dict[str, str], path: str):
    """The file's label values as the members' label names (``0`` -> ``negative`` by the member's card)."""
    known = set(labels)
    mapped = [value if value in known else label_names.get(value, value) for value in frame["label"]]
    unknown = sorted({m for m in mapped if m not in known})
    if unknown:
        raise DataError(f"{path}: labels {unknown[:10]} are not among the members' labels {list(labels)}"
                        + (f" (nor the values the member's card names: {sorted(label_names)})" if label_names else ""))
    frame = frame.copy()
    frame["label"] = mapped
    return frame


def plan_ensemble(members: Sequence[str], *, weights: Sequence[float] | None = None, fit: str = "weighted_average",
                  validation: str | None = None, text_column: str | None = None, label_column: str | None = None) -> Plan:
    """Resolve and check the members, labels, weights and validation file; no TensorFlow work."""
    from llmos_tf.data.readers import read_labelled_table

    if len(members) < 2:
        raise ConfigError(f"--member: an ensemble needs at least 2 members, got {len(members)}")
    if fit not in COMBINERS:
        raise ConfigError(f"--fit: expected one of {', '.join(COMBINERS)}, got {fit!r}")
    refs = [resolve_version(m) for m in members]
    for ref in refs:
        if task_kind(ref.task).predicts != "label" or ref.labels is None:
            raise RunError(f"--member {ref.spec}: {ref.version_dir} is not a sentence classifier "
                           f"(task {ref.task!r}{', no assets/labels.txt' if ref.labels is None else ''}); ensembles combine classifiers' probabilities")
    first = refs[0]
    for ref in refs[1:]:
        if sorted(ref.labels) != sorted(first.labels):
            raise ConfigError(f"--member: members must share labels; {first.spec} has {first.labels} but {ref.spec} has {ref.labels}")
    labels = list(first.labels)
    orders = [[ref.labels.index(label) for label in labels] for ref in refs]
    if fit == "stacking":
        if weights:
            raise ConfigError("--weights and --fit stacking exclude each other: stacking learns how to weigh the members")
        if not validation:
            raise ConfigError("--fit stacking needs --validation FILE (labelled texts the members were not trained on)")
    if weights:
        if len(weights) != len(refs):
            raise ConfigError(f"--weights: {len(weights)} weights for {len(refs)} members; give one per --member, in order")
        if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"--weights: expected non-negative numbers with a positive sum, got {list(weights)}")
    frame = None
    if validation:
        frame = read_labelled_table(validation, text_column, label_column)
        frame = _map_labels(frame, labels, (first.card.get("label_names") or {}), validation)
        if fit == "stacking":
            missing = [label for label in labels if label not in set(frame["label"])]
            if missing:
                raise DataError(f"{validation}: stacking needs every label in the validation file; missing {missing[:10]}")
    norm = None if fit == "stacking" else [float(w) / float(sum(weights)) for w in weights] if weights else [1.0 / len(refs)] * len(refs)
    return Plan(refs, labels, orders, norm, frame, validation)



def read_corpus(path: str, text_column: str | None, payload_column: str | None) -> tuple[list[str], list[str] | None, Any]:
    """Texts (and payloads) of a corpus file; an empty file or an empty text is refused, naming the line."""
    from llmos_tf.data.readers import read_labelled_table, read_texts

    if payload_column:
        frame = read_labelled_table(path, text_column, payload_column, require_labels=False)
        payloads = ["" if p is None else str(p) for p in frame["label"]]
    else:
        frame, payloads = read_texts(path, text_column), None
    texts = [str(t) for t in frame["text"]]
    if not texts:
        raise DataError(f"{path}: the corpus is empty; an index needs at least one row")
    blank = next((line for text, line in zip(texts, frame["line"]) if not text.strip()), None)
    if blank is not None:
        raise DataError(f"{path}, line {blank}: empty text in column {frame.attrs.get('text_column')!r}; remove the row or fill it")
    return texts, payloads, frame
