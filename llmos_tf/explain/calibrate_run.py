"""``llmos calibrate --run RUN``: temperature scaling fitted on the validation set's logits, folded into the run.

Temperature scaling divides the logits by one scalar ``T``. The classifier's last layer is
``softmax(x @ W + b)``, so ``softmax((x @ W + b) / T) == softmax(x @ (W / T) + b / T)``: the
fitted ``T`` is folded into that layer's kernel and bias and saved in ``model.keras``. Every
later ``llmos export`` (float, int8, TFLite) then serves calibrated probabilities with no new
op and no change to the serving contract, and the argmax (so accuracy) is unchanged. The
original model is kept as ``model.uncalibrated.keras``; ``run.json`` records the temperature
and ECE/NLL before and after under ``metrics.calibration`` (copied into the model card).

Example::

    summary = calibrate_run("runs/sst2_bert")   # {"temperature": 1.7, "ece_before": 0.061, "ece_after": 0.018, ...}
"""
from __future__ import annotations

import os
import pathlib
import shutil
from typing import Any, Sequence

import numpy as np

from llmos_tf.errors import RunError
from llmos_tf.metrics.calibration import ECE_BINS, calibration_summary, fit_temperature, reliability_figure, softmax

UNCALIBRATED_FILE = "model.uncalibrated.keras"
CALIBRATION_PNG = "calibration.png"
HEAD = "classifier"  # the Dense softmax head of the BiLSTM and BERT classifiers


def _head(model):
    try:
        head = model.get_layer(HEAD)
    except ValueError:
        raise RunError(f"{model.name}: no '{HEAD}' layer; temperature scaling needs the classifier's softmax head") from None
    return head


def run_logits(run, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """The classifier's logits (its softmax head's input times its kernel plus bias) for ``texts``, in order."""
    from llmos_tf._tf import tf_keras
    from llmos_tf.data.pipeline import BatchingPlan, make_dataset

    texts = [str(t) for t in texts]
    head = _head(run.model)
    features = tf_keras.Model(run.model.inputs, head.input)
    order = np.argsort([len(t) for t in texts], kind="stable")
    plan = BatchingPlan(batch_size=batch_size, max_length=run.max_length, bucketing=False)
    ds = make_dataset([texts[i] for i in order], None, run.tokenizer(), plan, training=False, cache=False, features=run.architecture.features)
    kernel, bias = (w.numpy() for w in (head.kernel, head.bias))
    logits = np.empty([len(texts), kernel.shape[1]], np.float64)
    logits[order] = features.predict(ds, verbose=0) @ kernel + bias
    return logits


def validation_logits(run, data: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and gold class ids of the run's validation split (as training made it), or of a labelled ``data`` file."""
    if data is not None:
        from llmos_tf.data.readers import read_labelled_table

        d = run.config.data
        frame = read_labelled_table(data, d.text_column, d.label_column)
        labels = run.labels.encode(frame["label"].tolist(), path=frame.attrs.get("path"), lines=frame["line"].tolist(), names=d.label_names)
        return run_logits(run, frame["text"].tolist()), np.asarray(labels)
    from llmos_tf.data.prepare import prepare_classification_data

    prepared = prepare_classification_data(run.config.data, run.config.seed)
    if not len(prepared.validation):
        raise RunError(f"{run.run_dir}: the run has no validation examples to fit a temperature on; pass --data FILE")
    return run_logits(run, prepared.validation["text"].tolist()), np.asarray(prepared.y_validation)


def calibrate_run(run_dir: str | pathlib.Path, data: str | None = None, bins: int = ECE_BINS) -> dict[str, Any]:
    """Fit ``T`` on validation logits, fold it into the run's head, record it; returns the summary.

    Refused before any write when the run is not a sentence classifier. A run calibrated
    before is calibrated again from its current model (the recorded temperature is the product)."""
    from llmos_tf.model_ref import resolve_model
    from llmos_tf.task_kinds import task_kind
    from llmos_tf.training import artifacts
    from llmos_tf.training.evaluation import figure_to_png

    ref = resolve_model(str(run_dir), flag="--run")
    if ref.is_savedmodel or not task_kind(ref.task).calibrates:
        raise RunError(f"--run {run_dir}: calibrate takes a sentence-classification run folder (an export or a {ref.task} run cannot be refitted)")
    from llmos_tf.tasks.classification import TrainedRun

    run = TrainedRun.load(ref.path)
    head = _head(run.model)
    logits, labels = validation_logits(run, data)
    temperature = fit_temperature(logits, labels)
    summary = calibration_summary(logits, labels, temperature, bins)
    summary["data"] = str(data) if data else "validation split"
    previous = run.info.get("metrics", {}).get("calibration", {}).get("temperature")
    summary["total_temperature"] = float(temperature * previous) if previous else float(temperature)

    run_dir = pathlib.Path(ref.path)
    png = figure_to_png(reliability_figure(softmax(logits), labels, bins, title=f"{run_dir.name}: T = {temperature:.3f}",
                                                 calibrated=softmax(logits, temperature)))
    model_path = run_dir / artifacts.MODEL_FILE
    if not (run_dir / UNCALIBRATED_FILE).exists():  # the model as trained, kept
        shutil.copy2(model_path, run_dir / UNCALIBRATED_FILE)
    head.kernel.assign(head.kernel / temperature)
    head.bias.assign(head.bias / temperature)
    staged = run_dir / "model.calibrating.keras"
    run.model.save(staged)
    os.replace(staged, model_path)  # the run's model changes in one step
    (run_dir / CALIBRATION_PNG).write_bytes(png)
    info = dict(run.info)
    metrics = dict(info.get("metrics", {}))
    metrics["calibration"] = {**summary, "temperature": summary["total_temperature"], "fitted_temperature": float(temperature)}
    info["metrics"] = metrics
    artifacts.write_json_atomic(run_dir / artifacts.RUN_FILE, info)
    summary["reliability_diagram"] = str(run_dir / CALIBRATION_PNG)
    return summary
