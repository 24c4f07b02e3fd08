"""Multitask runs: one tiny BERT encoder with classification heads (sentiment, intent) or a classification and an NER head."""
import json

import pytest
import yaml

from llmos_tf._tf import tf
from llmos_tf.cli import main
from llmos_tf.config import config_from_dict
from llmos_tf.data.sample import write_sample_data
from llmos_tf.errors import ConfigError


def test_multitask_trains_every_head(tmp_path, capsys):
    paths = write_sample_data(tmp_path / "data")
    config = {
        "name": "mt",
        "task": "multitask",
        "seed": 3,
        "output_dir": str(tmp_path / "runs"),
        "data": {"max_length": 32, "validation_fraction": 0.2, "bucket_boundaries": [8, 16, 24]},
        "text": {"vocabulary_size": 400},
        "model": {"architecture": "bert", "encoder": None, "num_layers": 1, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64, "dropout": 0.0},
        "training": {"epochs": 4, "batch_size": 16, "learning_rate": 0.003, "log_every_steps": 10, "backup_every_steps": 20, "early_stopping_patience": 0},
        "heads": [
            {"name": "sentiment", "train": str(paths["sentiment_train"]), "sampling_rate": 1.0},
            {"name": "intent", "train": str(paths["intent_train"]), "loss_weight": 1.0, "sampling_rate": 1.0},
        ],
    }
    (tmp_path / "mt.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "mt.yaml")]) == 0
    assert "val accuracy [intent]" in capsys.readouterr().out
    run_dir = tmp_path / "runs" / "mt"
    info = json.loads((run_dir / "run.json").read_text())
    assert set(info["heads"]) == {"sentiment", "intent"}
    heads = info["metrics"]["validation"]
    # every head learnt something: better than the majority class on its own validation split
    assert heads["sentiment"]["accuracy"] > 0.6
    assert heads["intent"]["accuracy"] > 0.5

    assert main(["evaluate", "--model", str(run_dir), "--data", str(paths["intent_test"]), "--head", "intent", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.5
    assert main(["predict", "--model", str(run_dir), "--head", "sentiment", "--json", "a wonderful film"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("positive", "negative")
    assert main(["predict", "--model", str(run_dir), "a wonderful film"]) == 2
    assert "--head" in capsys.readouterr().err
    # exported as one version with a signature per head (serving_default = the first head)
    assert main(["export", "--run", str(run_dir), "--model_base_path", str(tmp_path / "sm"), "--name", "mt"]) == 0
    capsys.readouterr()
    signatures = tf.saved_model.load(str(tmp_path / "sm" / "mt" / "1")).signatures
    assert {"sentiment", "intent", "serving_default"} <= set(signatures)
    out = signatures["intent"](text=tf.constant(["what is the exchange rate for euros"]))
    assert set(out) == {"probabilities", "label", "class_id"} and out["probabilities"].shape[1] == len(info["heads"]["intent"]["labels"])


def test_multitask_with_an_ner_head(tiny_multitask_run, capsys):
    # trained once per session through `llmos train` (shared with tests/export/test_export_multitask.py)
    run_dir, paths, out = tiny_multitask_run["run_dir"], tiny_multitask_run["paths"], tiny_multitask_run["stdout"]
    assert "val entity F1 [ner]" in out and "val accuracy [sentiment]" in out and "val score" in out
    info = json.loads((run_dir / "run.json").read_text())
    assert info["heads"]["ner"]["task"] == "ner" and info["heads"]["sentiment"] == {"task": "classification", "labels": ["negative", "positive"]}
    assert info["heads"]["ner"]["labels"][0] == "O"
    heads = info["metrics"]["validation"]
    # both heads learnt: sentiment beats the majority class (0.5), NER beats tagging everything O (entity F1 0)
    assert heads["sentiment"]["accuracy"] > 0.6
    assert heads["ner"]["entity_f1"] > 0.5 and {"entity_precision", "entity_recall", "per_type"} <= set(heads["ner"])
    assert info["validation_score"] == pytest.approx((heads["sentiment"]["accuracy"] + heads["ner"]["entity_f1"]) / 2)
    assert info["monitor"]["name"] == "val_score"
    metrics = json.loads((run_dir / "metrics.json").read_text())["validation"]
    assert metrics["score"] == pytest.approx(info["validation_score"]) and "accuracy" not in metrics  # no mean accuracy over an NER head

    assert main(["evaluate", "--model", str(run_dir), "--data", str(paths["ner_valid"]), "--head", "ner", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["entity_f1"] == pytest.approx(heads["ner"]["entity_f1"]) and evaluated["examples"] == heads["ner"]["examples"]
    assert main(["evaluate", "--model", str(run_dir), "--data", str(paths["ner_valid"]), "--head", "ner"]) == 0
    assert "FB1" in capsys.readouterr().out  # conlleval's report
    assert main(["predict", "--model", str(run_dir), "--head", "ner", "--json", "Anna Berg flew to Oslo ."]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert row["tokens"] == ["Anna", "Berg", "flew", "to", "Oslo", "."] and len(row["tags"]) == 6
    assert main(["predict", "--model", str(run_dir), "--head", "ner", "Anna Berg flew to Oslo ."]) == 0
    assert " ".join(row["tags"]) in capsys.readouterr().out  # tags per word, as single-task NER prints them
    assert main(["predict", "--model", str(run_dir), "--head", "sentiment", "--json", "a wonderful film"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("positive", "negative")


@pytest.mark.parametrize(
    "heads, words",
    [
        ([{"name": "a", "train": "x.csv"}], "at least two heads"),
        ([{"name": "a", "train": "x.csv"}, {"name": "a", "train": "y.csv"}], "distinct"),
        ([{"name": "a", "train": "x.csv"}, {"name": "b"}], "heads[1].train"),
        ([{"name": "a", "train": "x.csv"}, {"name": "b", "train": "y.csv", "sampling_rate": 0}], "sampling_rate"),
        ([{"name": "a", "train": "x.csv"}, {"name": "b", "task": "pos", "train": "y.conll"}], "heads[1].task: unknown head task 'pos'"),
        ([{"name": "a", "train": "x.csv"}, {"name": "b", "task": "ner", "train": "y.csv", "format": "csv"}], "heads[1].format"),
        ([{"name": "a", "train": "x.csv"}, {"name": "b", "task": "ner", "train": "y.conll", "text_column": "t"}], "heads[1].text_column"),
        ([{"name": "a", "train": "x.csv"}, {"name": "b", "train": "y.conll", "format": "conll"}], "task: ner"),
        # val_accuracy (the default monitor) is a mean over classification heads only
        ([{"name": "a", "train": "x.csv"}, {"name": "b", "task": "ner", "train": "y.conll"}], "val_score"),
    ],
)
def test_multitask_config_errors(heads, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"task": "multitask", "model": {"architecture": "bert"}, "heads": heads})
    assert words in str(err.value)


def test_multitask_monitors():
    cfg = config_from_dict({"task": "multitask", "model": {"architecture": "bert"}, "training": {"monitor": "val_ner_entity_f1"},
                            "heads": [{"name": "a", "train": "x.csv"}, {"name": "ner", "task": "ner", "train": "y.conll"}]})
    assert cfg.heads[1].task == "ner"
    with pytest.raises(ConfigError, match="val_a_accuracy"):
        config_from_dict({"task": "multitask", "model": {"architecture": "bert"}, "training": {"monitor": "val_b_accuracy"},
                          "heads": [{"name": "a", "train": "x.csv"}, {"name": "ner", "task": "ner", "train": "y.conll"}]})


def test_shipped_multitask_config_validates():
    import pathlib

    from llmos_tf.config import load_config

    cfg = load_config(pathlib.Path(__file__).resolve().parents[2] / "configs" / "multitask_sst2_banking77_conll.yaml")
    assert [(h.name, h.task) for h in cfg.heads] == [("sentiment", "classification"), ("intent", "classification"), ("ner", "ner")]
    assert cfg.training.monitor == "val_score" and cfg.model["encoder"] == "minilm-l6"
