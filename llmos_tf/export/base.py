"""What every export shares, whatever the task: the signature names, the model card, the warm-up file.

Every task's serving module (:mod:`~llmos_tf.export.signatures` for classifiers,
:mod:`~llmos_tf.export.tagger`, :mod:`~llmos_tf.export.multitask`) and the
generic writer (:mod:`~llmos_tf.export.writer`, which picks the task's module)
import these from here. They used to live in the writer and in ``signatures``,
which also import the task modules to dispatch to them, so the task modules
imported back from their own dispatcher: an import cycle. Dependencies now point
one way: base ← task modules ← writer.

Example::

    card = model_card(run, "sst2", 1, command="llmos export ...")
    write_warmup_requests(version_dir, "sst2")  # assets.extra/tf_serving_warmup_requests
"""
from __future__ import annotations

import pathlib
import time
from typing import Any, Sequence

from llmos_tf._tf import tf

# the serving contract's input, and the names of the two halves every serving module exports
TEXT_SPEC = tf.TensorSpec([None], tf.string, name="text")
PREPROCESS = "preprocess"
POSTPROCESS = "postprocess"

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
