"""`llmos ensemble`: a tiny BERT and a tiny BiLSTM served as one model, checked against the members served by a real server."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tensorflow_serving.apis import model_pb2, predict_pb2

from llmos_tf._tf import tf
from llmos_tf.cli import main
from tests.compose.conftest import load_in_plain_tf
from tests.serving.conftest import server_factory, stubs  # noqa: F401  (fixture)

TEXTS = ["the film was wonderful and lovely", "the plot was awful and dull", "the cast", "a brilliant but tedious story"]


def _card(version_dir) -> dict:
    return json.loads((version_dir / "assets" / "llmos.json").read_text())


@pytest.fixture(scope="module")
def ensembles(exported, tiny_data):
    from llmos_tf.compose.ensemble import build_ensemble

    base = exported["base"]
    members = [str(exported["bert"]), str(base / "tiny_bilstm")]  # a version folder and a model folder (its highest version)
    weighted = build_ensemble(members, base, "weighted", weights=[3, 1], command="test")
    stacked = build_ensemble(members, base, "stacked", fit="stacking", validation=str(tiny_data["test"]), command="test")
    return {"members": members, "weighted": weighted, "stacked": stacked}


def _predict(stub, name: str, texts, signature: str = "serving_default") -> dict[str, np.ndarray]:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
    response = stub.Predict(request, timeout=60)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def test_weighted_average_equals_the_members_served_answers(exported, ensembles, server_factory):  # noqa: F811
    server = server_factory(["--model_base_path", str(exported["base"])], rest=False)
    channel, predict, _ = stubs(server.target)
    with channel:
        bert, bilstm = (_predict(predict, name, TEXTS)["probabilities"] for name in ("tiny_bert", "tiny_bilstm"))
        weighted = _predict(predict, "weighted", TEXTS)
        stacked = _predict(predict, "stacked", TEXTS)
        # the BERT member's `encode` signature answers through the same stub: unit sentence vectors
        encoded = _predict(predict, "tiny_bert", TEXTS, signature="encode")["embedding"]
    np.testing.assert_allclose(np.linalg.norm(encoded, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(weighted["probabilities"], 0.75 * bert + 0.25 * bilstm, atol=1e-5)
    assert weighted["class_id"].tolist() == weighted["probabilities"].argmax(1).tolist()
    assert [x.decode() for x in weighted["label"]] == [["negative", "positive"][i] for i in weighted["class_id"]]
    # stacking: softmax(concat(member probabilities) @ kernel + bias), with the combiner recorded in the card
    combiner = _card(ensembles["stacked"])["combiner"]
    logits = np.concatenate([bert, bilstm], axis=1) @ np.array(combiner["kernel"]) + np.array(combiner["bias"])
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(stacked["probabilities"], expected, atol=1e-5)


def test_stacking_is_fitted_on_the_validation_file_only(exported, ensembles, tiny_data):
    from llmos_tf.compose.ensemble import fit_stacking
    from llmos_tf.data.readers import read_labelled_table

    card = _card(ensembles["stacked"])
    assert card["combiner"]["method"] == "stacking" and card["combiner"]["fit_on"] == str(tiny_data["test"])
    # refit by hand on the members' answers to the validation rows, and nothing else: the same regression
    frame = read_labelled_table(tiny_data["test"])
    texts = tf.constant(list(frame["text"]))
    features = np.concatenate([tf.saved_model.load(str(exported[m])).signatures["serving_default"](text=texts)["probabilities"].numpy()
                               for m in ("bert", "bilstm")], axis=1)
    y = np.array([["negative", "positive"].index(v) for v in frame["label"]])
    kernel, bias = fit_stacking(features, y, 2)
    np.testing.assert_allclose(card["combiner"]["kernel"], kernel, atol=1e-4)
    np.testing.assert_allclose(card["combiner"]["bias"], bias, atol=1e-4)
    assert "validation_fit" in card["metrics"] and card["metrics"]["validation_fit"]["examples"] == len(y)  # labelled as in-sample
    # the card lists each member with its own metric
    assert [m["path"] for m in card["members"]] == [str(exported["bert"]), str(exported["bilstm"])]
    assert all(m["metrics"]["validation"]["accuracy"] > 0.5 for m in card["members"])


def test_loads_and_answers_in_plain_tensorflow(ensembles, tmp_path):
    out = load_in_plain_tf(ensembles["weighted"], "serving_default", {"text": TEXTS[:2]}, tmp_path)
    expected = tf.saved_model.load(str(ensembles["weighted"])).signatures["serving_default"](text=tf.constant(TEXTS[:2]))
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"].numpy(), atol=1e-6)


def test_bad_members_are_refused_before_any_work(exported, ensembles, tmp_path, capsys, monkeypatch):
    other = tmp_path / "other" / "1"
    shutil.copytree(exported["bilstm"], other)
    (other / "assets" / "labels.txt").write_text("bad\ngood\n")
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf" * 8)
    shutil.copytree(exported["bilstm"] / "assets", broken / "assets")
    out = tmp_path / "out"

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the members were checked")

    with monkeypatch.context() as patch:
        patch.setattr(tf.saved_model, "load", no_loading)
        assert main(["ensemble", "--member", str(exported["bert"]), "--member", str(other), "--name", "e", "--model_base_path", str(out)]) == 2
        err = capsys.readouterr().err
        assert "share labels" in err and "['negative', 'positive']" in err and "['bad', 'good']" in err
        assert main(["ensemble", "--member", str(exported["bert"]), "--member", f"{exported['base']}/tiny_bilstm@stable",
                     "--name", "e", "--model_base_path", str(out)]) == 2
        assert "version label 'stable'" in capsys.readouterr().err
        assert main(["ensemble", "--member", str(exported["bert"]), "--member", str(exported["bilstm"]), "--weights", "1",
                     "--name", "e", "--model_base_path", str(out)]) == 2
        assert "1 weights for 2 members" in capsys.readouterr().err
    assert main(["ensemble", "--member", str(exported["bert"]), "--member", str(broken), "--name", "e", "--model_base_path", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--member {broken}: cannot load {broken}" in err
    assert not (out / "e").exists() or not any(p.name.isdigit() for p in (out / "e").iterdir())  # nothing published
