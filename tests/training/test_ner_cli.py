"""train → evaluate → predict → export through the CLI for a tiny BERT tagger (NER)."""
import json

from llmos_tf._tf import tf
from llmos_tf.cli import main


def test_ner_through_the_cli(tiny_ner_run, tmp_path, capsys):
    # `llmos train` on the sample tagger config ran in the session fixture (shared with the compress test)
    assert "entity f1" in tiny_ner_run["stdout"]
    paths, run_dir = tiny_ner_run["paths"], tiny_ner_run["run_dir"]

    assert main(["evaluate", "--model", str(run_dir), "--data", str(paths["ner_valid"]), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.3 <= metrics["entity_f1"] <= 1.0 and "per_type" in metrics

    assert main(["predict", "--model", str(run_dir), "--json", "Anna Berg flew to Oslo ."]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    # one tag per whitespace token, and exactly the tags the run's own tagger gives that sentence
    # (a tiny 3-epoch model need not get every entity right, so the gold tags are not asserted)
    from llmos_tf.tasks.tagging import TrainedTagger

    labels = (run_dir / "labels.txt").read_text(encoding="utf-8").split()
    assert len(row["tags"]) == 6 and set(row["tags"]) <= set(labels), row
    assert row["tags"] == TrainedTagger.load(run_dir).predict_tags(["Anna Berg flew to Oslo ."])[0]

    base = tmp_path / "saved_models"
    assert main(["export", "--run", str(run_dir), "--model_base_path", str(base), "--name", "ner"]) == 0
    fn = tf.saved_model.load(str(base / "ner" / "1")).signatures["serving_default"]
    out = fn(text=tf.constant(["Anna Berg flew to Oslo ."]))
    assert out["tags"].dtype == tf.string and out["token_count"].numpy().tolist() == [6]
    assert [t.decode() for t in out["tags"].numpy()[0][:6]] == row["tags"]
