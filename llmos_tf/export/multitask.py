"""Export a finished multitask run as one TF Serving version with one signature per head.

Every head becomes a signature named after it, taking ``text`` tf.string
``[None]`` and giving exactly the outputs of the single-task contract of its kind
(DESIGN.md), so a client written for a single-task model works on a head:

* classification head: ``probabilities`` float32 ``[None, num_labels]``,
  ``label`` tf.string ``[None]``, ``class_id`` int64 ``[None]``
  (:class:`~llmos_tf.export.signatures.ClassifierServingModule`);
* NER head: ``tags`` tf.string ``[None, max_tokens]``, ``token_count`` int32 ``[None]``
  (:class:`~llmos_tf.export.tagger.TaggerServingModule`).

``serving_default`` is the **first head in the config**, so clients that name no
signature (and TF Serving's defaults) get that head. A client picks another head
with ``model_spec.signature_name`` (gRPC) or ``"signature_name"`` (REST).

Each head is explained too, as single-task versions are: ``explain_<head>`` gives
that head's ``explain`` outputs (integrated gradients of the predicted class for a
classification head, per-entity attributions for an NER head; see
:mod:`llmos_tf.explain.attributions` and :mod:`llmos_tf.explain.entities`), and
``explain`` is the first head's, matching ``serving_default``.

The weights are saved once: one :class:`MultitaskServingModule` holds the Keras
model, and each head's signature runs a view of it (the same layers). Assets:
``labels_<head>.txt`` per head, ``labels.txt`` = the first head's (for tools that
read one label file), and ``llmos.json`` with ``task: multitask`` and a ``heads``
section (signature, task, outputs, labels, metrics). The warm-up file warms up
every head's signature. Like every export, the version is written to a temporary
folder, checked (each reloaded signature must answer as the run does) and renamed
into place; a failure leaves nothing behind.

Example::

    path = export_multitask_run("runs/mt", "saved_models", "mt")
    loaded = tf.saved_model.load(str(path))
    loaded.signatures["ner"](text=tf.constant(["Anna Berg flew to Oslo ."]))["tags"]
    loaded.signatures["sentiment"](text=tf.constant(["a lovely film"]))["label"]
"""
from __future__ import annotations

import pathlib
import time
from typing import Any, Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.data.labels import LabelMap
from llmos_tf.errors import RunError
from llmos_tf.export.base import EXPLAIN, WARMUP_TEXTS, ServingExport, explain_signature, write_version
from llmos_tf.export.layout import version_target
from llmos_tf.export.signatures import ClassifierServingModule
from llmos_tf.export.tagger import CHECK_SENTENCES, WARMUP_SENTENCES, TaggerServingModule
from llmos_tf.export.tagger import EXPLAIN_OUTPUTS as TAGGER_EXPLAIN_OUTPUTS
from llmos_tf.tasks.multitask import MULTITASK
from llmos_tf.task_kinds import task_kind
from llmos_tf.tasks.multitask_heads import CLASSIFICATION, NER, head_model

DEFAULT_SIGNATURE = "serving_default"
OUTPUTS = {CLASSIFICATION: ("probabilities", "label", "class_id"), NER: ("tags", "token_count")}
EXPLAIN_OUTPUTS = {CLASSIFICATION: ("tokens", "attributions", "label", "class_id", "probability"), NER: TAGGER_EXPLAIN_OUTPUTS}


class MultitaskServingModule(tf.Module):
    """One Keras multitask model, one string-in serving function per head (``heads[name].serve``)."""

    def __init__(self, tokenizer, model: tf_keras.Model, heads: dict[str, LabelMap], tasks: dict[str, str], max_length: int):
        from llmos_tf.models.bert_classifier import bert_features

        super().__init__(name="llmos_multitask")
        self.model = model  # the one copy of the weights; every head's view shares its layers
        self.head_names = list(heads)
        self.heads = {}
        for name, labels in heads.items():
            view = head_model(model, name)
            if task_kind(tasks[name]).predicts == "word_tags":  # an NER head
                self.heads[name] = TaggerServingModule(tokenizer.encoder, view, labels.names)
            else:
                self.heads[name] = ClassifierServingModule(tokenizer, view, labels.names, max_length, features=bert_features)

    def signatures(self) -> dict:
        """``{head: its serve function}`` plus ``serving_default`` = the first head; ``explain_<head>`` per head
        whose model has a token embedding to attribute, plus ``explain`` = the first head's."""
        out = {name: self.heads[name].serve for name in self.head_names}
        out[DEFAULT_SIGNATURE] = out[self.head_names[0]]
        for name in self.head_names:
            if getattr(self.heads[name], "explainer", None) is not None:
                out[explain_signature(name)] = self.heads[name].explain
        first = explain_signature(self.head_names[0])
        if first in out:
            out[EXPLAIN] = out[first]
        return out


def check_texts(max_length: int) -> list[str]:
    """Sentences every head's reloaded signature must answer like the run (incl. empty and over-long ones)."""
    return [*WARMUP_TEXTS, *CHECK_SENTENCES, " ".join(["Oslo"] * (max_length + 3))]


