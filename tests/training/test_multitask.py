"""A multitask run: one tiny BERT encoder, a sentiment head and an intent head, each trained and evaluated."""
import json

import pytest
import yaml

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
    assert main(["export", "--run", str(run_dir), "--model_base_path", str(tmp_path / "sm"), "--name", "mt"]) == 2
    assert "multitask" in capsys.readouterr().err


@pytest.mark.parametrize(
    "heads, words",
    [
        ([{"name": "a", "train": "x.csv"}], "at least two heads"),
        ([{"name": "a", "train": "x.csv"}, {"name": "a", "train": "y.csv"}], "distinct"),
        ([{"name": "a", "train": "x.csv"}, {"name": "b"}], "heads[1].train"),
        ([{"name": "a", "train": "x.csv"}, {"name": "b", "train": "y.csv", "sampling_rate": 0}], "sampling_rate"),
    ],
)
def test_multitask_config_errors(heads, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"task": "multitask", "model": {"architecture": "bert"}, "heads": heads})
    assert words in str(err.value)
