"""Write a finished run as a TF Serving version: SavedModel + labels + model card + warm-up.

Example::

    path = export_run("runs/sample_bilstm", "saved_models", "sample")
    tf.saved_model.load(str(path)).signatures["serving_default"](text=tf.constant(["nice"]))
"""
from __future__ import annotations

import json
import pathlib
import shutil
import sys
import time
from typing import Any, Sequence

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.errors import RunError
from llmos_tf.export.layout import check_model_name, next_version, publish, temporary_version_dir
from llmos_tf.export.signatures import ClassifierServingModule

WARMUP_TEXTS = ("warm-up request", "a short sentence to compile the graph", "hello")
WARMUP_FILE = "tf_serving_warmup_requests"


def write_warmup_requests(version_dir: pathlib.Path, model_name: str, texts: Sequence[str] = WARMUP_TEXTS) -> pathlib.Path:
    """TF Serving's warm-up file: a TFRecord of PredictionLog, read before a version serves."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = version_dir / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for size in (1, len(texts)):
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
            request.inputs["text"].CopyFrom(tf.make_tensor_proto(list(texts[:size]), dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def model_card(run, name: str, version: int, command: str | None, compression: dict[str, Any] | None = None) -> dict[str, Any]:
    info = run.info
    return {
        "name": name,
        "version": version,
        "task": info.get("task", "classification"),
        "signature": "serving_default: text -> probabilities, label, class_id",
        "labels": run.labels.names,
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


def export_run(run_dir: str | pathlib.Path, model_base_path: str | pathlib.Path, name: str, *, version: int | None = None, force: bool = False, command: str | None = None) -> pathlib.Path:
    """Export ``run_dir`` to ``<model_base_path>/<name>/<version>``; returns the version folder."""
    from llmos_tf.training.trained_run import TrainedRun
    from llmos_tf.training.trained_tagger import is_tagger_run

    from llmos_tf.training.multitask import is_multitask_run

    if is_multitask_run(run_dir):
        raise RunError(f"{run_dir}: exporting multitask runs is not supported yet (one signature per head is planned); export single-task runs")
    if is_tagger_run(run_dir):
        from llmos_tf.export.tagger import export_tagger_run

        return export_tagger_run(run_dir, model_base_path, name, version=version, force=force, command=command)

    check_model_name(name)
    if version is not None and version < 1:
        raise RunError(f"--version: expected a positive integer, got {version}")
    run = TrainedRun.load(run_dir)
    model_dir = pathlib.Path(model_base_path) / name
    version = version if version is not None else next_version(model_dir)
    final_dir = model_dir / str(version)
    if final_dir.exists() and not force:
        raise RunError(f"{final_dir}: version exists; pass --force to overwrite it or omit --version for the next free one")

    module = ClassifierServingModule(run.tokenizer(), run.model, run.labels.names, run.max_length, features=run.architecture.features)
    tmp = temporary_version_dir(model_dir)
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve})
        _verify(tmp, run)
        assets = tmp / "assets"
        assets.mkdir(exist_ok=True)
        (assets / "labels.txt").write_text("\n".join(run.labels.names) + "\n", encoding="utf-8")
        (assets / "llmos.json").write_text(json.dumps(model_card(run, name, version, command), indent=2, default=str) + "\n", encoding="utf-8")
        write_warmup_requests(tmp, name)
        publish(tmp, final_dir, force=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final_dir


def _verify(saved_dir: pathlib.Path, run, texts: Sequence[str] = WARMUP_TEXTS) -> None:
    """The reloaded SavedModel must give the trained model's probabilities."""
    loaded = tf.saved_model.load(str(saved_dir))
    out = loaded.signatures["serving_default"](text=tf.constant(list(texts)))
    expected = run.predict_proba(list(texts))
    got = out["probabilities"].numpy()
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
        raise RunError(f"export check failed: the SavedModel's probabilities differ from the run's (max diff {np.abs(got - expected).max():.2e})")


def main_command() -> str:
    import shlex

    return "llmos " + shlex.join(sys.argv[1:])