def _verify(saved_dir: pathlib.Path, run, texts: Sequence[str]) -> None:
    """Each head's reloaded signature must give the run's probabilities (classification) or tags (NER)."""
    loaded = tf.saved_model.load(str(saved_dir))
    for head, task in run.tasks.items():
        out = loaded.signatures[head](text=tf.constant(list(texts)))
        explained = None
        if explain_signature(head) in loaded.signatures:  # not the over-long text: dozens of entities, nothing to learn
            explained = loaded.signatures[explain_signature(head)](text=tf.constant(list(texts[:-1])))
        if task_kind(task).predicts == "word_tags":
            counts = out["token_count"].numpy().tolist()
            got = [[t.decode("utf-8") for t in row[:n]] for row, n in zip(out["tags"].numpy(), counts)]
            expected = run.predict_tags(list(texts), head)
            if got != expected:
                bad = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
                raise RunError(f"export check failed: signature {head!r} tags {texts[bad]!r} as {got[bad]} but the run gives {expected[bad]}")
            if explained is not None:
                tags = [[t.decode("utf-8") for t in row[:n]] for row, n in zip(explained["tags"].numpy(), explained["token_count"].numpy())]
                if tags != expected[:-1]:
                    raise RunError(f"export check failed: signature {explain_signature(head)!r} tags differ from signature {head!r}'s")
        else:
            got = out["probabilities"].numpy()
            expected = run.predict_proba(list(texts), head)
            if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
                raise RunError(f"export check failed: signature {head!r} probabilities differ from the run's (max diff {np.abs(got - expected).max():.2e})")
            if explained is not None and explained["label"].numpy().tolist() != out["label"].numpy().tolist()[:-1]:
                raise RunError(f"export check failed: signature {explain_signature(head)!r} explains other labels than signature {head!r} gives")


def multitask_card(run, name: str, version: int, command: str | None) -> dict[str, Any]:
    """``assets/llmos.json`` of a multitask version: the usual card plus a ``heads`` section."""
    info = run.info
    first = next(iter(run.heads))
    validation = info.get("metrics", {}).get("validation", {})
    names = {h.name: h.label_names for h in run.config.heads if h.label_names} if run.config is not None else {}
    return {
        "name": name,
        "version": version,
        "task": MULTITASK,
        "signature": (f"{DEFAULT_SIGNATURE} = {first} (the first head); one signature per head, named after it: text -> the head's outputs; "
                      f"{explain_signature('<head>')}: the head's attributions ({EXPLAIN} = {first}'s)"),
        "labels": run.heads[first].names,
        "heads": {
            head: {
                "signature": head,
                "task": run.tasks[head],
                "outputs": list(OUTPUTS[run.tasks[head]]),
                "explain_signature": explain_signature(head),
                "explain_outputs": list(EXPLAIN_OUTPUTS[run.tasks[head]]),
                "labels": labels.names,
                **({"label_names": names[head]} if head in names else {}),
                "labels_file": f"labels_{head}.txt",
                "metrics": validation.get(head, {}),
            }
            for head, labels in run.heads.items()
        },
        "metrics": info.get("metrics", {}),
        "validation_score": info.get("validation_score"),
        "data": info.get("data", {}),
        "encoder": {
            "architecture": info.get("architecture"),
            "vocabulary_size": len(run.text_encoder().vocabulary),
            "max_length": run.max_length,
            "model": run.config.model if run.config is not None else None,
        },
        "max_length": run.max_length,
        "parameters": info.get("parameters"),
        "compression": {"method": "none"},
        "training_command": info.get("command"),
        "export_command": command,
        "run": str(run.run_dir),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def multitask_export(run, name: str, version: int, command: str | None) -> ServingExport:
    """What a multitask version holds: one signature per head (``serving_default`` = the first), each
    head's labels file (and the first head's as ``labels.txt``), warm-up requests for every signature."""
    from llmos_tf.tasks.multitask_heads import head_labels_file

    module = MultitaskServingModule(run.tokenizer, run.model, run.heads, run.tasks, run.max_length)
    signatures = module.signatures()
    first = next(iter(run.heads))
    labels = {head_labels_file(head): labels.names for head, labels in run.heads.items()}
    labels["labels.txt"] = run.heads[first].names
    texts = check_texts(run.max_length)
    return ServingExport(module=module, signatures=signatures, verify=lambda saved: _verify(saved, run, texts),
                         card=multitask_card(run, name, version, command), labels=labels, warmup_texts=WARMUP_SENTENCES,
                         warmup_signatures=[s for s in signatures if not s.startswith(EXPLAIN)])


def export_multitask_run(run_dir: str | pathlib.Path, model_base_path: str | pathlib.Path, name: str, *, version: int | None = None,
                         force: bool = False, command: str | None = None) -> pathlib.Path:
    """Export multitask ``run_dir`` to ``<model_base_path>/<name>/<version>``; returns the version folder."""
    from llmos_tf.tasks.multitask import TrainedMultitask

    model_dir, version, final_dir = version_target(model_base_path, name, version, force=force)
    run = TrainedMultitask.load(run_dir)
    return write_version(multitask_export(run, name, version, command), model_dir, final_dir, name, force=force)
