"""The notebook API: train with overrides, history/evaluate/predict as DataFrames, export, plots."""
from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
import yaml

import llmos_tf
from llmos_tf import plots
from llmos_tf.errors import ConfigError, DataError, RunError
from tests.conftest import tiny_config_text


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, tiny_data):
    """Trained through ``llmos_tf.train``: the YAML says 1 epoch, the overrides make it 3."""
    root = tmp_path_factory.mktemp("api")
    config = root / "tiny.yaml"
    config.write_text(tiny_config_text(tiny_data["train"], root / "runs", name="api_tiny", epochs=1))
    return llmos_tf.train(config, {"training.epochs": 3, "model.lstm_units": 12}, training__learning_rate=0.02, data__test=str(tiny_data["test"]))


def test_train_applies_overrides_and_returns_history(api_run):
    assert api_run.info["epochs_run"] == 3
    cfg = api_run.config
    assert (cfg.training.epochs, cfg.model["lstm_units"], cfg.training.learning_rate) == (3, 12, 0.02)
    history = api_run.history
    assert isinstance(history, pd.DataFrame)
    assert history.shape[0] == 3 and list(history.index) == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1"} <= set(history.columns)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]


def test_loaded_history_matches_the_fit_history(api_run):
    """A run loaded later reads the same per-epoch figures back from its TensorBoard event files."""
    fresh = llmos_tf.load_run(api_run.run_dir).history
    fit = api_run.history
    for column in ("loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1"):
        np.testing.assert_allclose(fresh[column].to_numpy(), fit[column].to_numpy(), rtol=1e-5, err_msg=column)


def test_evaluate_predict_and_html(api_run, tiny_data):
    ev = api_run.evaluate(tiny_data["test"])
    assert isinstance(ev, llmos_tf.Evaluation)
    assert ev["examples"] == 60 and 0.7 <= ev["accuracy"] <= 1.0
    assert ev.per_class.shape == (2, 4) and set(ev.per_class.index) == {"negative", "positive"}
    assert ev.confusion.to_numpy().sum() == 60
    page = ev._repr_html_()
    assert page.count("<table") == 2 and "macro_f1" in page and "positive" in page
    # the same figures from a DataFrame (a notebook's pandas data)
    frame = pd.read_csv(tiny_data["test"])
    assert api_run.evaluate(frame)["accuracy"] == pytest.approx(ev["accuracy"])

    pred = api_run.predict(["the film was great and wonderful", "the plot was dull and boring", "the cast was lovely"])
    assert pred.shape == (3, 3) and list(pred.columns) == ["text", "label", "probability"]
    assert list(pred["label"][:2]) == ["positive", "negative"]
    assert ((pred["probability"] >= 0.5) & (pred["probability"] <= 1.0)).all()
    assert "test accuracy" in api_run._repr_html_()


def test_evaluate_frame_without_columns_is_a_clear_error(api_run):
    with pytest.raises(ConfigError, match="text column"):
        api_run.evaluate(pd.DataFrame({"review": ["x"], "stars": [1]}))


def test_export_writes_a_version_folder(api_run, tmp_path):
    version_dir = api_run.export(tmp_path / "saved_models", "api_tiny")
    assert version_dir == tmp_path / "saved_models" / "api_tiny" / "1"
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "assets" / "labels.txt").is_file()


def test_config_errors_name_the_key(tiny_data, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config_text(tiny_data["train"], tmp_path / "runs"))
    with pytest.raises(ConfigError, match="training.epoch'"):
        llmos_tf.train(config, training__epoch=2)
    with pytest.raises(ConfigError, match="training.batch_size: expected an integer"):
        llmos_tf.resolve_config(config, {"training.batch_size": "many"})
    with pytest.raises(ConfigError, match="expected a mapping"):
        llmos_tf.resolve_config(config, ["training.epochs=2"])
    # a mapping config with a dict of dotted overrides is validated the same way
    values = yaml.safe_load(config.read_text())
    assert llmos_tf.resolve_config(values, {"data.bucket_boundaries": [4, 8]}).data.bucket_boundaries == [4, 8]
    assert not (tmp_path / "runs").exists()  # nothing was written for a bad config


