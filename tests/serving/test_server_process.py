"""A real ``python -m llmos_tf.serving`` process, spoken to with TF Serving's official stubs and REST."""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from llmos_tf._tf import tf
from llmos_tf.serving.client import RestClient
from tests.serving import fixtures as fx
from tests.serving.conftest import stubs

POLL = 0.5
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    fx.add_version(root / "clf", "classifier", 1)
    fx.add_version(root / "tagger", "tagger", 1)
    fx.add_version(root / "hot", "classifier", 1)
    fx.add_version(root / "fragile", "classifier", 1)
    (root / "fragile" / ".tmp-9").mkdir()  # being written: ignored
    (root / "fragile" / "tmp7").mkdir()
    return root


@pytest.fixture(scope="module")
def server(server_factory, base):
    return server_factory(["--model_base_path", str(base), "--file_system_poll_wait_seconds", str(POLL), "--max_instances_per_request", "50", "--max_request_bytes", "100000"])


@pytest.fixture(scope="module")
def api(server):
    channel, prediction, models = stubs(server.target)
    yield prediction, models
    channel.close()


@pytest.fixture(scope="module")
def rest(server):
    return RestClient(server.rest_url, timeout=20)


def predict_request(model, texts=None, version=None, label=None, signature="", inputs=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    request.model_spec.signature_name = signature
    for name, proto in (inputs if inputs is not None else {"text": tf.make_tensor_proto(texts, dtype=tf.string)}).items():
        request.inputs[name].CopyFrom(proto)
    return request


def assert_serving(api):
    """The server still answers after an error."""
    response = api[0].Predict(predict_request("clf", ["good"]), timeout=10)
    assert tf.make_ndarray(response.outputs["class_id"]).tolist() == [1]


def test_ready_line_lists_models(server):
    models = server.ready["models"]
    assert models["clf"]["versions"] == {"1": "AVAILABLE"} and models["tagger"]["versions"] == {"1": "AVAILABLE"}
    assert models["fragile"]["versions"] == {"1": "AVAILABLE"}  # .tmp-9 and tmp7 ignored


def test_predict_classifier(api):
    texts = ["a good film", "dull"]
    response = api[0].Predict(predict_request("clf", texts), timeout=10)
    assert response.model_spec.name == "clf" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    assert probabilities.dtype == np.float32 and probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities[:, 1], [fx.expected_positive(t, 1) for t in texts], rtol=1e-5)
    assert tf.make_ndarray(response.outputs["label"]).tolist() == [b"positive", b"negative"]
    class_id = tf.make_ndarray(response.outputs["class_id"])
    assert class_id.dtype == np.int64 and class_id.tolist() == [1, 0]


def test_predict_tagger(api):
    texts = ["John lives in Paris", "hello there"]
    response = api[0].Predict(predict_request("tagger", texts), timeout=10)
    tags = tf.make_ndarray(response.outputs["tags"])
    counts = tf.make_ndarray(response.outputs["token_count"])
    assert counts.dtype == np.int32 and counts.tolist() == [4, 2]
    assert tags.shape == (2, 4)
    assert [t.decode() for t in tags[0]] == fx.expected_tags(texts[0], 1)
    assert [t.decode() for t in tags[1]] == ["O", "O", "", ""]


@pytest.mark.parametrize("model,outputs", [("clf", {"probabilities", "label", "class_id"}), ("tagger", {"tags", "token_count"})])
def test_metadata_and_status(api, model, outputs):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model
    response = api[0].GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    assert set(default.inputs) == {"text"} and default.inputs["text"].dtype == tf.string.as_datatype_enum
    assert set(default.outputs) == outputs
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = model
    status = api[1].GetModelStatus(status_request, timeout=10)
    assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == [(1, AVAILABLE, 0)]


def test_classify_api(api):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "clf"
    example = request.input.example_list.examples.add()
    example.features.feature["text"].bytes_list.value.append(b"so good")
    response = api[0].Classify(request, timeout=10)
    classes = response.result.classifications[0].classes
    assert [c.label for c in classes] == ["negative", "positive"]
    assert classes[1].score == pytest.approx(fx.expected_positive("so good", 1), rel=1e-5)


