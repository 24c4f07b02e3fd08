"""The `explain` signature: in every classifier export (float, int8 + fused BiLSTM, BERT int8), loaded in a
subprocess with only tensorflow + tensorflow_text, and answered by a real server over gRPC (official stub) and REST;
occlusion against the same server."""
import json
import subprocess
import sys
import textwrap
import urllib.request

import numpy as np
import pytest
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from llmos_tf._tf import tf
from tests.serving.conftest import server_factory  # noqa: F401  (the fixture)

TEXTS = ["the film was wonderful and lovely", "the plot was awful and dull"]

SUBPROCESS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf, tensorflow_text  # noqa: F401  (nothing else: the stock server's view)
    out = {}
    for path in sys.argv[1:]:
        m = tf.saved_model.load(path)
        r = m.signatures["explain"](text=tf.constant(%r))
        out[path] = {"tokens": [[t.decode() for t in row if t] for row in r["tokens"].numpy()],
                     "attributions": r["attributions"].numpy().tolist(), "label": [x.decode() for x in r["label"].numpy()],
                     "probability": r["probability"].numpy().tolist(), "signatures": sorted(m.signatures)}
    print(json.dumps(out))
    """
) % (TEXTS,)


@pytest.fixture(scope="module")
def exported(trained_run, tiny_bert_run, tmp_path_factory):
    from llmos_tf.export.writer import export_model, export_run
    from llmos_tf.tasks.classification import TrainedRun

    base = tmp_path_factory.mktemp("explain_exports")
    export_run(trained_run, base, "tiny")
    export_model(TrainedRun.load(trained_run), None, base, "tiny_int8", weights="int8")  # int8 kernels, fused BiLSTM loop
    export_model(TrainedRun.load(tiny_bert_run), None, base, "bert_int8", weights="int8")
    _save_keyword_models(base)
    return base


def _save_keyword_models(base):
    """Two SavedModels written with plain TF, no `explain` signature (someone else's models): a keyword sentiment
    classifier (``probabilities``, ``label``, ``class_id``) and a tagger whose ``serving_default`` gives only tags."""
    labels = tf.constant(["negative", "positive"])
    spec = tf.TensorSpec([None], tf.string, name="text")

    class Keywords(tf.Module):
        @tf.function(input_signature=[spec])
        def classify(self, text):
            words = tf.strings.split(tf.strings.lower(text))

            def count(pattern):  # keyword words per text
                found = tf.ragged.map_flat_values(tf.strings.regex_full_match, words, pattern)
                return tf.reduce_sum(tf.cast(found, tf.float32), axis=1)

            score = count("wonderful|lovely") - count("awful|dull")
            probabilities = tf.nn.softmax(tf.stack([-score, score], axis=1))
            class_id = tf.argmax(probabilities, axis=1)
            return {"probabilities": probabilities, "label": tf.gather(labels, class_id), "class_id": class_id}

        @tf.function(input_signature=[spec])
        def tag(self, text):
            words = tf.strings.split(text)
            return {"tags": tf.fill(tf.shape(words.to_tensor()), "O"), "token_count": tf.cast(words.row_lengths(), tf.int32)}

    module = Keywords()
    tf.saved_model.save(module, str(base / "keywords" / "1"), signatures={"serving_default": module.classify})
    tf.saved_model.save(module, str(base / "keyword_tagger" / "1"), signatures={"serving_default": module.tag})


def test_explain_loads_with_only_tensorflow_and_text(exported, trained_run):
    from llmos_tf.explain.explanations import explain_run
    from llmos_tf.tasks.classification import TrainedRun

    paths = [str(exported / name / "1") for name in ("tiny", "tiny_int8", "bert_int8")]
    done = subprocess.run([sys.executable, "-c", SUBPROCESS, *paths], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = explain_run(TrainedRun.load(trained_run), TEXTS)
    for path in paths:
        answer = out[path]
        assert "explain" in answer["signatures"] and "serving_default" in answer["signatures"]
        assert answer["tokens"] == [t.split() for t in TEXTS]
        assert answer["label"] == ["positive", "negative"]
    # the float export gives the run's own attributions; int8 weights stay close
    for path, atol in ((paths[0], 1e-4), (paths[1], 0.02)):
        for row, scores in zip(expected.itertuples(), out[path]["attributions"]):
            np.testing.assert_allclose(scores[: len(row.attributions)], row.attributions, atol=atol)


@pytest.fixture(scope="module")
def server(exported, server_factory):  # noqa: F811
    return server_factory(["--model_base_path", str(exported), "--file_system_poll_wait_seconds", "0"])


@pytest.mark.parametrize("name", ["tiny", "tiny_int8"])
def test_explain_over_grpc_with_the_official_stub(server, name):
    import grpc

    channel = grpc.insecure_channel(server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name="explain"))
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS, dtype=tf.string))
    response = stub.Predict(request, timeout=60)
    tokens = tf.make_ndarray(response.outputs["tokens"])
    scores = tf.make_ndarray(response.outputs["attributions"])
    assert [x.decode() for x in tf.make_ndarray(response.outputs["label"])] == ["positive", "negative"]
    assert tokens.shape == scores.shape == (2, 6)
    assert [w.decode() for w in tokens[0]] == TEXTS[0].split()
    # the sentiment words decide: the top word of each text is an adjective of its class
    assert tokens[0][scores[0].argmax()].decode() in ("wonderful", "lovely")
    assert tokens[1][scores[1].argmax()].decode() in ("awful", "dull")
    channel.close()


def test_explain_over_rest(server):
    body = json.dumps({"signature_name": "explain", "instances": TEXTS}).encode()
    request = urllib.request.Request(f"{server.rest_url}/v1/models/tiny:predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        rows = json.loads(response.read())["predictions"]
    assert [row["label"] for row in rows] == ["positive", "negative"]
    assert rows[0]["tokens"] == TEXTS[0].split() and len(rows[0]["attributions"]) == 6


def test_occlusion_over_grpc(server):
    from llmos_tf.explain.occlusion import occlusion_explain

    frame = occlusion_explain(server.target, "tiny", TEXTS)
    assert frame["label"].tolist() == ["positive", "negative"]
    for row, top in zip(frame.itertuples(), (("wonderful", "lovely"), ("awful", "dull"))):
        assert row.words == row.text.split()
        assert row.words[int(np.argmax(row.attributions))] in top


def test_llmos_explain_server_uses_the_served_explain_signature(server, exported, capsys):
    """With --server, a model that has `explain` is explained by the server (integrated gradients): the same words and
    scores as the exported folder's signature locally, not occlusion."""
    from llmos_tf.cli import main

    assert main(["explain", "--server", server.target, "--model", "tiny", "--json", *TEXTS]) == 0
    served = json.loads(capsys.readouterr().out)
    assert main(["explain", "--model", str(exported / "tiny" / "1"), "--json", *TEXTS]) == 0
    local = json.loads(capsys.readouterr().out)
    assert served["method"] == local["method"] == "integrated_gradients"
    for got, want in zip(served["explanations"], local["explanations"]):
        assert [w["word"] for w in got["words"]] == [w["word"] for w in want["words"]] and got["label"] == want["label"]
        np.testing.assert_allclose([w["attribution"] for w in got["words"]], [w["attribution"] for w in want["words"]], atol=1e-5)


def test_llmos_explain_server_falls_back_to_occlusion_without_explain(server):
    """A served classifier without `explain` (a plain-TF keyword model) is explained by occlusion; a served tagger without
    it is refused with the reason (no probabilities to occlude) and what to do."""
    from llmos_tf.explain.served import explain_served
    from llmos_tf.serving.errors import ServingError

    result = explain_served(server.target, "keywords", TEXTS)
    assert (result.kind, result.method, result.signature) == ("classifier", "occlusion", "serving_default")
    assert result.frame["label"].tolist() == ["positive", "negative"]
    for row, keywords in zip(result.frame.itertuples(), (("wonderful", "lovely"), ("awful", "dull"))):
        assert row.words[int(np.argmax(row.attributions))] in keywords  # dropping a keyword moves the answer, other words do not
        assert all(a == pytest.approx(0.0, abs=1e-6) for w, a in zip(row.words, row.attributions) if w not in keywords)
    with pytest.raises(ServingError, match="no 'explain' signature.*re-export"):
        explain_served(server.target, "keyword_tagger", TEXTS)
