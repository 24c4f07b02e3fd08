"""Export an NER run in TF Serving layout: the DESIGN.md signature, and the same tags as TrainedTagger."""
from __future__ import annotations

import json

import pytest

from llmos_tf._tf import tf
from llmos_tf.errors import RunError
from tests.training.test_tagging import MAX_LENGTH, tiny_tagger_run

SENTENCES = [
    "Anna Berg joined Acme Corp in Oslo last year .",
    "  Lars Holm flew to Kyoto,  on Tuesday!",
    "U.S. stocks rose ; Zürich-based xqzvbnm ☃ gained",
    "",
    " ".join(["Oslo"] * (MAX_LENGTH + 10)),
]


@pytest.fixture
def exported(tmp_path_factory):
    from llmos_tf.export.tagger import export_tagger_run

    shared = tiny_tagger_run(tmp_path_factory)
    if "export_base" not in shared:
        base = tmp_path_factory.mktemp("saved_models")
        shared["export_path"] = export_tagger_run(shared["run"], base, "ner", command="pytest export")
        shared["export_base"] = base
    return shared


def test_layout_and_assets(exported):
    version = exported["export_path"]
    assert version == exported["export_base"] / "ner" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    labels = (version / "assets" / "labels.txt").read_text().split()
    assert labels == (exported["run"] / "labels.txt").read_text().split() and labels[0] == "O"
    card = json.loads((version / "assets" / "llmos.json").read_text())
    assert card["task"] == "ner" and card["labels"] == labels and card["export_command"] == "pytest export"
    assert "tags" in card["signature"] and card["metrics"]["validation"]["entity_f1"] > 0
    assert (version / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert not [p for p in version.parent.iterdir() if p.name.startswith(".")]


def test_signature_contract_and_equality_with_trained_tagger(exported):
    from llmos_tf.tasks.tagging import TrainedTagger

    fn = tf.saved_model.load(str(exported["export_path"])).signatures["serving_default"]
    _, kwargs = fn.structured_input_signature
    assert list(kwargs) == ["text"] and kwargs["text"].dtype == tf.string and kwargs["text"].shape.as_list() == [None]
    outs = fn.structured_outputs
    assert set(outs) == {"tags", "token_count"}
    assert outs["tags"].dtype == tf.string and outs["tags"].shape.as_list() == [None, None]
    assert outs["token_count"].dtype == tf.int32 and outs["token_count"].shape.as_list() == [None]

    result = fn(text=tf.constant(SENTENCES))
    counts = result["token_count"].numpy().tolist()
    assert counts == [len(s.split()) for s in SENTENCES]
    tags = result["tags"].numpy()
    assert tags.shape == (len(SENTENCES), max(counts))
    got = [[t.decode() for t in row[:n]] for row, n in zip(tags, counts)]
    assert all(t == b"" for row, n in zip(tags, counts) for t in row[n:])  # padded with ""
    assert got == TrainedTagger.load(exported["run"]).predict_tags(SENTENCES)
    assert got[-1][MAX_LENGTH - 2:] == ["O"] * (counts[-1] - (MAX_LENGTH - 2))  # truncated tokens: "O"

    empty = fn(text=tf.constant([], dtype=tf.string))
    assert empty["tags"].shape[0] == 0 and empty["token_count"].shape == (0,)


def test_warmup_request_uses_the_text_input(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported["export_path"] / "assets.extra" / "tf_serving_warmup_requests"
    log = prediction_log_pb2.PredictionLog.FromString(next(iter(tf.data.TFRecordDataset(str(path)))).numpy())
    assert log.predict_log.request.model_spec.name == "ner" and "text" in log.predict_log.request.inputs


def test_versions_and_refusals(exported, tmp_path):
    from llmos_tf.export.tagger import export_tagger_run

    with pytest.raises(RunError, match="version exists"):
        export_tagger_run(exported["run"], exported["export_base"], "ner", version=1)
    with pytest.raises(RunError, match="not a valid model name"):
        export_tagger_run(exported["run"], exported["export_base"], "../bad")
    classifier = tmp_path / "classifier_run"
    classifier.mkdir()
    (classifier / "run.json").write_text(json.dumps({"task": "classification"}))
    with pytest.raises(RunError, match="not an NER tagger"):
        export_tagger_run(classifier, tmp_path / "base", "x")