def test_rest_row_and_columnar(rest):
    status, body = rest.request("POST", "/v1/models/clf:predict", {"instances": ["good", {"b64": "YmFk"}]})
    assert status == 200, body
    assert [p["label"] for p in body["predictions"]] == ["positive", "negative"]
    assert body["predictions"][0]["probabilities"] == [pytest.approx(0.19), pytest.approx(0.81)]
    status, body = rest.request("POST", "/v1/models/clf/versions/1:predict", {"instances": [{"text": "good"}]})
    assert status == 200 and body["predictions"][0]["class_id"] == 1
    status, body = rest.request("POST", "/v1/models/tagger:predict", {"inputs": {"text": ["Anna sings", "x"]}})
    assert status == 200, body
    assert body["outputs"] == {"tags": [["ENT1", "O"], ["O", ""]], "token_count": [2, 1]}
    status, body = rest.request("POST", "/v1/models/tagger:predict", {"signature_name": "serving_default", "inputs": ["Bo"]})
    assert status == 200 and body["outputs"]["tags"] == [["ENT1"]]
    status, body = rest.request("POST", "/v1/models/clf:classify", {"examples": [{"text": "good"}]})
    assert status == 200 and body["results"][0][1][0] == "positive"


def test_rest_status_and_metadata(rest):
    status, body = rest.request("GET", "/v1/models/clf")
    assert status == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    status, body = rest.request("GET", "/v1/models/tagger/versions/1/metadata")
    assert status == 200
    assert body["model_spec"]["name"] == "tagger" and body["model_spec"]["version"] == "1"
    assert set(body["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]) == {"tags", "token_count"}


@pytest.mark.parametrize(
    "path,body,code,fragment",
    [
        ("/v1/models/nope:predict", {"instances": ["x"]}, 404, "nope"),
        ("/v1/models/clf/versions/7:predict", {"instances": ["x"]}, 404, "7"),
        ("/v1/models/clf/labels/stable:predict", {"instances": ["x"]}, 404, "stable"),
        ("/v1/models/clf:predict", "{not json", 400, "malformed JSON"),
        ("/v1/models/clf:predict", {"instances": [{"sentence": "x"}]}, 400, "text: string [None]"),
        ("/v1/models/clf:predict", {"instances": []}, 400, "non-empty"),
        ("/v1/models/clf:predict", {"instances": ["x"] * 51}, 400, "at most 50"),
        ("/v1/models/clf:predict", {"instances": ["x" * 200000]}, 413, "max_request_bytes"),
        ("/v1/models/clf:predict", {"instances": [{"b64": "/w=="}]}, 400, "UTF-8"),
        ("/v1/models/clf/nothing", None, 404, "Malformed"),
    ],
)
def test_rest_errors(rest, api, path, body, code, fragment):
    status, answer = rest.request("POST" if body is not None else "GET", path, body)
    assert status == code, answer
    assert fragment in answer["error"]
    assert_serving(api)


def _bad_requests():
    ok = tf.make_tensor_proto(["fine"], dtype=tf.string)
    return [
        ("unknown model", predict_request("nope", ["x"]), grpc.StatusCode.NOT_FOUND, "nope"),
        ("unknown version", predict_request("clf", ["x"], version=42), grpc.StatusCode.NOT_FOUND, "42"),
        ("unknown label", predict_request("clf", ["x"], label="canary"), grpc.StatusCode.NOT_FOUND, "canary"),
        ("wrong input name", predict_request("clf", inputs={"sentence": ok}), grpc.StatusCode.INVALID_ARGUMENT, "text: string [None]"),
        ("wrong dtype", predict_request("clf", inputs={"text": tf.make_tensor_proto([1, 2], dtype=tf.int32)}), grpc.StatusCode.INVALID_ARGUMENT, "text: string [None]"),
        ("wrong shape", predict_request("clf", inputs={"text": tf.make_tensor_proto([["a", "b"]], dtype=tf.string)}), grpc.StatusCode.INVALID_ARGUMENT, "shape [1, 2]"),
        ("empty request", predict_request("clf", inputs={}), grpc.StatusCode.INVALID_ARGUMENT, "no inputs"),
        ("empty batch", predict_request("clf", []), grpc.StatusCode.INVALID_ARGUMENT, "empty batch"),
        ("not utf-8", predict_request("clf", inputs={"text": tf.make_tensor_proto([b"ok", b"\xff\xfe"], dtype=tf.string)}), grpc.StatusCode.INVALID_ARGUMENT, "UTF-8"),
        ("too many instances", predict_request("clf", ["x"] * 51), grpc.StatusCode.INVALID_ARGUMENT, "at most 50"),
        ("over size limit", predict_request("clf", ["x" * 200000]), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
        ("unknown signature", predict_request("clf", ["x"], signature="nope"), grpc.StatusCode.FAILED_PRECONDITION, "serving_default"),
    ]


@pytest.mark.parametrize("name,request_,code,fragment", _bad_requests(), ids=[c[0] for c in _bad_requests()])
def test_grpc_errors(api, name, request_, code, fragment):
    with pytest.raises(grpc.RpcError) as info:
        api[0].Predict(request_, timeout=10)
    assert info.value.code() == code, info.value.details()
    assert fragment in info.value.details()
    assert_serving(api)


def test_status_and_metadata_not_found(api):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        api[1].GetModelStatus(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "clf"
    request.model_spec.version.value = 3
    with pytest.raises(grpc.RpcError) as info:
        api[0].GetModelMetadata(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert_serving(api)


def _status(api, model):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return {s.version: s for s in api[1].GetModelStatus(request, timeout=10).model_version_status}


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


def test_corrupt_versions_are_reported_and_ignored(api, base):
    fx.add_corrupt_version(base / "fragile", 2, how="no-variables")
    fx.add_corrupt_version(base / "fragile", 3, how="garbage")
    statuses = wait_for(lambda: (lambda s: s if 2 in s and 3 in s and s[2].state == END and s[3].state == END else None)(_status(api, "fragile")), 30)
    assert statuses[2].status.error_code != 0 and "variables" in statuses[2].status.error_message.lower()
    assert statuses[3].status.error_code != 0 and statuses[3].status.error_message
    assert statuses[1].state == AVAILABLE
    time.sleep(3 * POLL)  # later polls do not retry or unload anything
    response = api[0].Predict(predict_request("fragile", ["good"]), timeout=10)
    assert response.model_spec.version.value == 1
    assert _status(api, "fragile")[1].state == AVAILABLE


def test_new_version_without_failed_requests(api, base):
    results: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                response = api[0].Predict(predict_request("hot", ["good"]), timeout=10)
                results.append(response.model_spec.version.value)
            except grpc.RpcError as err:  # pragma: no cover - the assertion below reports it
                failures.append(f"{err.code()}: {err.details()}")

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) > 10, 20)
        published = time.monotonic()
        fx.add_version(base / "hot", "classifier", 2)
        wait_for(lambda: results and results[-1] == 2, 20, step=0.02)
        switched = time.monotonic() - published
        count = len(results)
        wait_for(lambda: len(results) > count + 10, 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
    assert not failures, failures[:3]
    assert switched < POLL + 10, switched
    assert results[0] == 1 and results[-1] == 2
    statuses = wait_for(lambda: (lambda s: s if s[1].state == END else None)(_status(api, "hot")), 10)
    assert statuses[2].state == AVAILABLE


def test_metrics_endpoint(rest):
    status, text = rest.request("GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert ':tensorflow:serving:request_count{model_name="clf",version="1",API="predict",entrypoint="GRPC",status="OK"}' in text
    assert 'status="NOT_FOUND"' in text and 'status="INVALID_ARGUMENT"' in text
    assert ":tensorflow:serving:request_latency_bucket{" in text and ":tensorflow:serving:runtime_latency_count{" in text
