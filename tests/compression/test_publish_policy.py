"""`llmos compress`'s publishing policy (issue #14): what clients get by default never silently gets worse.

The variants are measured rows plus real staged version folders (the serving fixtures' SavedModels,
which answer P(positive | "good") = 0.8 + 0.01 * template), so no training is needed here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmos_tf.compression.pipeline import publish_variants
from llmos_tf.compression.report import CompressionReport, VariantRow, load_report
from tests.serving import fixtures as fx

# variant: (accuracy, SavedModel gzip bytes, TFLite gzip bytes or None, fixture template)
VARIANTS = {
    "dense": (0.900, 4_000_000, None, 1),
    "pruned": (0.895, 2_000_000, None, 2),
    "pruned_dynamic": (0.872, 500_000, 400_000, 3),  # smallest, but 2.8 points worse: held back at --max_drop 0.01
    "pruned_float16": (0.900, 1_000_000, 900_000, 4),  # the smallest within the drop: 'compressed'
}


@pytest.fixture
def measured(tmp_path):
    staging = tmp_path / "report" / "variants" / "tiny"
    report = CompressionReport(run="runs/tiny", metric="accuracy", model_name="tiny")
    staged = {}
    for variant, (metric, gzip_bytes, tflite_gzip, template) in VARIANTS.items():
        staged[variant] = fx.add_version(staging, "classifier", template)
        report.add(VariantRow(variant, metric=metric, sparsity=0.5, size_bytes=2 * gzip_bytes, gzip_bytes=gzip_bytes,
                              tflite_bytes=None if tflite_gzip is None else 2 * tflite_gzip, tflite_gzip_bytes=tflite_gzip,
                              p50_ms_batch1=1.0, throughput_batch32=100.0,
                              format="savedmodel" if tflite_gzip is None else "savedmodel+tflite"))
    return report, staged, tmp_path


def _registry(base):
    from llmos_tf.serving.model_config import read_config_file
    from llmos_tf.serving.registry import ModelRegistry

    registry = ModelRegistry(read_config_file(base / "models.config"))
    registry.sync(strict_labels=True)
    return registry


def _positive(registry, **kw) -> tuple[int, float]:
    with registry.acquire("tiny", **kw) as servable:
        out = servable.run("serving_default", {"text": np.array([b"good"], dtype=object)})
        return servable.version, float(out["probabilities"][0][1])


def test_held_back_variant_is_not_published_and_the_chosen_one_is_the_highest_version(measured):
    report, staged, root = measured
    base = root / "saved_models"
    fx.add_version(base / "tiny", "classifier", 1)  # what clients got before this run
    said: list[str] = []
    published = publish_variants(report, staged, max_drop=0.01, publish="all", model_base_path=base, name="tiny", say=said.append)
    assert [(r.variant, r.version, r.label) for r in published] == [("pruned", 2, "pruned"), ("pruned_float16", 3, "compressed")]
    assert sorted(int(p.name) for p in (base / "tiny").iterdir() if p.name.isdigit()) == [1, 2, 3]
    held = report.row("pruned_dynamic")
    assert held.status == "held back" and held.version is None and held.staged_path == str(staged["pruned_dynamic"])
    assert (staged["pruned_dynamic"] / "saved_model.pb").is_file()  # still staged, to look at
    assert report.dense.status == "reference" and report.dense.version is None
    message = next(line for line in said if line.startswith("held back pruned_dynamic"))
    assert "2.8 points" in message and "--max_drop 0.01" in message and str(staged["pruned_dynamic"]) in message
    assert any("pruned_float16 → 3" in line and "highest version" in line for line in said)
    assert report.publishing == said and report.max_drop == 0.01 and report.model_base_path == str(base)
    config = (base / "models.config").read_text()
    assert 'key: "compressed"' in config and "pruned_dynamic" not in config
    # a server on that config: unlabelled requests and 'compressed' get the chosen variant (template 4: 0.84)
    registry = _registry(base)
    assert _positive(registry) == pytest.approx((3, 0.84))
    assert _positive(registry, label="compressed") == pytest.approx((3, 0.84))
    assert _positive(registry, label="pruned") == pytest.approx((2, 0.82))
    card = json.loads((base / "tiny" / "3" / "assets" / "llmos.json").read_text())
    assert card["version"] == 3 and card["version_labels"] == ["pruned_float16", "compressed"]
    # the report says all of it, in every rendering
    text, markdown = report.to_text(), report.to_markdown()
    assert "held back" in text and "3 (compressed)" in text and "held back pruned_dynamic" in markdown
    report.save(root / "report")
    again = load_report(root / "report" / "report.json")
    assert again.to_dict() == report.to_dict() and again.row("pruned_dynamic").status == "held back"


def test_publish_compressed_publishes_only_the_chosen_one(measured):
    report, staged, root = measured
    base = root / "models"
    published = publish_variants(report, staged, max_drop=0.01, publish="compressed", model_base_path=base, name="tiny", say=lambda _: None)
    assert [(r.variant, r.version) for r in published] == [("pruned_float16", 1)]
    assert report.row("pruned").status == "staged" and report.row("pruned_dynamic").status == "held back"
    assert [p.name for p in (base / "tiny").iterdir() if p.name.isdigit()] == ["1"]


def test_no_variant_within_the_drop_publishes_nothing_and_says_how_to_accept_it(measured):
    report, staged, root = measured
    base = root / "models"
    for variant in ("pruned", "pruned_float16"):
        report.row(variant).delta = -0.05
        report.row(variant).metric = 0.85
    said: list[str] = []
    assert publish_variants(report, staged, max_drop=0.01, publish="all", model_base_path=base, name="tiny", say=said.append) == []
    assert not base.exists()
    assert all(r.status == "held back" for r in report.rows if r.variant != "dense")
    (why,) = [line for line in said if line.startswith("nothing published")]
    assert "pruned_dynamic" in why and "2.8 points" in why and "--max_drop 0.028" in why


def test_without_model_base_path_nothing_is_published(measured, monkeypatch):
    report, staged, root = measured
    monkeypatch.chdir(root)
    said: list[str] = []
    assert publish_variants(report, staged, max_drop=0.01, publish="all", model_base_path=None, name="tiny", say=said.append) == []
    assert not (root / "saved_models").exists() and not list(root.rglob("models.config"))
    assert [r.status for r in report.rows] == ["reference", "staged", "held back", "staged"]
    assert any("no --model_base_path" in line and str(staged["dense"].parent) in line for line in said)


def test_publish_none_and_old_reports_still_load(measured, tmp_path):
    report, staged, root = measured
    said: list[str] = []
    publish_variants(report, staged, max_drop=0.05, publish="none", model_base_path=root / "models", name="tiny", say=said.append)
    assert not (root / "models").exists() and any("--publish none" in line for line in said)
    old = {"run": "r", "metric": "accuracy", "model_name": "m", "variants": [
        {"variant": "dense", "metric": 0.9, "sparsity": 0.0, "size_bytes": 10, "gzip_bytes": 9, "p50_ms_batch1": 1.0,
         "throughput_batch32": 5.0, "format": "savedmodel", "version": None, "label": None, "delta": 0.0, "details": {}}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = load_report(tmp_path / "old.json")
    assert loaded.dense.tflite_bytes is None and loaded.publishing == [] and loaded.max_drop is None
