"""What every export shares, whatever the task: the signature names, the model card, the warm-up file.

Every task's serving module (:mod:`~llmos_tf.export.signatures` for classifiers,
:mod:`~llmos_tf.export.tagger`, :mod:`~llmos_tf.export.multitask`) and the
generic writer (:mod:`~llmos_tf.export.writer`, which picks the task's module)
import these from here. They used to live in the writer and in ``signatures``,
which also import the task modules to dispatch to them, so the task modules
imported back from their own dispatcher: an import cycle. Dependencies now point
one way: base ← task modules ← writer.

:func:`write_version` is the one writer of a version, whatever the task: each
task's export module only says what goes in (a :class:`ServingExport`: the
serving module and its signatures, how to check the reloaded SavedModel against
the run, label files, model card, warm-up texts).

Example::

    card = model_card(run, "sst2", 1, command="llmos export ...")
    write_warmup_requests(version_dir, "sst2")  # assets.extra/tf_serving_warmup_requests
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any, Callable, Sequence

from llmos_tf._tf import tf
from llmos_tf.export.layout import staged_version

# the serving contract's input, and the names of the two halves every serving module exports
TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")
PREPROCESS = "preprocess"
POSTPROCESS = "postprocess"
EXPLAIN = "explain"  # text -> tokens, attributions, label (llmos_tf.explain.attributions); per entity for taggers


def explain_signature(head: str) -> str:
    """The name of ``head``'s explain signature in a multitask version (``explain`` itself is the first head's)."""
    return f"{EXPLAIN}_{head}"

WARMUP_TEXTS = ("warm-up request", "a short sentence to compile the graph", "hello")
WARMUP_FILE = "tf_serving_warmup_requests"


def write_warmup_requests(version_dir: pathlib.Path, model_name: str, texts: Sequence[str] = WARMUP_TEXTS,
                          signatures: Sequence[str] = ("serving_default",)) -> pathlib.Path:
    """TF Serving's warm-up file: a TFRecord of PredictionLog, read before a version serves.

    Two requests (one text, all ``texts``) per signature in ``signatures``, so every
    signature a client may name (a multitask version has one per head) is traced before it serves.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = version_dir / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature in signatures:
            for size in (1, len(texts)):
                request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
                request.inputs["text"].CopyFrom(tf.make_tensor_proto(list(texts[:size]), dtype=tf.string))
                log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
    return path


def model_card(run, name: str, version: int, command: str | None, compression: dict[str, Any] | None = None) -> dict[str, Any]:
    """``assets/llmos.json``: what the version is, how it was made and how well it does.

    ``label_names`` (label value -> name, from the run's ``data.label_names``) is there when the
    labels were named, so a client holding a file of ``0``/``1`` can match the ``negative``/``positive``
    the version answers.
    """
    info = run.info
    names = getattr(getattr(getattr(run, "config", None), "data", None), "label_names", None)
    return {
        "name": name,
        "version": version,
        "task": info.get("task", "classification"),
        "signature": "serving_default: text -> probabilities, label, class_id",
        "labels": run.labels.names,
        **({"label_names": dict(names)} if names else {}),
        "metrics": info.get("metrics", {}),
        "data_fingerprint": info.get("data", {}).get("fingerprint"),
        "data": info.get("data", {}),
        "encoder": {"architecture": info.get("architecture"), "vocabulary_size": len(run.vocabulary), "max_length": run.config.data.max_length, "model": run.config.model},
        "parameters": info.get("parameters"),
        "compression": compression or {"method": "none"},
        "training_command": info.get("command"),
        "export_command": command,
        "run": str(run.run_dir),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@dataclasses.dataclass
class ServingExport:
    """What one task's version holds; :func:`write_version` writes any of them the same way."""

    module: tf.Module
    signatures: dict[str, Any]
    verify: Callable[[pathlib.Path], None]  # reloads the staged SavedModel and compares its answers with the run's
    card: dict[str, Any]  # assets/llmos.json
    labels: dict[str, Sequence[str]]  # assets/<file> -> label names, one per line
    warmup_texts: Sequence[str] = WARMUP_TEXTS
    warmup_signatures: Sequence[str] = ("serving_default",)
    extra_files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # beside saved_model.pb (model.tflite)


def write_version(export: ServingExport, model_dir: pathlib.Path, final_dir: pathlib.Path, name: str, *, force: bool) -> pathlib.Path:
    """Save, reload-and-verify, add assets, card and warm-up requests in a hidden folder, then publish
    it as ``final_dir`` (:func:`~llmos_tf.export.layout.staged_version`): a failure leaves nothing."""
    with staged_version(model_dir, final_dir, force=force) as tmp:
        tf.saved_model.save(export.module, str(tmp), signatures=export.signatures)
        export.verify(tmp)
        for file_name, content in export.extra_files.items():
            (tmp / file_name).write_bytes(content)
        assets = tmp / "assets"
        assets.mkdir(exist_ok=True)
        for file_name, names in export.labels.items():
            (assets / file_name).write_text("\n".join(names) + "\n", encoding="utf-8")
        (assets / "llmos.json").write_text(json.dumps(export.card, indent=2, default=str) + "\n", encoding="utf-8")
        write_warmup_requests(tmp, name, export.warmup_texts, signatures=export.warmup_signatures)
    return final_dir
