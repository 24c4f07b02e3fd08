"""`llmos calibrate` on a deliberately over-confident copy of the tiny run (export serves the calibrated
probabilities, the card records ECE before/after); `llmos evaluate` reports ECE, a reliability PNG,
--robustness, and writes them to TensorBoard (read back from the event files)."""
import csv
import json
import shutil

import numpy as np
import pytest

from llmos_tf._tf import tf


@pytest.fixture(scope="module")
def overconfident(trained_run, tiny_data, tmp_path_factory):
    """A copy of the tiny run with its logits x6, and a holdout whose labels are 25% wrong: accuracy ~0.75 at ~1.0 confidence."""
    from llmos_tf.tasks.classification import TrainedRun

    root = tmp_path_factory.mktemp("calibrate")
    run_dir = shutil.copytree(trained_run, root / "tiny_copy")
    run = TrainedRun.load(run_dir)
    head = run.model.get_layer("classifier")
    head.kernel.assign(head.kernel * 6.0)
    head.bias.assign(head.bias * 6.0)
    run.model.save(run_dir / "model.keras")
    rows = list(csv.reader(open(tiny_data["test"], encoding="utf-8")))
    flip = {"positive": "negative", "negative": "positive"}
    noisy = [rows[0]] + [[text, flip[label] if i % 4 == 0 else label] for i, (text, label) in enumerate(rows[1:])]
    holdout = root / "noisy.csv"
    with open(holdout, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(noisy)
    return run_dir, holdout


def test_calibrate_lowers_ece_and_export_serves_it(overconfident, tmp_path, capsys):
    from llmos_tf.cli import main
    from llmos_tf.explain.calibrate_run import run_logits
    from llmos_tf.export.writer import export_run
    from llmos_tf.metrics.calibration import softmax
    from llmos_tf.tasks.classification import TrainedRun

    run_dir, holdout = overconfident
    texts = ["the film was wonderful", "the plot was dull and boring"]
    before = run_logits(TrainedRun.load(run_dir), texts)
    assert main(["calibrate", "--run", str(run_dir), "--data", str(holdout), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["temperature"] > 1.5 and summary["ece_after"] < 0.8 * summary["ece_before"], summary
    assert summary["nll_after"] < summary["nll_before"]
    assert (run_dir / "model.uncalibrated.keras").is_file() and (run_dir / "calibration.png").stat().st_size > 1000
    recorded = json.loads((run_dir / "run.json").read_text())["metrics"]["calibration"]
    assert recorded["temperature"] == pytest.approx(summary["temperature"])

    version = export_run(run_dir, tmp_path / "models", "calibrated")
    served = tf.saved_model.load(str(version)).signatures["serving_default"](text=tf.constant(texts))["probabilities"].numpy()
    np.testing.assert_allclose(served, softmax(before, summary["temperature"]), atol=1e-4)
    card = json.loads((version / "assets" / "llmos.json").read_text())
    assert card["metrics"]["calibration"]["ece_before"] == pytest.approx(summary["ece_before"])


def test_calibrate_refuses_a_non_run(tmp_path, capsys):
    from llmos_tf.cli import main

    assert main(["calibrate", "--run", str(tmp_path)]) == 2
    assert "--run" in capsys.readouterr().err


def test_evaluate_reports_ece_robustness_and_tensorboard(trained_run, tiny_data, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llmos_tf.cli import main

    png = tmp_path / "reliability.png"
    assert main(["evaluate", "--model", str(trained_run), "--data", str(tiny_data["test"]), "--robustness", "--seed", "3",
                 "--reliability_png", str(png), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 <= out["ece"] <= 1 and out["ece_bins"] == 15 and png.read_bytes()[:4] == b"\x89PNG"
    rows = {row["perturbation"]: row for row in out["robustness"]}
    assert set(rows) == {"none", "typo", "lowercase", "punctuation", "drop", "neighbour"}
    assert rows["none"]["accuracy"] == pytest.approx(out["accuracy"])
    assert rows["typo"]["changed"] > 0.3 and rows["lowercase"]["changed"] == 0.0  # the fixture texts are lower case already
    events = EventAccumulator(str(trained_run / "evaluation"), size_guidance={"tensors": 0}).Reload()
    assert events.SummaryMetadata("reliability/test").plugin_data.plugin_name == "images"
    png_bytes = tf.make_ndarray(events.Tensors("reliability/test")[-1].tensor_proto)[2]
    assert png_bytes[:4] == b"\x89PNG"
    assert events.SummaryMetadata("robustness/test").plugin_data.plugin_name == "text"
    table = tf.make_ndarray(events.Tensors("robustness/test")[-1].tensor_proto).item().decode()
    assert "| typo |" in table and "flip rate" in table
