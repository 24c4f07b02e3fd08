"""`llmos compress` on a NER tagger: pruned and TFLite variants tag through the same signature."""
from __future__ import annotations

import json
import pathlib

from llmos_tf.cli import main


def test_tagger_variants_are_scored_by_entity_f1(tiny_ner_run, tmp_path):
    # the tagger is the session's shared tiny NER run (trained once through `llmos train`)
    report_dir = tmp_path / "report"
    base = tmp_path / "models"
    assert main(["compress", "--run", str(tiny_ner_run["run_dir"]), "--target_sparsity", "0.5", "--quantize", "dynamic",
                 "--model_base_path", str(base), "--name", "ner", "--report_dir", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["metric"] == "entity_f1"
    rows = {r["variant"]: r for r in report["variants"]}
    assert set(rows) == {"dense", "pruned", "pruned_dynamic"}
    # the TFLite tagger goes through preprocess -> model.tflite -> postprocess and tags like the pruned SavedModel
    assert abs(rows["pruned_dynamic"]["metric"] - rows["pruned"]["metric"]) <= 0.02
    assert rows["dense"]["metric"] >= 0.3
    from llmos_tf.serving.tflite_servable import TFLiteServable
    import numpy as np

    # published only within --max_drop (default 0.01 of F1); staged under the report dir either way
    row = rows["pruned_dynamic"]
    within = -row["delta"] <= 0.01 + 1e-9
    assert row["status"] == ("published" if within else "held back") and (row["version"] is not None) == within
    staged = base / "ner" / str(row["version"]) if within else pathlib.Path(row["staged_path"])
    servable = TFLiteServable.load("ner", 2, staged)
    out = servable.run("serving_default", {"text": np.array([b"Anna Berg flew to Oslo ."], dtype=object)})
    assert out["token_count"].tolist() == [6] and out["tags"].shape[1] >= 6
