"""A multitask run (sentiment + NER heads) exported as one version with a signature per head, then served.

The run is the session's tiny multitask run (tests/conftest.py); the served version is queried through TF
Serving's official gRPC stub (``model_spec.signature_name`` picks the head) and REST.
"""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, model_pb2, predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

from llmos_tf._tf import tf
from llmos_tf.errors import RunError
from llmos_tf.export.writer import export_run
from llmos_tf.serving.client import RestClient
from llmos_tf.tasks.multitask import TrainedMultitask
from tests.serving import fixtures as fx

SENTENCES = ["Anna Berg flew to Oslo .", "what a wonderful film", "the plot was dull and the cast awful", ""]
CLASSIFIER_OUTPUTS = {"probabilities", "label", "class_id"}
TAGGER_OUTPUTS = {"tags", "token_count"}


@pytest.fixture(scope="module")
def run(tiny_multitask_run):
    return TrainedMultitask.load(tiny_multitask_run["run_dir"])


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    version_dir = export_run(run.run_dir, base, "mt")
    return base, version_dir


def _tags(out) -> list[list[str]]:
    return [[t.decode() for t in row[:n]] for row, n in zip(out["tags"].numpy(), out["token_count"].numpy())]


def test_one_signature_per_head(run, exported):
    _, version_dir = exported
    assert version_dir.name == "1"
    loaded = tf.saved_model.load(str(version_dir))
    assert set(loaded.signatures) == {"sentiment", "ner", "serving_default", "explain", "explain_sentiment", "explain_ner"}

    sentiment = loaded.signatures["sentiment"](text=tf.constant(SENTENCES))
    assert set(sentiment) == CLASSIFIER_OUTPUTS
    assert sentiment["probabilities"].dtype == tf.float32 and sentiment["class_id"].dtype == tf.int64 and sentiment["label"].dtype == tf.string
    np.testing.assert_allclose(sentiment["probabilities"].numpy(), run.predict_proba(SENTENCES, "sentiment"), atol=1e-5)
    assert [x.decode() for x in sentiment["label"].numpy()] == run.predict(SENTENCES, "sentiment")["label"].tolist()

    ner = loaded.signatures["ner"](text=tf.constant(SENTENCES))
    assert set(ner) == TAGGER_OUTPUTS and ner["token_count"].dtype == tf.int32
    assert ner["token_count"].numpy().tolist() == [6, 4, 8, 0]
    assert _tags(ner) == run.predict_tags(SENTENCES, "ner")

    default = loaded.signatures["serving_default"](text=tf.constant(SENTENCES))  # the first head in the config
    np.testing.assert_allclose(default["probabilities"].numpy(), sentiment["probabilities"].numpy())


def test_each_head_is_explained(run, exported):
    """``explain_<head>`` answers with that head's explanation: the words of each text, one score per word,
    for the label (or the tags) the head's own signature gives; ``explain`` is the first head's."""
    _, version_dir = exported
    loaded = tf.saved_model.load(str(version_dir))
    texts = tf.constant(SENTENCES[:3])

    explained = loaded.signatures["explain_sentiment"](text=texts)
    assert set(explained) == {"tokens", "attributions", "label", "class_id", "probability"}
    assert [x.decode() for x in explained["label"].numpy()] == run.predict(SENTENCES[:3], "sentiment")["label"].tolist()
    words = [[w.decode() for w in row if w] for row in explained["tokens"].numpy()]
    assert words == [s.lower().split() for s in SENTENCES[:3]]  # the uncased word pieces, joined back into words
    scores = explained["attributions"].numpy()
    assert all(np.all(np.isfinite(row[:len(w)])) and np.any(row[:len(w)] != 0) for row, w in zip(scores, words))
    first = loaded.signatures["explain"](text=texts)  # the first head's, as serving_default is
    np.testing.assert_allclose(first["attributions"].numpy(), scores, atol=1e-6)

    entities = loaded.signatures["explain_ner"](text=texts)
    assert _tags(entities) == run.predict_tags(SENTENCES[:3], "ner")
    assert {"tokens", "tags", "token_count", "attributions"} <= set(entities)


