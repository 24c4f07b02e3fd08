"""train → evaluate → predict through the CLI on a tiny fixture."""
import json
import subprocess
import sys

import pytest

from llmos_tf.cli import main
from tests.conftest import tiny_config_text, write_csv


def test_train_writes_a_complete_run(trained_run):
    for name in ("config.yaml", "vocab.txt", "labels.txt", "model.keras", "run.json", "metrics.json", "checkpoints/best.index"):
        assert (trained_run / name).is_file(), name
    assert not (trained_run / "backup").exists()
    info = json.loads((trained_run / "run.json").read_text())
    assert info["labels"] == ["negative", "positive"]
    assert info["data"]["fingerprint"].startswith("sha256:")
    assert info["metrics"]["validation"]["accuracy"] >= 0.8
    assert info["epochs_run"] == 4 and info["parameters"] > 0


def test_evaluate_json_prints_one_object(trained_run, tiny_data, capsys):
    assert main(["evaluate", "--model", str(trained_run), "--data", str(tiny_data["test"]), "--json"]) == 0
    out = capsys.readouterr().out.strip()
    result = json.loads(out)  # exactly one JSON document
    assert result["examples"] == 60
    assert result["accuracy"] >= 0.8 and 0 <= result["macro_f1"] <= 1
    assert set(result["per_class"]) == {"negative", "positive"}
    assert sum(map(sum, result["confusion_matrix"])) == 60


def test_evaluate_tables(trained_run, tiny_data, capsys):
    assert main(["evaluate", "--model", str(trained_run), "--data", str(tiny_data["test"])]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "macro-F1" in out and "confusion matrix" in out


def test_predict_texts_and_file(trained_run, tiny_data, capsys):
    assert main(["predict", "--model", str(trained_run), "--json", "the film was wonderful and lovely", "the plot was awful and dull"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert all(0.5 <= r["probability"] <= 1.0 for r in rows)
    assert main(["predict", "--model", str(trained_run), "--data", str(tiny_data["test"])]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 61  # header + 60 rows


def test_evaluate_rejects_unseen_label(trained_run, tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", [("a lovely film", "positive"), ("a film", "neutral")])
    assert main(["evaluate", "--model", str(trained_run), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv, line 3" in err and "neutral" in err and "Traceback" not in err


def test_finished_run_is_not_overwritten(trained_run, capsys):
    assert main(["train", str(trained_run / "config.yaml")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_bad_data_writes_nothing(tmp_path, capsys):
    one_class = write_csv(tmp_path / "one.csv", [("good", "pos"), ("fine", "pos"), ("great", "pos")])
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config_text(one_class, tmp_path / "runs"))
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "one.csv" in err and "one class" in err
    assert not (tmp_path / "runs").exists()
    assert main(["train", str(config), "--set", "data.train=" + str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    assert main(["train", str(config), "--set", "training.epochz=1"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "llmos_tf.cli", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--set" in out.stdout and "example" in out.stdout
