"""Bring your own data, and label names from the config to the served ``label`` output, through ``llmos``.

1. ``llmos train configs/sample_bilstm.yaml --set data.train=own.csv ...`` on a file with
   other column names and string labels trains on that file alone: the sample's test
   file is not inherited (one info line says so) and validation is carved from it.
2. A run with ``data.label_names`` over 0/1 values (SST-2's layout) answers the names
   everywhere: ``labels.txt``, the model card, evaluation, and the exported SavedModel's
   ``serving_default`` loaded by plain TensorFlow; and the version's card round-trips
   through the recovery of a run folder from a published version.
"""
from __future__ import annotations

import json
import sys

import pytest
import yaml

from llmos_tf.cli import main
from tests.compression.test_int8_weights import plain_tf_answers
from tests.conftest import make_sentiment_rows, tiny_config_text, write_csv

TINY_MODEL = ["text.vocabulary_size=120", "model.embedding_dim=16", "model.lstm_units=16", "training.batch_size=16",
              "data.max_length=16", "data.bucket_boundaries=[4, 8, 12]", "training.log_every_steps=5", "training.backup_every_steps=5"]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def test_own_csv_with_the_sample_config(tmp_path, capsys):
    rows = [(text, "good" if label == "positive" else "bad") for text, label in make_sentiment_rows(120, seed=5)]
    own = write_csv(tmp_path / "own.csv", rows, header=("review", "sentiment"))
    overrides = [f"data.train={own}", "data.text_column=review", "data.label_column=sentiment",
                 f"output_dir={tmp_path / 'runs'}", "name=own", "training.epochs=1", *TINY_MODEL]
    assert main(["train", "configs/sample_bilstm.yaml", *_sets(overrides)]) == 0
    err = capsys.readouterr().err
    info = [line for line in err.splitlines() if line.startswith("info:")]
    assert len(info) == 1 and "data.test (data/sample/sentiment_test.csv) is not used" in info[0]

    run_dir = tmp_path / "runs" / "own"
    card = json.loads((run_dir / "run.json").read_text())
    assert card["labels"] == ["bad", "good"]
    assert card["data"]["files"] == {"train": str(own), "validation": None, "test": None}
    assert card["data"]["test_examples"] == 0 and "test" not in card["metrics"]
    assert card["data"]["train_examples"] + card["data"]["validation_examples"] == 120
    assert card["data"]["validation_examples"] == 18  # validation_fraction 0.15 of the sample config, carved from own.csv
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
    assert saved["test"] is None and saved["validation"] is None and saved["text_column"] == "review"
    assert (run_dir / "labels.txt").read_text().split() == ["bad", "good"]


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    """A tiny run on SST-2-shaped data (``sentence<TAB>label``, 0/1) with ``data.label_names``, exported once."""
    root = tmp_path_factory.mktemp("named")
    rows = [(text, "1" if label == "positive" else "0") for text, label in make_sentiment_rows(240, seed=1)]
    train = root / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    config = root / "named.yaml"
    config.write_text(tiny_config_text(train, root / "runs", name="named", epochs=4))
    argv = ["train", str(config), "--set", "data.label_names={0: negative, 1: positive}"]
    with pytest.MonkeyPatch.context() as patch:  # the card's training_command is sys.argv, as from a shell
        patch.setattr(sys, "argv", ["llmos", *argv])
        assert main(argv) == 0
    base = root / "saved_models"
    assert main(["export", "--run", str(root / "runs" / "named"), "--model_base_path", str(base), "--name", "named"]) == 0
    return {"run_dir": root / "runs" / "named", "version": base / "named" / "1", "train": train}


def test_named_run_labels_and_card(named_run):
    run_dir, version = named_run["run_dir"], named_run["version"]
    assert (run_dir / "labels.txt").read_text().split() == ["negative", "positive"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["labels"] == ["negative", "positive"]
    assert set(info["metrics"]["validation"]) >= {"accuracy"} and info["metrics"]["validation"]["accuracy"] >= 0.8
    assert (version / "assets" / "labels.txt").read_text().split() == ["negative", "positive"]
    card = json.loads((version / "assets" / "llmos.json").read_text())
    assert card["labels"] == ["negative", "positive"]
    assert card["label_names"] == {"0": "negative", "1": "positive"}  # a client with 0/1 gold labels can match the answers


def test_named_savedmodel_answers_names_with_plain_tensorflow(named_run):
    texts = ["the film was wonderful and lovely", "the plot was awful and dull", "the cast was superb and funny"]
    answers = plain_tf_answers(named_run["version"], texts)
    assert answers["label"] == ["positive", "negative", "positive"]
    assert answers["class_id"] == [1, 0, 1]  # ids are the file's values: 1 = positive


def test_evaluate_reads_the_files_values_through_the_names(named_run, capsys):
    assert main(["evaluate", "--model", str(named_run["run_dir"]), "--data", str(named_run["train"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert set(result["per_class"]) == {"negative", "positive"} and result["examples"] == 240
    assert result["accuracy"] >= 0.8



def test_a_card_with_label_names_round_trips_through_recovery(named_run):
    """What the lead's recovery reads from a version (card, labels.txt, config from the training command)
    agrees with itself: the config rebuilt from the card names the labels the card lists, in the same order."""
    from llmos_tf.compression.recovery import _version_facts
    from llmos_tf.data.prepare import prepare_classification_data

    card, labels, cfg = _version_facts(named_run["version"], "/")
    assert card["training_command"].endswith("--set 'data.label_names={0: negative, 1: positive}'")
    assert labels == card["labels"] == ["negative", "positive"]
    assert cfg.data.label_names == {"0": "negative", "1": "positive"}
    assert prepare_classification_data(cfg.data, cfg.seed).labels.names == labels


def test_a_run_from_before_label_names_still_evaluates_under_a_named_config(named_run):
    """A version published before its config named the labels answers ``0``/``1``; rebuilt as a run with
    today's config (label_names set), it still reads the file's 0/1 as its own labels."""
    from llmos_tf.data.labels import LabelMap
    from llmos_tf.tasks.classification import TrainedRun

    named = TrainedRun.load(named_run["run_dir"])
    old = TrainedRun(named.run_dir, named.config, named.model, named.vocabulary, LabelMap(["0", "1"]), {})
    assert old.config.data.label_names == {"0": "negative", "1": "positive"}
    assert old.predict(["the film was wonderful and lovely"])["label"].tolist() == ["1"]
    assert old.evaluate(named_run["train"])["accuracy"] == named.evaluate(named_run["train"])["accuracy"] >= 0.8
