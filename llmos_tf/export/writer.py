"""Write a finished run as a TF Serving version: SavedModel + labels + model card + warm-up.

The generic writer: :func:`export_run` looks up the run's task (``run.json``)
in one table of task -> serving export (classifier here, the tagger's and the
multitask module's in their own modules, which import only
:mod:`llmos_tf.export.base`, never the writer) and writes it with
:func:`~llmos_tf.export.base.write_version` (staged, reloaded and verified).

Example::

    path = export_run("runs/sample_bilstm", "saved_models", "sample")
    tf.saved_model.load(str(path)).signatures["serving_default"](text=tf.constant(["nice"]))
"""
from __future__ import annotations

import pathlib
import sys
from typing import Any, Callable, Sequence

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.errors import RunError
from llmos_tf.export.base import WARMUP_TEXTS, ServingExport, model_card, write_version
from llmos_tf.export.layout import version_target
from llmos_tf.export.signatures import ClassifierServingModule
from llmos_tf.tasks.tagging import TrainedTagger


def classifier_export(run, name: str, version: int, command: str | None, lstm_matmul_dtype: str = "float32") -> ServingExport:
    """What a classification version holds: the classifier's serving module around float32 weights
    without the Keras object graph (a 4x smaller saved_model.pb for LSTMs), checked against the run's probabilities."""
    from llmos_tf.compression.int8_weights import QuantizedModel

    model = QuantizedModel(run.model, weight_dtype="float32", fused_lstm_dtype=lstm_matmul_dtype)
    module = ClassifierServingModule(run.tokenizer(), model, run.labels.names, run.max_length, features=run.architecture.features)
    card = model_card(run, name, version, command)
    if model.summary()["fused_lstm"]:
        card["fused_lstm"] = model.summary()["fused_lstm"]
    atol = 0.02 if lstm_matmul_dtype == "bfloat16" else 1e-5
    return ServingExport(module=module, signatures=module.signatures(), verify=lambda saved: _verify(saved, run, atol=atol),
                         card=card, labels={"labels.txt": run.labels.names})


def _exports() -> list[tuple[type, Callable[..., ServingExport]]]:
    """Task class -> what its version holds (the task's serving modules); the one table the writer dispatches on."""
    from llmos_tf.export.multitask import multitask_export
    from llmos_tf.export.tagger import tagger_export
    from llmos_tf.tasks.classification import ClassificationTask
    from llmos_tf.tasks.multitask import MultitaskTask
    from llmos_tf.tasks.tagging import TaggingTask

    return [(ClassificationTask, classifier_export), (TaggingTask, tagger_export), (MultitaskTask, multitask_export)]


def export_run(run_dir: str | pathlib.Path, model_base_path: str | pathlib.Path, name: str, *, version: int | None = None, force: bool = False,
               command: str | None = None, lstm_matmul_dtype: str = "float32") -> pathlib.Path:
    """Export ``run_dir`` (any task) to ``<model_base_path>/<name>/<version>``; returns the version folder.

    ``lstm_matmul_dtype="bfloat16"``: a BiLSTM classifier's matmuls run in bfloat16 (see
    :mod:`llmos_tf.models.fused_lstm`); the reloaded export is then checked against the
    run within 0.02 in probability instead of 1e-5.
    """
    from llmos_tf.errors import RunError
    from llmos_tf.tasks import run_task

    task = run_task(run_dir)
    build = next((fn for cls, fn in _exports() if issubclass(task, cls)), None)
    if build is None:  # refused before anything is written under the model base path
        raise RunError(f"{run_dir}: a {task.name} run has no TF Serving export. A pretraining run's result is its encoder "
                       f"folder (llmos pretrain --output); publish that with `llmos encode --model ENCODER_FOLDER "
                       f"--model_base_path DIR --name NAME`, or use it as model.encoder of a classifier or tagger config.")
    model_dir, version, final_dir = version_target(model_base_path, name, version, force=force)
    run = task.load(run_dir)
    options = {"lstm_matmul_dtype": lstm_matmul_dtype} if build is classifier_export else {}
    return write_version(build(run, name, version, command, **options), model_dir, final_dir, name, force=force)


TFLITE_FILE = "model.tflite"  # TF Serving's --prefer_tflite_model looks for this name


WEIGHT_FORMATS = ("float32", "int8", "float16")


