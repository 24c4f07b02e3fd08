"""A real `llmos export` served by a real `llmos serve` process, queried with the official stubs."""
import json
import signal
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from llmos_tf._tf import tf
from llmos_tf.export.writer import export_run
from llmos_tf.serving.demo import start_server
from llmos_tf.tasks.classification import TrainedRun

TEXTS = ["the film was wonderful and lovely", "the plot was awful and dull"]


@pytest.fixture(scope="module")
def served(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    export_run(trained_run, base, "tiny")
    proc, ready = start_server(str(base))
    yield ready, trained_run
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_grpc_predict_with_official_stub(served):
    ready, run_dir = served
    channel = grpc.insecure_channel(f"127.0.0.1:{ready['grpc_port']}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="tiny", signature_name="serving_default"))
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS, dtype=tf.string))
    response = stub.Predict(request, timeout=30)
    probs = tf.make_ndarray(response.outputs["probabilities"])
    np.testing.assert_allclose(probs, TrainedRun.load(run_dir).predict_proba(TEXTS), atol=1e-5)
    assert [x.decode() for x in tf.make_ndarray(response.outputs["label"])] == ["positive", "negative"]
    assert tf.make_ndarray(response.outputs["class_id"]).tolist() == [1, 0]
    assert response.model_spec.version.value == 1


def test_rest_predict_both_forms(served):
    ready, _ = served
    url = f"http://127.0.0.1:{ready['rest_port']}/v1/models/tiny:predict"
    for body, key in (({"instances": TEXTS}, "predictions"), ({"inputs": {"text": TEXTS}}, "outputs")):
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            result = json.loads(resp.read())
        labels = [row["label"] for row in result[key]] if key == "predictions" else result[key]["label"]
        assert labels == ["positive", "negative"]


def test_llmos_predict_against_the_server(served, capsys):
    from llmos_tf.cli import main

    ready, _ = served
    assert main(["predict", "--server", f"127.0.0.1:{ready['grpc_port']}", "--model", "tiny", "--json", *TEXTS]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert main(["predict", "--server", f"127.0.0.1:{ready['grpc_port']}", "--model", "nope", "x"]) == 2
    assert "nope" in capsys.readouterr().err
