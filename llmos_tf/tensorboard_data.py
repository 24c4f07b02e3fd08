"""Reading runs back from their TensorBoard event files (the same data the dashboards show).

A notebook compares runs the way TensorBoard's HParams dashboard does, but as
pandas frames: :func:`hparams_frame` gives one row per run (its hyperparameters
and final validation metrics), :func:`read_history` the per-epoch scalars of one run.

Example::

    hparams_frame("runs")            # architecture, training.learning_rate, ..., val accuracy
    read_history("runs/sample_bilstm")
"""
from __future__ import annotations

import pathlib

import pandas as pd

from llmos_tf.errors import RunError

_FLOAT_DTYPES = (1, 2)  # tensorflow DataType enum: DT_FLOAT, DT_DOUBLE
#: History columns: (event folder, tag prefix to strip, column prefix), Keras-named.
_HISTORY_SOURCES = (("train", "epoch_", ""), ("validation", "epoch_", "val_"))


def _scalars(acc, tag: str) -> dict[int, float]:
    """step → value of a TF2 scalar summary (stored as a tensor); repeated steps keep the last value."""
    from tensorboard.util import tensor_util

    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag) if e.tensor_proto.dtype in _FLOAT_DTYPES}


def read_history(run_dir: str | pathlib.Path) -> pd.DataFrame:
    """Per-epoch scalars from ``<run>/train`` and ``<run>/validation`` event files, named as in Keras'
    history (``loss``, ``val_loss``, ...), index ``epoch`` from 1; a resumed run's repeated epochs keep their last value."""
    from tensorboard.backend.event_processing import event_accumulator

    run_dir = pathlib.Path(run_dir)
    columns: dict[str, dict[int, float]] = {}
    for folder, prefix, column_prefix in _HISTORY_SOURCES:
        path = run_dir / folder
        if not path.is_dir():
            continue
        acc = event_accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.TENSORS: 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            if tag.startswith(prefix):
                values = _scalars(acc, tag)
                if values:
                    columns[column_prefix + tag[len(prefix):]] = values
    if not columns:
        raise RunError(f"{run_dir}: no per-epoch TensorBoard scalars found under train/ or validation/")
    frame = pd.DataFrame(columns).sort_index()
    frame.index = pd.Index(frame.index + 1, name="epoch")  # Keras logs epoch e (0-based) at step e
    return frame


def hparams_frame(logdir: str | pathlib.Path) -> pd.DataFrame:
    """One row per run under ``logdir`` with an HParams session: its hyperparameters and, for every
    metric the run declared (``epoch_accuracy`` in group ``validation``, ...), the last logged value,
    as the HParams dashboard shows it. Columns of metrics are named ``<group> <tag>``."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata

    logdir = pathlib.Path(logdir)
    if not logdir.is_dir():
        raise RunError(f"{logdir}: log folder not found")
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"hparams": 0, "scalars": 0, "": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    rows = []
    for run, tags in sorted(mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items()):
        if metadata.SESSION_START_INFO_TAG not in tags:
            continue
        start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
        row: dict[str, object] = {"run": run}
        for name, value in start.hparams.items():
            kind = value.WhichOneof("kind")
            row[name] = getattr(value, kind) if kind else None
        if metadata.EXPERIMENT_TAG in tags:
            experiment = metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG])
            for info in experiment.metric_infos:
                metric_run = f"{run}/{info.name.group}" if info.name.group else run
                try:
                    values = _scalars(mux.GetAccumulator(metric_run), info.name.tag)
                except KeyError:
                    values = {}
                label = f"{info.name.group} {info.name.tag}".strip()
                row[label] = values[max(values)] if values else None
        rows.append(row)
    if not rows:
        raise RunError(f"{logdir}: no run with TensorBoard hyperparameters (HParams) found")
    return pd.DataFrame(rows).set_index("run")
