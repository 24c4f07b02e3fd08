"""benchmarks/serving.py end to end on the tiny fixture classifier (server in-process, peers off)."""
from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

from tests.serving import fixtures as fx

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "serving.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_serving", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_reads_tsv_csv_and_txt(bench, tmp_path):
    (tmp_path / "d.tsv").write_text('sentence\tlabel\na "quoted" film .\t1\ndull\t0\n')
    (tmp_path / "d.csv").write_text("text,category\n\"hello, world\",a\nbye,b\n")
    (tmp_path / "d.txt").write_text("one\n\ntwo\nthree\n")
    assert bench.read_sentences(str(tmp_path / "d.tsv"), None) == ['a "quoted" film .', "dull"]
    assert bench.read_sentences(str(tmp_path / "d.csv"), 1) == ["hello, world"]
    assert bench.read_sentences(str(tmp_path / "d.txt"), None) == ["one", "two", "three"]
    assert len(bench.read_sentences(None, 3)) == 3


def test_served_and_in_process_rows(bench, tmp_path):
    base = tmp_path / "models"
    fx.add_version(base / "tiny", "classifier", 1)
    fx.add_version(base / "tiny", "classifier", 2)
    (base / "models.config").write_text(
        'model_config_list { config { name: "tiny" base_path: "tiny" model_version_policy { all {} } '
        'version_labels { key: "stable" value: 1 } } }')
    data = tmp_path / "sentences.txt"
    data.write_text("\n".join(f"a good film number {i}" if i % 2 else f"film {i}" for i in range(40)))
    out = tmp_path / "rows.json"
    code = bench.main(["--model_base_path", str(base), "--model", "tiny@stable", "--data", str(data), "--limit", "40",
                       "--modes", "grpc", "rest", "in-process", "--no_peers", "--server", "in-process", "--concurrency", "4",
                       "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["version"] == 1 and result["label"] == "stable" and result["sentences"] == 40
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {"served gRPC (SavedModel, batching on), c=4", "served REST (SavedModel, batching on), c=4",
                         "in-process SavedModel serving_default, batch 32"}
    for row in rows.values():
        assert row["skipped"] is None and row["errors"] == 0 and row["sentences_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"]
