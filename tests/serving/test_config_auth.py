"""A model config file with two models, version policies and labels, behind a bearer token."""
from __future__ import annotations

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, predict_pb2
from tensorflow_serving.config import model_server_config_pb2
from google.protobuf import text_format

from llmos_tf._tf import tf
from llmos_tf.serving.client import Client, RestClient
from llmos_tf.serving.errors import ServingError
from tests.serving import fixtures as fx
from tests.serving.conftest import stubs

TOKEN = "s3cret-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)

CONFIG = """
model_config_list {
  config {
    name: "sentiment"
    base_path: "models/clf"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "ner" base_path: "models/tagger" }
}
"""


@pytest.fixture(scope="module")
def server(server_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("config")
    for version in (1, 2, 3):
        fx.add_version(root / "models" / "clf", "classifier", version)
    fx.add_version(root / "models" / "tagger", "tagger", 1)
    (root / "models.config").write_text(CONFIG)
    (root / "token").write_text(TOKEN + "\n")
    server = server_factory(["--model_config_file", str(root / "models.config"), "--auth_token_file", str(root / "token"), "--file_system_poll_wait_seconds", "0"])
    server.root = root
    return server


@pytest.fixture(scope="module")
def api(server):
    channel, prediction, models = stubs(server.target)
    yield prediction, models
    channel.close()


def request(model, label=None, version=None):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    if label:
        r.model_spec.version_label = label
    if version is not None:
        r.model_spec.version.value = version
    r.inputs["text"].CopyFrom(tf.make_tensor_proto(["good"], dtype=tf.string))
    return r


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)])
def test_grpc_rejects_missing_or_wrong_token(api, metadata):
    with pytest.raises(grpc.RpcError) as info:
        api[0].Predict(request("sentiment"), timeout=10, metadata=metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "sentiment"
    with pytest.raises(grpc.RpcError) as info:
        api[1].GetModelStatus(status, timeout=10, metadata=metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("token", [None, "wrong"])
def test_rest_rejects_missing_or_wrong_token(server, token):
    status, body = RestClient(server.rest_url, token=token).request("POST", "/v1/models/sentiment:predict", {"instances": ["good"]})
    assert status == 401 and "token" in body["error"]
    status, _ = RestClient(server.rest_url, token=token).request("GET", "/monitoring/prometheus/metrics")
    assert status == 401


def test_two_models_and_specific_policy(server):
    client = Client(server.target, token=TOKEN, timeout=10)
    assert [(s["version"], s["state"]) for s in client.status("sentiment")] == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    assert client.predict("ner", ["Ada codes"])["tags"].tolist() == [[b"ENT1", b"O"]]
    out = client.predict("sentiment", ["good"])
    assert float(out["probabilities"][0, 1]) == pytest.approx(fx.expected_positive("good", 2), rel=1e-5)
    with pytest.raises(ServingError) as info:
        client.predict("sentiment", ["good"], version=3)  # on disk but not in the policy
    assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_version_labels(api, server):
    for label, version in (("stable", 1), ("canary", 2)):
        response = api[0].Predict(request("sentiment", label=label), timeout=10, metadata=AUTH)
        assert response.model_spec.version.value == version
        positive = tf.make_ndarray(response.outputs["probabilities"])[0, 1]
        assert positive == pytest.approx(fx.expected_positive("good", version), rel=1e-5)
    with pytest.raises(grpc.RpcError) as info:
        api[0].Predict(request("sentiment", label="beta"), timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        api[0].Predict(request("sentiment", label="bad-label!"), timeout=10, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    rest = RestClient(server.rest_url, token=TOKEN)
    status, body = rest.request("POST", "/v1/models/sentiment/labels/stable:predict", {"instances": ["good"]})
    assert status == 200 and body["predictions"][0]["probabilities"][1] == pytest.approx(0.81)
    status, body = rest.request("GET", "/v1/models/sentiment/labels/canary")
    assert status == 200 and body["model_version_status"][0]["version"] == "2"


def test_reload_config_moves_labels(api, server):
    config = text_format.Parse(CONFIG.replace("models/", str(server.root / "models") + "/"), model_server_config_pb2.ModelServerConfig())
    sentiment = config.model_config_list.config[0]
    sentiment.model_version_policy.specific.versions.append(3)
    sentiment.version_labels["stable"] = 3
    api[1].HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=60, metadata=AUTH)
    response = api[0].Predict(request("sentiment", label="stable"), timeout=10, metadata=AUTH)
    assert response.model_spec.version.value == 3
    bad = model_server_config_pb2.ModelServerConfig()
    bad.CopyFrom(config)
    bad.model_config_list.config[0].version_labels["ghost"] = 9
    with pytest.raises(grpc.RpcError) as info:
        api[1].HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=bad), timeout=60, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "ghost" in info.value.details()
    response = api[0].Predict(request("ner"), timeout=10, metadata=AUTH)
    assert tf.make_ndarray(response.outputs["token_count"]).tolist() == [1]