def export_model(run, model, model_base_path: str | pathlib.Path, name: str, *, version: int | None = None,
                 compression: dict[str, Any] | None = None, tflite: bytes | None = None, weights: str = "float32",
                 embedding_bits: int = 8, lstm_matmul_dtype: str = "float32", force: bool = False,
                 command: str | None = None) -> pathlib.Path:
    """Export a (compressed) ``model`` of a loaded run as ``<base>/<name>/<version>``; returns the folder.

    The SavedModel has the run's ``serving_default`` around ``model`` plus the
    ``preprocess``/``postprocess`` signatures. ``weights="int8"`` (or ``"float16"``)
    stores the large kernels compactly inside the SavedModel and dequantizes them
    in the graph (:class:`~llmos_tf.compression.int8_weights.QuantizedModel`; ``embedding_bits=4``
    packs vocabulary tables at 4 bits with a scale per 64 values), so
    the stock ``tensorflow_model_server`` serves the small version as it is.
    ``tflite`` bytes go to ``model.tflite`` beside it (TF Serving's
    ``--prefer_tflite_model`` name), an extra, never the only copy. Written to a
    temporary folder, reloaded and called, then renamed: a failure leaves nothing.
    Bidirectional LSTMs are traced by :mod:`llmos_tf.models.fused_lstm` (the same
    answers from one loop for both directions, and a smaller graph); ``lstm_matmul_dtype="bfloat16"``
    runs their matmuls in bfloat16,
    for CPUs with AVX512-BF16/AMX (recorded in the card).
    """
    if weights not in WEIGHT_FORMATS:
        raise RunError(f"weights: expected one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")
    model_dir, version, final_dir = version_target(model_base_path, name, version, force=force)
    from llmos_tf.compression.int8_weights import QuantizedModel

    model = QuantizedModel(model if model is not None else run.model, weight_dtype=weights, embedding_bits=embedding_bits,
                           fused_lstm_dtype=lstm_matmul_dtype)
    stored = model.summary()
    stored.pop("quantized_weights", None)
    module = serving_module(run, model)
    card = model_card(run, name, version, command, compression)
    card["format"] = "savedmodel+tflite" if tflite is not None else "savedmodel"
    card["savedmodel_weights"] = stored
    if isinstance(run, TrainedTagger):
        card.update(task=run.info.get("task"), signature="serving_default: text -> tags, token_count", max_length=run.max_length)
    export = ServingExport(module=module, signatures=module.signatures(), verify=_check_answers, card=card, labels={"labels.txt": run.labels.names},
                           extra_files={TFLITE_FILE: tflite} if tflite is not None else {})
    return write_version(export, model_dir, final_dir, name, force=force)


def serving_module(run, model=None, *, with_model: bool = True):
    """The serving module of a loaded run (classifier or tagger), around ``model`` (default: the run's).

    ``with_model=False`` gives only ``preprocess``/``postprocess`` (no weights): the
    SavedModel half of a TFLite-only version. The choice by task is made here, in the
    writer, which knows every task's module; the task modules never import the writer.
    """
    from llmos_tf.export.tagger import TaggerServingModule

    model = (model if model is not None else run.model) if with_model else None
    if isinstance(run, TrainedTagger):
        return TaggerServingModule(run.text_encoder(), model, run.labels.names, crf=run.crf)  # a quantized model hides its CRF
    return ClassifierServingModule(run.tokenizer(), model, run.labels.names, run.max_length, features=run.architecture.features)


def _check_answers(saved_dir: pathlib.Path, texts: Sequence[str] = WARMUP_TEXTS) -> None:
    """The reloaded SavedModel's ``serving_default`` must answer every warm-up text."""
    loaded = tf.saved_model.load(str(saved_dir))
    out = loaded.signatures["serving_default"](text=tf.constant(list(texts)))
    rows = {int(v.shape[0]) for v in out.values()}
    if rows != {len(texts)}:
        raise RunError(f"export check failed: serving_default answered {sorted(rows)} rows for {len(texts)} texts")


def _verify(saved_dir: pathlib.Path, run, texts: Sequence[str] = WARMUP_TEXTS, atol: float = 1e-5) -> None:
    """The reloaded SavedModel must give the trained model's probabilities."""
    loaded = tf.saved_model.load(str(saved_dir))
    out = loaded.signatures["serving_default"](text=tf.constant(list(texts)))
    expected = run.predict_proba(list(texts))
    got = out["probabilities"].numpy()
    if got.shape != expected.shape or not np.allclose(got, expected, atol=atol):
        raise RunError(f"export check failed: the SavedModel's probabilities differ from the run's (max diff {np.abs(got - expected).max():.2e})")


def main_command() -> str:
    import shlex

    return "llmos " + shlex.join(sys.argv[1:])
