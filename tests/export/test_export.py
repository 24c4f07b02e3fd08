"""Export a run in TF Serving layout and reload it with plain tf.saved_model.load."""
import json

import numpy as np
import pytest

from llmos_tf._tf import tf
from llmos_tf.cli import main
from llmos_tf.errors import RunError
from llmos_tf.export.writer import export_run
from llmos_tf.tasks.classification import TrainedRun

TEXTS = ["the film was wonderful and lovely", "the plot was awful and dull", ""]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    assert main(["export", "--run", str(trained_run), "--model_base_path", str(base), "--name", "tiny"]) == 0
    return base


def test_layout_and_assets(exported):
    version = exported / "tiny" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert (version / "assets" / "labels.txt").read_text().split() == ["negative", "positive"]
    card = json.loads((version / "assets" / "llmos.json").read_text())
    for key in ("task", "labels", "metrics", "data_fingerprint", "encoder", "compression", "training_command", "export_command", "created_at"):
        assert key in card, key
    assert not [p for p in (exported / "tiny").iterdir() if p.name.startswith(".")]


def test_signature_contract_and_outputs_match_the_run(exported, trained_run):
    loaded = tf.saved_model.load(str(exported / "tiny" / "1"))
    fn = loaded.signatures["serving_default"]
    (args, kwargs) = fn.structured_input_signature
    assert list(kwargs) == ["text"] and kwargs["text"].dtype == tf.string and kwargs["text"].shape.as_list() == [None]
    outs = fn.structured_outputs
    assert set(outs) == {"probabilities", "label", "class_id"}
    assert outs["probabilities"].dtype == tf.float32 and outs["probabilities"].shape.as_list() == [None, 2]
    assert outs["label"].dtype == tf.string and outs["class_id"].dtype == tf.int64
    result = fn(text=tf.constant(TEXTS))
    expected = TrainedRun.load(trained_run).predict_proba(TEXTS)
    np.testing.assert_allclose(result["probabilities"].numpy(), expected, atol=1e-5)
    assert [x.decode() for x in result["label"].numpy()[:2]] == ["positive", "negative"]
    assert result["class_id"].numpy().tolist()[:2] == [1, 0]
    empty = fn(text=tf.constant([], dtype=tf.string))
    assert empty["probabilities"].shape == (0, 2)


def test_warmup_file_holds_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported / "tiny" / "1" / "assets.extra" / "tf_serving_warmup_requests"
    records = list(tf.data.TFRecordDataset(str(path)))
    assert records
    log = prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    assert log.predict_log.request.model_spec.name == "tiny"
    assert "text" in log.predict_log.request.inputs


def test_versions_increment_and_refuse_overwrite(exported, trained_run):
    second = export_run(trained_run, exported, "tiny")
    assert second.name == "2"
    with pytest.raises(RunError, match="--force"):
        export_run(trained_run, exported, "tiny", version=1)
    again = export_run(trained_run, exported, "tiny", version=1, force=True)
    assert again.name == "1" and (again / "saved_model.pb").is_file()
    assert not [p for p in (exported / "tiny").iterdir() if p.name.startswith(".")]


def test_bad_names_and_runs(tmp_path, trained_run):
    with pytest.raises(RunError, match="model name"):
        export_run(trained_run, tmp_path, "../evil")
    with pytest.raises(RunError, match="not a finished run|not found"):
        export_run(tmp_path / "nope", tmp_path, "x")
    assert not (tmp_path / "x").exists()


def test_export_cli_sets_version_labels(tmp_path, trained_run, capsys):
    from llmos_tf.cli import main
    from llmos_tf.serving.model_config import read_config_file

    base = tmp_path / "sm"
    assert main(["export", "--run", str(trained_run), "--model_base_path", str(base), "--name", "tiny", "--label", "bad-label"]) == 2
    assert "bad-label" in capsys.readouterr().err and not (base / "tiny").exists()  # refused before any work
    assert main(["export", "--run", str(trained_run), "--model_base_path", str(base), "--name", "tiny", "--label", "distilled",
                 "--label", "stable"]) == 0
    (config,) = read_config_file(base / "models.config")
    assert config.name == "tiny" and config.labels == {"distilled": 1, "stable": 1}
