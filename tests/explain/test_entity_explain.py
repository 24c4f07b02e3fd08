"""Per-entity integrated gradients for NER taggers (the tiny BERT tagger and a tiny BiLSTM-CRF): completeness per
entity, in-graph conlleval chunks, Run.explain / llmos explain, the tagger export's `explain` signature in a
subprocess with only tensorflow + tensorflow_text and through the official gRPC stub and REST against a real
server; entity-F1 robustness from `llmos evaluate --robustness` (JSON and TensorBoard)."""
import json
import os
import random
import subprocess
import sys
import textwrap
import urllib.request

import numpy as np
import pytest
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from llmos_tf._tf import tf
from tests.serving.conftest import server_factory  # noqa: F401  (the fixture)
from tests.training.test_bilstm_crf import data, run  # noqa: F401  (the module's tiny BiLSTM-CRF run, trained once here)

SENTENCES = ["Anna Berg flew to Oslo .", "Lars Holm joined Acme Corp in Kyoto last year .", "nothing to see here", ""]


def _validation_sentences(path, n=8):
    from llmos_tf.data.conll import read_conll

    return [" ".join(tokens) for tokens in read_conll(path)["tokens"][:n]]


@pytest.fixture(scope="module")
def taggers(tiny_ner_run, run):  # noqa: F811
    from llmos_tf.tasks.tagging import TrainedTagger

    return {"bert": (TrainedTagger.load(tiny_ner_run["run_dir"]), tiny_ner_run["paths"]["ner_valid"]),
            "crf": (TrainedTagger.load(run["run_dir"]), tiny_ner_run["paths"]["ner_valid"])}


def test_chunks_in_graph_match_conlleval():
    from llmos_tf.explain.entities import entity_chunks
    from llmos_tf.metrics.conlleval import entity_spans

    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-PER", "S-LOC", "I-MISC"]  # IOB2, IOB1 and E-/S- oddities
    rows = [[rng.choice(tags) for _ in range(rng.randint(0, 9))] for _ in range(300)]
    width = max(len(r) for r in rows)
    out = entity_chunks(tf.constant([r + [""] * (width - len(r)) for r in rows]), tf.sequence_mask([len(r) for r in rows], width))
    got = [list(zip([t.decode() for t in ty], st, en)) for ty, st, en in zip(out["types"].to_list(), out["starts"].to_list(), out["ends"].to_list())]
    assert got == [entity_spans(r) for r in rows]
    assert sum(map(len, got)) > 300  # the sample has many entities, so the comparison means something


@pytest.mark.parametrize("kind", ["bert", "crf"])
def test_completeness_per_entity(taggers, kind):
    """Each entity's word scores sum to f_e(x) - f_e(baseline) within 5%; the entities are the tagger's own."""
    from llmos_tf.explain.entity_frame import explain_tagger

    tagger, valid = taggers[kind]
    texts = _validation_sentences(valid) + SENTENCES
    frame = explain_tagger(tagger, texts)
    expected = tagger.predict(texts)
    assert [s["tags"] for s in frame.attrs["sentences"]] == expected["tags"].tolist()  # Viterbi for the CRF, as served
    groups = list(frame.groupby(["sentence", "entity"]))
    assert len(groups) == sum(len(e) for e in expected["entities"]) >= 10
    inside = 0
    for (sentence, _), group in groups:
        first = group.iloc[0]
        assert {"type": first["type"], "text": first["entity_text"], "start": first["start"], "end": first["end"]} in expected["entities"][sentence]
        assert group["word"].tolist() == texts[sentence].split()
        delta = first["score"] - first["baseline_score"]
        assert abs(delta) > 0.1, "the tagger must move the entity's tags for the test to mean anything"
        assert abs(group["attribution"].sum() - delta) <= 0.05 * abs(delta), (first["entity_text"], group["attribution"].sum(), delta)
        inside += bool(group["in_entity"].iloc[int(group["attribution"].values.argmax())])
    assert inside >= 0.8 * len(groups)  # an entity's own words decide its tags
    assert frame[frame["sentence"] == len(texts) - 1].empty and frame.attrs["sentences"][-1]["tokens"] == []  # "" has no entity


