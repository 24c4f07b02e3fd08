"""`llmos compress` on a NER tagger: pruned and TFLite variants tag through the same signature."""
from __future__ import annotations

import json

import yaml

from llmos_tf.cli import main
from llmos_tf.data.sample import write_sample_data


def test_tagger_variants_are_scored_by_entity_f1(tmp_path):
    paths = write_sample_data(tmp_path / "data")
    config = yaml.safe_load(open("configs/sample_ner.yaml"))
    config.update(output_dir=str(tmp_path / "runs"), name="ner")
    config["data"].update(train=str(paths["ner_train"]), validation=str(paths["ner_valid"]))
    config["training"]["epochs"] = 3
    (tmp_path / "ner.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "ner.yaml")]) == 0
    report_dir = tmp_path / "report"
    base = tmp_path / "models"
    assert main(["compress", "--run", str(tmp_path / "runs" / "ner"), "--target_sparsity", "0.5", "--quantize", "dynamic",
                 "--model_base_path", str(base), "--name", "ner", "--tflite_only", "--report_dir", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["metric"] == "entity_f1"
    rows = {r["variant"]: r for r in report["variants"]}
    assert set(rows) == {"dense", "pruned", "pruned_dynamic"}
    # the TFLite tagger goes through preprocess -> model.tflite -> postprocess and tags like the pruned SavedModel
    assert abs(rows["pruned_dynamic"]["metric"] - rows["pruned"]["metric"]) <= 0.02
    assert rows["dense"]["metric"] >= 0.3
    from llmos_tf.serving.tflite_servable import TFLiteServable
    import numpy as np

    servable = TFLiteServable.load("ner", 2, base / "ner" / "2")
    out = servable.run("serving_default", {"text": np.array([b"Anna Berg flew to Oslo ."], dtype=object)})
    assert out["token_count"].tolist() == [6] and out["tags"].shape[1] >= 6