def test_head_explanations_load_with_only_tensorflow_and_text(run, exported, tmp_path):
    """What the stock server links: the NER head's ``explain_ner`` answers in plain TF + tensorflow_text."""
    from tests.compose.conftest import load_in_plain_tf

    _, version_dir = exported
    out = load_in_plain_tf(version_dir, "explain_ner", {"text": SENTENCES[:1]}, tmp_path)
    assert [out["tags"][0][: out["token_count"][0]]] == run.predict_tags(SENTENCES[:1], "ner")
    assert len(out["attributions"][0]) == out["entity_count"][0]  # one row of word scores per predicted entity


def test_weights_are_saved_once(run, exported):
    _, version_dir = exported
    checkpoint = str(version_dir / "variables" / "variables")
    reader = tf.train.load_checkpoint(checkpoint)
    dtypes = reader.get_variable_to_dtype_map()
    variables = [(n, s) for n, s in tf.train.list_variables(checkpoint) if "OBJECT_GRAPH" not in n]
    numeric = [(n, s) for n, s in variables if dtypes[n] != tf.string]
    assert sum(int(np.prod(s)) for _, s in numeric) == run.info["parameters"]
    # the only non-weight variable: the sentiment head's `explain` signature maps word-piece ids back to text, once
    strings = [n for n, _ in variables if dtypes[n] == tf.string]
    assert len(strings) == 1 and ("explain" in strings[0] or "pieces_table" in strings[0]), strings


def test_assets_card_and_warmup(run, exported):
    _, version_dir = exported
    assets = version_dir / "assets"
    assert (assets / "labels_ner.txt").read_text().split() == run.heads["ner"].names
    assert (assets / "labels_sentiment.txt").read_text().split() == ["negative", "positive"]
    assert (assets / "labels.txt").read_text() == (assets / "labels_sentiment.txt").read_text()
    card = json.loads((assets / "llmos.json").read_text())
    assert card["task"] == "multitask" and card["name"] == "mt" and card["version"] == 1
    assert card["heads"]["ner"]["signature"] == "ner" and card["heads"]["ner"]["task"] == "ner"
    assert card["heads"]["ner"]["outputs"] == ["tags", "token_count"] and card["heads"]["ner"]["labels"] == run.heads["ner"].names
    assert card["heads"]["ner"]["metrics"]["entity_f1"] == pytest.approx(run.info["metrics"]["validation"]["ner"]["entity_f1"])
    assert card["heads"]["sentiment"]["metrics"]["accuracy"] == pytest.approx(run.info["metrics"]["validation"]["sentiment"]["accuracy"])
    assert card["signature"].startswith("serving_default = sentiment")
    assert card["heads"]["ner"]["explain_signature"] == "explain_ner" and "attributions" in card["heads"]["ner"]["explain_outputs"]
    warmup = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    names = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request.model_spec.signature_name for r in tf.data.TFRecordDataset(str(warmup))]
    assert set(names) == {"sentiment", "ner", "serving_default"}


def test_failed_export_leaves_no_version(run, tmp_path, monkeypatch):
    import llmos_tf.export.multitask as multitask_export

    def broken(*args, **kwargs):  # the SavedModel is written, its check fails
        raise RunError("injected failure")

    monkeypatch.setattr(multitask_export, "_verify", broken)
    with pytest.raises(RunError, match="injected"):
        export_run(run.run_dir, tmp_path, "mt")
    assert list((tmp_path / "mt").iterdir()) == []  # neither a version folder nor the temporary one


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    base, _ = exported
    process = fx.ServerProcess(["--model_base_path", str(base)], tmp_path_factory.mktemp("server"))
    try:
        process.wait_ready(timeout=180)
        yield process
    finally:
        process.terminate(timeout=30)


def _predict(stub, texts, signature):
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="mt", signature_name=signature))
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
    return stub.Predict(request, timeout=30)


