"""An exported version used in-process: predict and evaluate without a server.

``llmos predict --model saved_models/sample/1 "text"`` and ``llmos evaluate
--model saved_models/sample/1 --data FILE`` load the version folder the way
``llmos serve`` does (:class:`~llmos_tf.serving.servable.Servable`: the
SignatureDefs from ``saved_model.pb``, tensorflow-text's ops registered, labels
from ``assets/``) and call its signatures directly. What they answer is what a
client of the served model gets, so an export can be checked before it is
served. The signature's outputs say what the model is: ``probabilities`` and
``label`` for a sentence classifier, ``tags`` and ``token_count`` for a tagger
(each head of a multitask export is one such signature, picked with ``--head``).

Example::

    model = LocalSavedModel.load("saved_models/banking77_bilstm/1")
    model.predict(["I lost my card"])        # DataFrame: text, label, probability
    model.evaluate_table(frame)["accuracy"]  # frame from read_labelled_table
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from llmos_tf.errors import DataError, RunError
from llmos_tf.task_kinds import task_kind

DEFAULT_SIGNATURE = "serving_default"
CHUNK = 256  # texts per signature call: bounds memory on long files


def find_version(path: str | pathlib.Path) -> pathlib.Path | None:
    """The version folder ``path`` names: itself when it holds ``saved_model.pb``, else, for a model
    folder ``<base>/<name>``, its highest numbered version (what TF Serving serves by default)."""
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    if not path.is_dir():
        return None
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


@dataclass
class LocalSavedModel:
    """One loaded version; ``signature`` is the one predictions come from (``--head``)."""

    servable: Any  # llmos_tf.serving.servable.Servable
    signature: str = DEFAULT_SIGNATURE

    @classmethod
    def load(cls, path: str | pathlib.Path, signature: str | None = None) -> "LocalSavedModel":
        from llmos_tf.serving.servable import Servable

        path = pathlib.Path(path)
        version = int(path.name) if path.name.isdigit() else 0
        try:
            servable = Servable.load(path.parent.name or path.name, version, path)
        except (OSError, ValueError) as err:
            raise RunError(f"{path}: cannot load the SavedModel ({err})") from None
        model = cls(servable, signature or DEFAULT_SIGNATURE)
        if model.signature not in servable.inputs:
            raise RunError(f"{path}: no signature {model.signature!r}; its signatures are {', '.join(servable.signature_names)} "
                           "(--head picks one)")
        if set(servable.inputs[model.signature]) != {"text"}:
            raise RunError(f"{path}: signature {model.signature!r} does not take raw text (inputs: {servable.expected(model.signature)})")
        if model.task is None:
            raise RunError(f"{path}: signature {model.signature!r} returns {', '.join(sorted(model.outputs))}; expected probabilities "
                           "and label (a classifier) or tags and token_count (a tagger)")
        return model

    @property
    def path(self) -> pathlib.Path:
        return self.servable.path

    @property
    def outputs(self) -> dict[str, Any]:
        return self.servable.outputs[self.signature]

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"ner"`` or None (a signature that is neither)."""
        if {"probabilities", "label"} <= set(self.outputs):
            return "classification"
        if {"tags", "token_count"} <= set(self.outputs):
            return "ner"
        return None

    @property
    def label_names(self) -> list[str]:
        names = self.servable.labels_for(self.signature)
        if not names:
            raise RunError(f"{self.path}: no assets/labels.txt, so its class ids cannot be named")
        return names

    def _run(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The signature on every text, in chunks, rows in input order."""
        parts = []
        for start in range(0, len(texts), CHUNK):
            batch = np.array([t.encode("utf-8") for t in texts[start:start + CHUNK]], dtype=object)
            parts.append(self.servable.run(self.signature, {"text": batch}))
        if not parts:
            return {}
        if task_kind(self.task).predicts == "word_tags":  # tags are padded to each call's longest sentence
            width = max(p["tags"].shape[1] for p in parts)
            for p in parts:
                p["tags"] = np.pad(p["tags"], [(0, 0), (0, width - p["tags"].shape[1])], constant_values=b"")
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        """Classifier: ``text, label, probability``; tagger: ``text, tokens, tags, entities`` (one tag per
        whitespace token; entities ``{type, text, start, end}`` in token offsets, as a tagger run predicts)."""
        texts = [str(t) for t in texts]
        if task_kind(self.task).predicts == "word_tags":
            from llmos_tf.metrics.conlleval import entity_spans

            tokens = [t.split() for t in texts]
            tags = self._tags(tokens)
            entities = [[{"type": k, "text": " ".join(w[s:e]), "start": s, "end": e} for k, s, e in entity_spans(row)]
                        for w, row in zip(tokens, tags)]
            return pd.DataFrame({"text": texts, "tokens": tokens, "tags": tags, "entities": entities})
        out = self._run(texts)
        if not texts:
            return pd.DataFrame({"text": [], "label": [], "probability": []})
        probs = np.asarray(out["probabilities"])
        labels = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.asarray(out["label"]).tolist()]
        return pd.DataFrame({"text": texts, "label": labels, "probability": probs.max(axis=-1)})

    def _tags(self, tokens: Sequence[Sequence[str]]) -> list[list[str]]:
        """One tag per token (``O`` past what the model tags: its max_length truncates)."""
        out = self._run([" ".join(t) for t in tokens])
        if not tokens:
            return []
        tags = []
        for row, count, words in zip(out["tags"], out["token_count"], tokens):
            got = [t.decode("utf-8") for t in row[: int(count)]]
            tags.append((got + ["O"] * len(words))[: len(words)])
        return tags

    def card_label_names(self) -> dict[str, str] | None:
        """The model card's ``label_names`` (value -> name) for this signature: the card's own, or for a
        multitask export its head's (``serving_default`` is the first head)."""
        card = self.servable.card
        heads = card.get("heads")
        if isinstance(heads, dict) and heads:
            head = self.signature if self.signature in heads else next(iter(heads))
            return (heads.get(head) or {}).get("label_names")
        return card.get("label_names")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._run([str(t) for t in texts])["probabilities"])

    # -- evaluation ---------------------------------------------------------------
    def evaluate_table(self, frame: pd.DataFrame, label_names: dict[str, str] | None = None) -> dict[str, Any]:
        """Classifier metrics on a frame from :func:`~llmos_tf.data.readers.read_labelled_table`.

        Gold labels are matched to ``assets/labels.txt``; ``label_names`` (value → name, the
        model card's when it has one) lets a file that says ``0`` evaluate a model that answers ``negative``.
        """
        from llmos_tf.data.labels import LabelMap
        from llmos_tf.training.evaluation import classification_metrics

        labels = LabelMap(self.label_names)
        names = label_names if label_names is not None else self.card_label_names()
        y_true = labels.encode(frame["label"].tolist(), path=frame.attrs.get("path"), lines=frame["line"].tolist(), names=names or None)
        if not len(frame):
            raise DataError(f"{frame.attrs.get('path', 'data')}: no examples")
        y_pred = self.predict_proba(frame["text"].tolist()).argmax(axis=-1)
        return classification_metrics(y_true, y_pred, labels.names)

    def evaluate_conll(self, frame: pd.DataFrame) -> dict[str, Any]:
        """conlleval metrics on a frame from :func:`~llmos_tf.data.conll.read_conll` (tagger signatures)."""
        from llmos_tf.metrics.conlleval import conlleval

        predicted = self._tags(frame["tokens"].tolist())
        return {"examples": len(frame), **conlleval(frame["tags"].tolist(), predicted)}
