"""`llmos compress` end to end: variants measured and published as labelled versions (the one labelled
'compressed' last, so it is the highest version), nothing published without --model_base_path, and the
server answers from a version's model.tflite through the same signature (official TF Serving stubs)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from tests.serving.conftest import server_factory, stubs  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def compressed(trained_run, tmp_path_factory):
    from llmos_tf.cli import main

    base = tmp_path_factory.mktemp("compressed_models")
    report_dir = tmp_path_factory.mktemp("compression_report")
    code = main(["compress", "--run", str(trained_run), "--target_sparsity", "0.6", "--epochs", "1", "--quantize", "dynamic",
                 "--model_base_path", str(base), "--name", "tiny", "--max_drop", "0.2", "--report",
                 "--report_dir", str(report_dir)])
    assert code == 0
    return base, report_dir


def test_report_rows_and_labels(compressed):
    base, report_dir = compressed
    report = json.loads((report_dir / "report.json").read_text())
    rows = {r["variant"]: r for r in report["variants"]}
    assert set(rows) == {"dense", "pruned", "pruned_dynamic"}
    assert abs(rows["pruned"]["sparsity"] - 0.6) <= 0.01
    # both sizes of what is published: the SavedModel (version folder minus assets, assets.extra, model.tflite)
    # and the model.tflite beside it (None without one)
    assert rows["dense"]["tflite_bytes"] is None and rows["pruned"]["tflite_gzip_bytes"] is None
    assert 0 < rows["pruned_dynamic"]["tflite_gzip_bytes"] < rows["pruned_dynamic"]["tflite_bytes"] < rows["dense"]["size_bytes"] / 2
    for row in rows.values():
        assert 0 < row["gzip_bytes"] < row["size_bytes"]
        assert 0.0 <= row["metric"] <= 1.0 and row["p50_ms_batch1"] > 0 and row["throughput_batch32"] > 0
        published = base / "tiny" / str(row["version"])
        if row["version"] is not None:  # the figures are those of the published folder
            assert (published / "model.tflite").is_file() == (row["tflite_bytes"] is not None)
            assert row["size_bytes"] == sum(p.stat().st_size for p in published.rglob("*") if p.is_file()
                                            and not {"assets", "assets.extra"} & set(p.relative_to(published).parts)
                                            and p.name != "model.tflite")
    # within --max_drop 0.2, both are published; the one labelled compressed is the highest version
    versions = {name: row["version"] for name, row in rows.items()}
    assert versions["dense"] is None and sorted(v for v in versions.values() if v) == [1, 2]
    chosen = next(name for name, row in rows.items() if row["label"] == "compressed")
    assert versions[chosen] == 2 and report["publishing"][-1].endswith("which unlabelled requests get")
    config = (base / "models.config").read_text()
    assert 'key: "compressed"' in config and 'key: "pruned_dynamic"' in config
    card = json.loads((base / "tiny" / str(versions["pruned_dynamic"]) / "assets" / "llmos.json").read_text())
    assert card["format"] == "savedmodel+tflite" and card["compression"]["method"] == "pruned_dynamic"


def test_server_serves_tflite_version_through_the_same_signature(compressed, server_factory):  # noqa: F811
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

    from llmos_tf._tf import tf

    base, _ = compressed
    server = server_factory(["--model_config_file", str(base / "models.config"), "--prefer_tflite_model"])
    channel, predict, _ = stubs(server.target)
    texts = ["the film was wonderful and lovely", "the plot was awful and dull"]
    answers = {}
    for label in ("pruned", "pruned_dynamic", "compressed"):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tiny"
        request.model_spec.version_label = label
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts))
        response = predict.Predict(request, timeout=30)
        answers[label] = [b.decode() for b in tf.make_ndarray(response.outputs["label"]).tolist()]
        probabilities = tf.make_ndarray(response.outputs["probabilities"])
        assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(-1), 1.0, atol=1e-3)
    assert answers["pruned_dynamic"] == answers["pruned"]
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "tiny"
    request.model_spec.version_label = "pruned_dynamic"
    metadata = predict.GetModelMetadata(request, timeout=30)
    from tensorflow_serving.apis import get_model_metadata_pb2 as md

    sigs = md.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(sigs)
    serving = sigs.signature_def["serving_default"]
    assert set(serving.inputs) == {"text"} and {"label", "probabilities", "class_id"} <= set(serving.outputs)
    channel.close()


def test_quantized_version_serves_without_prefer_flag(compressed):
    """Every published version is a SavedModel the stock server loads; model.tflite is an extra beside it."""
    from llmos_tf.serving.model_config import ModelConfig, VersionPolicy
    from llmos_tf.serving.registry import ModelRegistry, State

    base, report_dir = compressed
    version = next(r["version"] for r in json.loads((report_dir / "report.json").read_text())["variants"] if r["variant"] == "pruned_dynamic")
    registry = ModelRegistry([ModelConfig("tiny", base / "tiny", VersionPolicy("specific", versions=(version,)))])
    registry.sync()
    (status,) = registry.status("tiny")
    assert status.state == State.AVAILABLE, status.error_message
    with registry.acquire("tiny") as servable:
        out = servable.run("serving_default", {"text": np.array([b"the film was wonderful"], dtype=object)})
    assert out["probabilities"].shape == (1, 2)


def test_without_model_base_path_nothing_is_published(trained_run, tmp_path, monkeypatch, capsys):
    from llmos_tf.cli import main

    repo_models = pathlib.Path(__file__).resolve().parents[2] / "saved_models"
    monkeypatch.chdir(tmp_path)
    report_dir = tmp_path / "report"
    assert main(["compress", "--run", str(trained_run), "--target_sparsity", "0.5", "--epochs", "1", "--steps_per_epoch", "3",
                 "--quantize", "none", "--name", "tiny_unpublished", "--report_dir", str(report_dir)]) == 0
    out = capsys.readouterr().out
    assert "nothing published" in out and ("no --model_base_path" in out or "--max_drop" in out)
    report = json.loads((report_dir / "report.json").read_text())
    assert report["model_base_path"] is None and report["publishing"]
    for row in report["variants"]:
        assert row["version"] is None and row["status"] in ("reference", "staged", "held back")
        assert (pathlib.Path(row["staged_path"]) / "saved_model.pb").is_file()
        assert pathlib.Path(row["staged_path"]).is_relative_to(report_dir / "variants")
    assert not list(tmp_path.rglob("models.config")) and not (tmp_path / "saved_models").exists()
    assert not (repo_models / "tiny_unpublished").exists()


def test_compress_help_explains_the_policy(capsys):
    from llmos_tf.cli import main

    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: none, nothing is published" in text and "never published" in text and "highest version" in text
