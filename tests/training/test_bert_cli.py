"""train → evaluate → predict → export through the CLI with a tiny BERT (random init, learnt vocabulary)."""
import json

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.cli import main
from llmos_tf.tasks.classification import TrainedRun
from tests.conftest import tiny_bert_config_text


def test_tiny_bert_train_evaluate_predict_export(tmp_path, tiny_data, capsys):
    text = tiny_bert_config_text(tiny_data["train"], tmp_path / "runs", name="tiny_bert", epochs=3)
    config = tmp_path / "bert.yaml"
    config.write_text(text)
    assert main(["train", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny_bert"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["architecture"] == "bert"
    vocab = (run_dir / "vocab.txt").read_text().split()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    capsys.readouterr()

    assert main(["evaluate", "--model", str(run_dir), "--data", str(tiny_data["test"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] >= 0.75

    assert main(["predict", "--model", str(run_dir), "--json", "the film was wonderful and lovely", "the plot was awful and dull"]) == 0
    labels = [json.loads(l)["label"] for l in capsys.readouterr().out.strip().splitlines()]
    assert labels == ["positive", "negative"]

    base = tmp_path / "saved_models"
    assert main(["export", "--run", str(run_dir), "--model_base_path", str(base), "--name", "tiny_bert"]) == 0
    fn = tf.saved_model.load(str(base / "tiny_bert" / "1")).signatures["serving_default"]
    texts = ["the film was wonderful and lovely", "the plot was awful and dull"]
    out = fn(text=tf.constant(texts))
    np.testing.assert_allclose(out["probabilities"].numpy(), TrainedRun.load(run_dir).predict_proba(texts), atol=1e-5)
    assert [x.decode() for x in out["label"].numpy()] == ["positive", "negative"]