def test_served_heads_over_grpc(run, server):
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        response = _predict(stub, SENTENCES, "ner")
        assert response.model_spec.signature_name == "ner" and set(response.outputs) == TAGGER_OUTPUTS
        tags = tf.make_ndarray(response.outputs["tags"])
        counts = tf.make_ndarray(response.outputs["token_count"])
        assert [[t.decode() for t in row[:n]] for row, n in zip(tags, counts)] == run.predict_tags(SENTENCES, "ner")

        response = _predict(stub, SENTENCES, "sentiment")
        assert set(response.outputs) == CLASSIFIER_OUTPUTS
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), run.predict_proba(SENTENCES, "sentiment"), atol=1e-5)

        response = _predict(stub, SENTENCES, "")  # no signature_name: serving_default, the first head
        assert response.model_spec.signature_name == "serving_default" and set(response.outputs) == CLASSIFIER_OUTPUTS

        response = _predict(stub, SENTENCES[:1], "explain_ner")  # a head's explanation, by signature name
        counts = tf.make_ndarray(response.outputs["token_count"])
        assert [[t.decode() for t in row[:n]] for row, n in zip(tf.make_ndarray(response.outputs["tags"]), counts)] == run.predict_tags(SENTENCES[:1], "ner")
        assert tf.make_ndarray(response.outputs["attributions"]).dtype == np.float32

        with pytest.raises(grpc.RpcError) as err:
            _predict(stub, SENTENCES, "topic")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "ner" in err.value.details()

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "mt"
        signatures = get_model_metadata_pb2.SignatureDefMap()
        stub.GetModelMetadata(request, timeout=30).metadata["signature_def"].Unpack(signatures)
        assert {"sentiment", "ner", "serving_default"} <= set(signatures.signature_def)
        assert set(signatures.signature_def["ner"].outputs) == TAGGER_OUTPUTS
        assert set(signatures.signature_def["sentiment"].inputs) == {"text"}

        request = classification_pb2.ClassificationRequest()  # Classify on a head names that head's labels
        request.model_spec.name, request.model_spec.signature_name = "mt", "sentiment"
        request.input.example_list.examples.add().features.feature["text"].bytes_list.value.append(b"what a wonderful film")
        classes = stub.Classify(request, timeout=30).result.classifications[0].classes
        assert [c.label for c in classes] == ["negative", "positive"]


def test_llmos_predict_picks_a_served_head(run, server, capsys):
    from llmos_tf.cli import main

    assert main(["predict", "--server", server.target, "--model", "mt", "--head", "ner", "--json", SENTENCES[0]]) == 0
    assert json.loads(capsys.readouterr().out)["tags"] == " ".join(run.predict_tags(SENTENCES[:1], "ner")[0])


def test_served_head_over_rest(run, server):
    rest = RestClient(server.rest_url, timeout=30)
    status, body = rest.request("POST", "/v1/models/mt:predict", {"signature_name": "ner", "instances": SENTENCES[:2]})
    assert status == 200, body
    expected = run.predict_tags(SENTENCES[:2], "ner")
    assert [row["tags"][: row["token_count"]] for row in body["predictions"]] == expected
    status, body = rest.request("POST", "/v1/models/mt:predict", {"signature_name": "sentiment", "inputs": {"text": SENTENCES[1:2]}})
    assert status == 200 and body["outputs"]["label"] == run.predict(SENTENCES[1:2], "sentiment")["label"].tolist()


def test_llmos_explain_picks_a_head(run, exported, server, capsys):
    """``llmos explain --head``: a multitask export's head, from the folder and from the server (its explain_<head>)."""
    from llmos_tf.cli import main

    _, version_dir = exported
    assert main(["explain", "--model", str(version_dir), "--head", "ner", "--json", SENTENCES[0]]) == 0
    local = json.loads(capsys.readouterr().out)
    assert [s["tags"] for s in local["sentences"]] == run.predict_tags(SENTENCES[:1], "ner")
    assert main(["explain", "--server", server.target, "--model", "mt", "--head", "ner", "--json", SENTENCES[0]]) == 0
    served = json.loads(capsys.readouterr().out)
    assert [[(e["type"], e["start"], e["end"]) for e in s["entities"]] for s in served["sentences"]] == \
        [[(e["type"], e["start"], e["end"]) for e in s["entities"]] for s in local["sentences"]]

    assert main(["explain", "--server", server.target, "--model", "mt", "--head", "sentiment", "--json", *SENTENCES[1:3]]) == 0
    sentiment = json.loads(capsys.readouterr().out)
    assert sentiment["head"] == "sentiment" and sentiment["method"] == "integrated_gradients"
    assert [row["label"] for row in sentiment["explanations"]] == run.predict(SENTENCES[1:3], "sentiment")["label"].tolist()
