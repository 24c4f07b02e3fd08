"""`llmos compress` end to end: variants measured and published as labelled versions, and the
server answers from a TFLite-only version through the same signature (official TF Serving stubs)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.serving.conftest import server_factory, stubs  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def compressed(trained_run, tmp_path_factory):
    from llmos_tf.cli import main

    base = tmp_path_factory.mktemp("compressed_models")
    report_dir = tmp_path_factory.mktemp("compression_report")
    code = main(["compress", "--run", str(trained_run), "--target_sparsity", "0.6", "--epochs", "1", "--quantize", "dynamic",
                 "--model_base_path", str(base), "--name", "tiny", "--tflite_only", "--max_drop", "0.2", "--report",
                 "--report_dir", str(report_dir)])
    assert code == 0
    return base, report_dir


def test_report_rows_and_labels(compressed):
    base, report_dir = compressed
    report = json.loads((report_dir / "report.json").read_text())
    rows = {r["variant"]: r for r in report["variants"]}
    assert set(rows) == {"dense", "pruned", "pruned_dynamic"}
    assert abs(rows["pruned"]["sparsity"] - 0.6) <= 0.01
    assert rows["pruned_dynamic"]["format"] == "tflite"
    assert rows["pruned_dynamic"]["size_bytes"] < rows["dense"]["size_bytes"] / 2
    for row in rows.values():
        assert 0.0 <= row["metric"] <= 1.0 and row["p50_ms_batch1"] > 0 and row["throughput_batch32"] > 0
    # published: pruned -> 1, pruned_dynamic -> 2 (TFLite only: no variables in its SavedModel)
    assert (base / "tiny" / "2" / "model.tflite").is_file()
    assert not any((base / "tiny" / "2" / "variables").glob("variables.data*")) or \
        sum(p.stat().st_size for p in (base / "tiny" / "2" / "variables").glob("*")) < 4096
    config = (base / "models.config").read_text()
    assert 'key: "compressed"' in config and 'key: "pruned_dynamic"' in config
    card = json.loads((base / "tiny" / "2" / "assets" / "llmos.json").read_text())
    assert card["format"] == "tflite" and card["compression"]["method"] == "pruned_dynamic"


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


def test_tflite_only_version_without_prefer_flag_fails_clearly(compressed):
    from llmos_tf.serving.registry import ModelRegistry
    from llmos_tf.serving.model_config import ModelConfig, VersionPolicy

    base, _ = compressed
    registry = ModelRegistry([ModelConfig("tiny", base / "tiny", VersionPolicy("specific", versions=(2,)))])
    registry.sync()
    status = registry.status("tiny")
    message = " ".join(s.error_message for s in status)
    assert "--prefer_tflite_model" in message
