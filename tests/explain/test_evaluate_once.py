"""`llmos evaluate` predicts the data once (metrics, ECE and the robustness table's clean row share it), and a bad
`training.augment` is refused while the config is read, before any run folder is written."""
import json

import pytest


def test_evaluate_predicts_the_data_once(trained_run, tiny_data, tmp_path, monkeypatch, capsys):
    from llmos_tf.cli import main
    from llmos_tf.tasks.classification import TrainedRun

    calls = []
    original = TrainedRun.predict_proba

    def counting(self, texts, *args, **kwargs):
        calls.append(len(texts))
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(TrainedRun, "predict_proba", counting)
    args = ["evaluate", "--model", str(trained_run), "--data", str(tiny_data["test"]), "--reliability_png", str(tmp_path / "r.png"), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert "ece" in out and out["accuracy"] > 0.5
    assert calls == [out["examples"]]  # one pass over the data gives the metrics and the ECE
    calls.clear()
    assert main([*args, "--robustness"]) == 0
    rows = json.loads(capsys.readouterr().out)["robustness"]
    # the evaluation once, then each perturbation once: the clean row reuses the evaluation's answers
    assert calls == [out["examples"]] * len(rows) and len(rows) == 6


@pytest.mark.parametrize("augment, message", [
    ("{shout: 0.1}", "training.augment.shout: unknown perturbation; valid: typo, lowercase, punctuation, drop"),
    ("{typo: 2}", "training.augment.typo: expected a rate in (0, 1], got 2.0"),
    ("{neighbour: 0.1}", "training.augment.neighbour: not available at training time"),
])
def test_bad_augment_is_refused_before_anything_is_written(tiny_data, tmp_path, capsys, augment, message):
    from llmos_tf.cli import main
    from tests.conftest import tiny_config_text

    config = tmp_path / "tiny.yaml"
    text = tiny_config_text(tiny_data["train"], tmp_path / "runs", epochs=1)
    config.write_text(text.replace("training:\n", f"training:\n  augment: {augment}\n", 1))
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err and f"{config}, line" in err  # the file and the line of the bad key
    assert not (tmp_path / "runs").exists()  # no run folder, no config/vocabulary/labels written


def test_augment_is_for_classification_only():
    from llmos_tf.config import config_from_dict
    from llmos_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="training.augment: perturbed copies of training texts are made for task: classification only"):
        config_from_dict({"task": "ner", "training": {"augment": {"typo": 0.1}, "monitor": "val_entity_f1"}})
    assert config_from_dict({"training": {"augment": {"typo": "0.2"}}}).training.augment == {"typo": 0.2}