def test_run_explain_and_cli_json(tiny_ner_run, capsys):
    import llmos_tf
    from llmos_tf.cli import main
    from llmos_tf.explain.entity_frame import render_entities_terminal

    frame = llmos_tf.load_run(tiny_ner_run["run_dir"]).explain(SENTENCES[0])
    assert list(frame.columns[:6]) == ["text", "sentence", "entity", "type", "entity_text", "start"]
    assert len(frame) == len(frame.groupby("entity")) * len(SENTENCES[0].split())  # one row per entity x word
    assert "rgba(" in frame._repr_html_() and "<table" in frame._repr_html_()
    assert "attributions for its tags" in render_entities_terminal(frame, colour=False)
    assert main(["explain", "--model", str(tiny_ner_run["run_dir"]), "--json", *SENTENCES[:2]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "integrated_gradients" and [s["text"] for s in out["sentences"]] == SENTENCES[:2]
    for sentence in out["sentences"]:
        for entity in sentence["entities"]:
            assert [w["word"] for w in entity["words"]] == sentence["tokens"]
            assert entity["text"] == " ".join(sentence["tokens"][entity["start"]:entity["end"]])
    assert main(["explain", "--model", str(tiny_ner_run["run_dir"]), "--label", "B-PER", "x"]) == 2
    assert "--label" in capsys.readouterr().err


SUBPROCESS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf, tensorflow_text  # noqa: F401  (nothing else: the stock server's view)
    out = {}
    for path in sys.argv[1:]:
        m = tf.saved_model.load(path)
        r = m.signatures["explain"](text=tf.constant(%r))
        out[path] = {k: v.numpy().tolist() for k, v in r.items() if v.dtype != tf.string}
        out[path].update({k: [[t.decode() for t in row] for row in v.numpy()] for k, v in r.items() if v.dtype == tf.string})
    assert not any(m.startswith(("llmos_tf", "tf_keras")) for m in sys.modules), "llmos_tf or tf_keras was imported"
    print(json.dumps(out))
    """
) % (SENTENCES,)


@pytest.fixture(scope="module")
def exported(taggers, tmp_path_factory):
    from llmos_tf.export.tagger import export_tagger_run

    base = tmp_path_factory.mktemp("tagger_explain_exports")
    for name, (tagger, _) in taggers.items():
        export_tagger_run(tagger.run_dir, base, name)
    return base


def test_explain_signature_in_plain_tensorflow(exported, taggers):
    from llmos_tf.explain.entity_frame import explain_tagger

    paths = [str(exported / name / "1") for name in ("bert", "crf")]
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # llmos_tf set it here; tf would load tf_keras
    done = subprocess.run([sys.executable, "-I", "-c", SUBPROCESS, *paths], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name, path in zip(("bert", "crf"), paths):
        answer, expected = out[path], explain_tagger(taggers[name][0], SENTENCES)
        assert [row[:n] for row, n in zip(answer["tags"], answer["token_count"])] == [s["tags"] for s in expected.attrs["sentences"]]
        for (sentence, entity), group in expected.groupby(["sentence", "entity"]):
            first = group.iloc[0]
            assert answer["entity_types"][sentence][entity] == first["type"]
            assert (answer["entity_starts"][sentence][entity], answer["entity_ends"][sentence][entity]) == (first["start"], first["end"])
            scores = answer["attributions"][sentence][entity][: len(group)]
            np.testing.assert_allclose(scores, group["attribution"].to_numpy(), atol=1e-4)  # the run's own numbers
        assert answer["entity_count"] == [len(expected[expected["sentence"] == i].groupby("entity")) for i in range(len(SENTENCES))]


@pytest.fixture(scope="module")
def server(exported, server_factory):  # noqa: F811
    return server_factory(["--model_base_path", str(exported), "--file_system_poll_wait_seconds", "0"])


def test_explain_over_grpc_and_rest(server, taggers):
    import grpc

    channel = grpc.insecure_channel(server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="crf", signature_name="explain"))
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(SENTENCES[:2], dtype=tf.string))
    response = stub.Predict(request, timeout=60)
    channel.close()
    count = tf.make_ndarray(response.outputs["entity_count"])
    scores = tf.make_ndarray(response.outputs["attributions"])
    types = tf.make_ndarray(response.outputs["entity_types"])
    starts, ends = tf.make_ndarray(response.outputs["entity_starts"]), tf.make_ndarray(response.outputs["entity_ends"])
    expected = taggers["crf"][0].predict(SENTENCES[:2])["entities"].tolist()
    assert count.tolist() == [len(e) for e in expected] and scores.shape == (2, max(count), len(SENTENCES[1].split()))
    for i, entities in enumerate(expected):
        assert [(t.decode(), s, e) for t, s, e in zip(types[i][: count[i]], starts[i], ends[i])] == [(x["type"], x["start"], x["end"]) for x in entities]
        for j, entity in enumerate(entities):  # the entity's own words decide its tags
            assert entity["start"] <= int(np.argmax(scores[i, j])) < entity["end"]

    body = json.dumps({"signature_name": "explain", "instances": SENTENCES[:1]}).encode()
    rest = urllib.request.Request(f"{server.rest_url}/v1/models/bert:predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(rest, timeout=60) as answer:
        (row,) = json.loads(answer.read())["predictions"]
    assert row["tokens"] == SENTENCES[0].split() and len(row["attributions"]) == row["entity_count"] >= 1
    assert all(len(scores) == len(row["tokens"]) for scores in row["attributions"])


def test_perturbed_tokens_keep_their_tags():
    from llmos_tf.explain.robustness import perturb, perturb_tokens

    tokens, tags = "Anna Berg flew to Oslo , Norway .".split(), ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "B-LOC", "O"]
    out, kept_tags, kept = perturb_tokens(tokens, tags, "punctuation")
    assert out == ["Anna", "Berg", "flew", "to", "Oslo", "Norway"] and kept_tags == ["B-PER", "I-PER", "O", "O", "B-LOC", "B-LOC"]
    out, kept_tags, kept = perturb_tokens(tokens, tags, "drop", rate=0.4, seed=2)
    assert " ".join(out) == perturb(" ".join(tokens), "drop", rate=0.4, seed=2) and 0 < len(out) < len(tokens)  # the same words go
    assert kept_tags == [tags[i] for i in kept] and out == [tokens[i] for i in kept]
    out, kept_tags, _ = perturb_tokens(tokens, tags, "typo", rate=1.0, seed=0)
    assert len(out) == len(tokens) and out != tokens and kept_tags == tags
    assert perturb_tokens(tokens, tags, "lowercase")[0] == [t.lower() for t in tokens]


def test_evaluate_robustness_on_a_tagger(run, data, capsys):  # noqa: F811
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llmos_tf.cli import main

    assert main(["evaluate", "--model", str(run["run_dir"]), "--data", str(data["valid"]), "--robustness", "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {row["perturbation"]: row for row in out["robustness"]}
    assert set(rows) == {"none", "typo", "lowercase", "punctuation", "drop", "neighbour"}
    assert rows["none"]["entity_f1"] == pytest.approx(out["entity_f1"]) and rows["none"]["flip_rate"] == 0
    assert rows["lowercase"]["changed"] == 1.0 and rows["lowercase"]["entity_f1"] < out["entity_f1"]  # the tagger keys on capitals
    assert rows["typo"]["flip_rate"] > 0 and rows["neighbour"]["entity_f1"] is not None
    events = EventAccumulator(str(run["run_dir"] / "evaluation"), size_guidance={"tensors": 0}).Reload()
    table = tf.make_ndarray(events.Tensors(f"robustness/{data['valid'].stem}")[-1].tensor_proto).item().decode()
    assert "| entity f1 | flip rate |" in table and "| lowercase |" in table
    from llmos_tf.explain.trust import print_trust

    print_trust(out)  # what the text form of the command prints after the conlleval report
    assert "entity_f1" in capsys.readouterr().out.split("robustness (rate 0.15, seed 1):")[1]


def test_llmos_explain_server_asks_the_served_explain_signature(server, exported, capsys):
    """``llmos explain --server`` on a served tagger: the server's own `explain` (integrated gradients per entity), the same
    entities and word scores as explaining the exported folder locally."""
    from llmos_tf.cli import main

    assert main(["explain", "--server", server.target, "--model", "bert", "--json", *SENTENCES[:2]]) == 0
    served = json.loads(capsys.readouterr().out)
    assert main(["explain", "--model", str(exported / "bert" / "1"), "--json", *SENTENCES[:2]]) == 0
    local = json.loads(capsys.readouterr().out)
    assert served["method"] == local["method"] == "integrated_gradients"
    assert [s["tags"] for s in served["sentences"]] == [s["tags"] for s in local["sentences"]]
    assert sum(len(s["entities"]) for s in served["sentences"]) >= 1
    for got, want in zip(served["sentences"], local["sentences"]):
        assert [(e["type"], e["start"], e["end"]) for e in got["entities"]] == [(e["type"], e["start"], e["end"]) for e in want["entities"]]
        for a, b in zip(got["entities"], want["entities"]):
            assert [w["word"] for w in a["words"]] == [w["word"] for w in b["words"]]
            np.testing.assert_allclose([w["attribution"] for w in a["words"]], [w["attribution"] for w in b["words"]], atol=1e-5)


def test_explain_server_names_the_heads_when_a_head_is_missing(server):
    """A head that does not exist is named with the model's heads; no occlusion is tried on a tagger (it has no probabilities)."""
    from llmos_tf.explain.served import explain_served
    from llmos_tf.serving.errors import ServingError

    with pytest.raises(ServingError, match="no head 'topic'.*single-task"):
        explain_served(server.target, "bert", SENTENCES[:1], head="topic")