def test_load_run_refuses_missing_or_unfinished(tmp_path):
    with pytest.raises(RunError, match="run folder not found"):
        llmos_tf.load_run(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(RunError, match="not a finished run"):
        llmos_tf.load_run(tmp_path / "half")


def test_plots(api_run):
    history = api_run.history
    fig = plots.training_curves(history)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy", "macro_f1"]
    loss_lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(loss_lines["validation"], history["val_loss"].to_numpy())
    with pytest.raises(DataError, match="no column 'bleu'"):
        plots.training_curves(history, ["bleu"])

    ev = {"labels": ["a", "b"], "confusion_matrix": [[3, 1], [0, 4]]}
    fig = plots.confusion_matrix(ev, normalize=True)
    assert np.allclose(fig.axes[0].images[0].get_array(), [[0.75, 0.25], [0.0, 1.0]])
    with pytest.raises(DataError, match="confusion_matrix"):
        plots.confusion_matrix({"entity_f1": 0.5})

    fig = plots.compare_runs([api_run, str(api_run.run_dir)], "accuracy")
    assert [round(p.get_height(), 6) for p in fig.axes[0].patches] == [round(api_run.metrics["validation"]["accuracy"], 6)] * 2


def test_compression_tradeoff_plot_reads_the_report():
    from llmos_tf.compression.report import CompressionReport, VariantRow

    report = CompressionReport(run="runs/x", metric="accuracy")
    report.add(VariantRow("dense", metric=0.90, sparsity=0.0, size_bytes=4_000_000, gzip_bytes=3_600_000, p50_ms_batch1=4.0, throughput_batch32=900))
    report.add(VariantRow("pruned_dynamic", metric=0.88, sparsity=0.8, size_bytes=1_000_000, gzip_bytes=400_000, p50_ms_batch1=2.0, throughput_batch32=1500, format="tflite"))
    fig = plots.compression_tradeoff(report)
    size_ax, latency_ax = fig.axes
    np.testing.assert_allclose(size_ax.collections[0].get_offsets(), [[3.6, 0.90], [0.4, 0.88]])
    np.testing.assert_allclose(latency_ax.collections[0].get_offsets(), [[4.0, 0.90], [2.0, 0.88]])
    assert [t.get_text() for t in size_ax.texts] == ["dense", "pruned_dynamic"]
    with pytest.raises(DataError, match="lacks column"):
        plots.compression_tradeoff(pd.DataFrame({"variant": ["dense"]}))


def test_package_exports_are_lazy():
    import subprocess
    import sys

    code = "import sys, llmos_tf; assert 'tensorflow' not in sys.modules; llmos_tf.train; assert callable(llmos_tf.load_run); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=pathlib.Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-2000:]


def test_hparams_frame_compares_runs(api_run, trained_run, tmp_path):
    import shutil

    logdir = tmp_path / "logs"
    logdir.mkdir()
    shutil.copytree(api_run.run_dir, logdir / "api_tiny")
    shutil.copytree(trained_run, logdir / "tiny")
    frame = llmos_tf.hparams_frame(logdir)
    assert list(frame.index) == ["api_tiny", "tiny"]
    assert list(frame["training.learning_rate"]) == pytest.approx([0.02, 0.01])
    assert list(frame["model.lstm_units"]) == [12, 16] and set(frame["architecture"]) == {"bilstm"}
    assert frame.loc["api_tiny", "validation epoch_accuracy"] == pytest.approx(api_run.history["val_accuracy"].iloc[-1])
    with pytest.raises(RunError, match="no run with TensorBoard hyperparameters"):
        llmos_tf.hparams_frame(tmp_path / "runs_empty" if (tmp_path / "runs_empty").mkdir() is None else None)


def test_entities_html():
    frame = pd.DataFrame({
        "tokens": [["Anna", "Berg", "visited", "Oslo", "<now>"]],
        "entities": [[{"type": "PER", "text": "Anna Berg", "start": 0, "end": 2}, {"type": "LOC", "text": "Oslo", "start": 3, "end": 4}]],
    })
    page = llmos_tf.entities_html(frame)._repr_html_()
    assert page.count("<mark") == 2 and 'data-type="PER"' in page and ">Anna Berg<" in page
    assert "&lt;now&gt;" in page  # tokens are escaped
    with pytest.raises(DataError, match="tokens and entities"):
        llmos_tf.entities_html(pd.DataFrame({"text": ["x"]}))
