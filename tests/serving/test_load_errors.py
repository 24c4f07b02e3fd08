"""A version that fails to load tells the client why (issue #14): NOT_FOUND details (gRPC), the 404
body (REST) and GetModelStatus carry the load error, not only the server log."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from llmos_tf._tf import tf
from llmos_tf.serving.client import RestClient
from llmos_tf.serving.errors import ServingError
from llmos_tf.serving.model_config import ModelConfig
from llmos_tf.serving.registry import ModelRegistry
from tests.serving import fixtures as fx
from tests.serving.conftest import server_factory, stubs  # noqa: F401  (fixture)

END = get_model_status_pb2.ModelVersionStatus.State.END
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE


def test_registry_not_found_names_the_load_error(tmp_path):
    fx.add_corrupt_version(tmp_path / "broken", 2, how="garbage")
    fx.add_version(tmp_path / "mixed", "classifier", 1)
    fx.add_corrupt_version(tmp_path / "mixed", 3, how="no-variables")
    registry = ModelRegistry([ModelConfig("broken", tmp_path / "broken"), ModelConfig("mixed", tmp_path / "mixed")])
    registry.sync()
    (status,) = registry.status("broken")
    assert status.state == END and status.error_code != 0 and status.load_error
    with pytest.raises(ServingError) as info:
        registry.acquire("broken")
    message = info.value.message
    assert info.value.http_status == 404
    assert message.startswith("Servable not found for request: Latest(broken); version 2 failed to load: ")
    assert status.load_error in message and "\n" not in message
    # the latest policy aspires version 3 first; until the next poll falls back to 1, clients learn why
    with pytest.raises(ServingError, match=r"Latest\(mixed\); version 3 failed to load: FileNotFoundError: .*variables"):
        registry.acquire("mixed")
    registry.sync()
    # the healthy older version now answers unlabelled requests; asking for the broken one names its error
    with registry.acquire("mixed") as servable:
        assert servable.version == 1
    with pytest.raises(ServingError) as info:
        registry.acquire("mixed", version=3)
    assert "version 3 failed to load:" in info.value.message and "variables" in info.value.message.lower()
    assert "available versions: [1]" in info.value.message


def test_registry_not_found_without_any_version_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    registry = ModelRegistry([ModelConfig("empty", tmp_path / "empty")])
    registry.sync()
    with pytest.raises(ServingError, match=r"Latest\(empty\); no version is available \(no loadable version folder"):
        registry.acquire("empty")


@pytest.fixture(scope="module")
def broken_server(server_factory, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("broken_models")
    fx.add_corrupt_version(base / "broken", 2, how="garbage")  # a saved_model.pb that is not a protobuf
    fx.add_version(base / "clf", "classifier", 1)
    server = server_factory(["--model_base_path", str(base), "--file_system_poll_wait_seconds", "0"])
    channel, prediction, models = stubs(server.target)
    yield server, prediction, models
    channel.close()


def _load_error(models) -> str:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "broken"
    (status,) = models.GetModelStatus(request, timeout=10).model_version_status
    assert status.version == 2 and status.state == END
    assert status.status.error_code != 0 and "version 2" in status.status.error_message
    return status.status.error_message


def test_server_starts_and_status_carries_the_error(broken_server):
    server, prediction, models = broken_server
    assert server.ready["models"]["broken"]["versions"] == {"2": "END"}
    assert _load_error(models)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "clf"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(["good"], dtype=tf.string))
    assert tf.make_ndarray(prediction.Predict(request, timeout=10).outputs["class_id"]).tolist() == [1]


def test_grpc_predict_classify_metadata_not_found_carry_the_load_error(broken_server):
    _, prediction, models = broken_server
    error = _load_error(models)
    cause = error.split(": ", 1)[1].split(":")[0]  # the exception type, e.g. "OSError"
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "broken"
    predict.inputs["text"].CopyFrom(tf.make_tensor_proto(["good"], dtype=tf.string))
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "broken"
    example = classify.input.example_list.examples.add()
    example.features.feature["text"].bytes_list.value.append(b"good")
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "broken"
    for call, request in ((prediction.Predict, predict), (prediction.Classify, classify), (prediction.GetModelMetadata, metadata)):
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        details = info.value.details()
        assert details.startswith("Servable not found for request: Latest(broken); version 2 failed to load: "), details
        assert cause and cause in details


def test_rest_404_body_carries_the_load_error(broken_server):
    server, _, models = broken_server
    cause = _load_error(models).split(": ", 1)[1].split(":")[0]
    rest = RestClient(server.rest_url, timeout=10)
    for method, path, body in (("POST", "/v1/models/broken:predict", {"instances": ["good"]}),
                               ("GET", "/v1/models/broken/metadata", None)):
        status, answer = rest.request(method, path, body)
        assert status == 404, answer
        assert answer["error"].startswith("Servable not found for request: Latest(broken); version 2 failed to load: ")
        assert cause in answer["error"]
    status, answer = rest.request("GET", "/v1/models/broken", None)
    assert status == 200
    (version,) = answer["model_version_status"]
    assert version["state"] == "END" and "version 2" in version["status"]["error_message"]
    assert np.isclose(float(rest.request("POST", "/v1/models/clf:predict", {"instances": ["good"]})[1]["predictions"][0]["probabilities"][1]), 0.81)
