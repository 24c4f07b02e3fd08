"""The compression report's renderings and the models.config label writer (no training)."""
from __future__ import annotations

import pathlib

import pytest

from llmos_tf.compression.measure import file_sizes, measure_speed
from llmos_tf.compression.report import CompressionReport, VariantRow, load_report


def _row(variant: str, metric: float, size: int, **kw) -> VariantRow:
    return VariantRow(variant=variant, metric=metric, sparsity=kw.pop("sparsity", 0.0), size_bytes=size, gzip_bytes=size // 2,
                      p50_ms_batch1=kw.pop("p50", 3.0), throughput_batch32=kw.pop("tput", 900.0), **kw)


def test_report_deltas_frame_text_and_round_trip(tmp_path):
    report = CompressionReport(run="runs/x", metric="accuracy", model_name="x")
    report.add(_row("dense", 0.90, 4_000_000))
    report.add(_row("pruned", 0.885, 4_000_000, sparsity=0.8))
    report.add(_row("pruned_dynamic", 0.88, 1_000_000, sparsity=0.8, format="savedmodel+tflite", tflite_bytes=800_000,
                    tflite_gzip_bytes=500_000))
    assert report.row("pruned").delta == pytest.approx(-0.015)
    frame = report.to_frame()
    assert list(frame["variant"]) == ["dense", "pruned", "pruned_dynamic"]
    assert "accuracy" in frame.columns and frame.shape == (3, 16)  # parameters and flops included (None when not measured)
    # both sizes of what a version folder holds: its SavedModel and, when there is one, its model.tflite
    assert frame["tflite_bytes"].tolist()[2] == 800_000 and frame["tflite_gzip_bytes"].isna().tolist() == [True, True, False]
    text = report.to_text()
    assert "pruned_dynamic" in text and "-0.0200" in text and "80.0%" in text
    assert "SavedModel MB" in text and "TFLite gzip MB" in text and "0.80" in text and "0.50" in text
    assert "<table" in report._repr_html_()
    report.save(tmp_path)
    again = load_report(tmp_path / "report.json")
    assert again.to_dict() == report.to_dict()
    assert (tmp_path / "report.md").read_text().count("\n") == 5


def test_report_logs_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    report = CompressionReport(run="runs/x", metric="entity_f1")
    report.add(_row("dense", 0.8, 100))
    report.add(_row("pruned", 0.7, 100, sparsity=0.5))
    report.add(_row("pruned_dynamic", 0.7, 100, sparsity=0.5, tflite_bytes=40, tflite_gzip_bytes=30))
    report.log_to_tensorboard(tmp_path)
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert "compression/report" in tags
    assert "compression/pruned/entity_f1" in tags and "compression/pruned/sparsity" in tags
    assert "compression/pruned/gzip_bytes" in tags and "compression/pruned/tflite_gzip_bytes" not in tags  # no .tflite
    assert {"compression/pruned_dynamic/tflite_bytes", "compression/pruned_dynamic/tflite_gzip_bytes"} <= set(tags)


def test_file_sizes_sees_zeros_compress(tmp_path):
    import numpy as np

    dense = tmp_path / "dense.bin"
    sparse = tmp_path / "sparse.bin"
    rng = np.random.default_rng(0)
    weights = rng.normal(size=100_000).astype("float32")
    dense.write_bytes(weights.tobytes())
    weights[rng.random(weights.shape) < 0.8] = 0.0
    sparse.write_bytes(weights.tobytes())
    a, b = file_sizes(dense), file_sizes(sparse)
    assert a.raw_bytes == b.raw_bytes == 400_000
    assert b.gzip_bytes < 0.5 * a.gzip_bytes


def test_measure_speed_counts_batches():
    calls = []
    speed = measure_speed(lambda texts: calls.append(len(texts)), ["a", "b"], batch1_calls=5, batch32_calls=2, warmup=1)
    assert calls.count(1) == 6 and calls.count(32) == 3
    assert speed.p50_ms_batch1 >= 0 and speed.throughput_batch32 > 0


def test_version_labels_written_to_models_config(tmp_path):
    from llmos_tf.errors import ConfigError
    from llmos_tf.export.model_server_config import set_version_label
    from llmos_tf.serving.model_config import read_config_file

    (tmp_path / "sst2" / "1").mkdir(parents=True)
    path = set_version_label(tmp_path, "sst2", "compressed", 2)
    set_version_label(tmp_path, "sst2", "pruned", 3)
    set_version_label(tmp_path, "ner", "distilled", 1)
    set_version_label(tmp_path, "sst2", "compressed", 3)  # moving a label
    models = {m.name: m for m in read_config_file(path)}
    assert models["sst2"].labels == {"compressed": 3, "pruned": 3}
    assert models["sst2"].policy.kind == "all"
    assert models["sst2"].base_path == tmp_path.resolve() / "sst2"
    assert models["ner"].labels == {"distilled": 1}
    with pytest.raises(ConfigError, match="invalid"):
        set_version_label(tmp_path, "sst2", "bad-label", 1)


def test_version_sizes_split_savedmodel_and_tflite(tmp_path):
    from llmos_tf.compression.pipeline import version_sizes

    version = tmp_path / "3"
    (version / "variables").mkdir(parents=True)
    (version / "assets").mkdir()
    (version / "assets.extra").mkdir()
    (version / "saved_model.pb").write_bytes(b"g" * 100)
    (version / "variables" / "variables.data-00000-of-00001").write_bytes(b"w" * 1000)
    (version / "assets" / "llmos.json").write_bytes(b"{}" * 500)  # not the model: excluded
    (version / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"r" * 700)
    (version / "model.tflite").write_bytes(b"t" * 300)
    savedmodel, tflite = version_sizes(version)
    assert savedmodel.raw_bytes == 1100 and tflite.raw_bytes == 300
    assert 0 < savedmodel.gzip_bytes < 1100 and 0 < tflite.gzip_bytes < 300
    (version / "model.tflite").unlink()
    assert version_sizes(version)[1] is None and version_sizes(version)[0].raw_bytes == 1100
