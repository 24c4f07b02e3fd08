"""Every notebook runs top to bottom in a fresh kernel (nbclient), with its parameters pointed at
small data in a temporary folder, and what its cells produce is checked, not only that they ran.

Papermill's convention is used without papermill: the values for a notebook go into a new cell
tagged ``injected-parameters`` right after its ``parameters`` cell; a last cell appended by the
test prints a JSON "probe" of the notebook's variables.
"""
from __future__ import annotations

import json
import os
import pathlib
import signal

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
PROBE = "PROBE "


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def execute(name: str, parameters: dict, probe: str, cwd: pathlib.Path, timeout: int = 400):
    """Run a notebook with injected parameters; returns (executed notebook, probe dict)."""
    nb = _read(name)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in parameters.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    nb.cells.append(nbformat.v4.new_code_cell(f"import json as _json\nprint({PROBE!r} + _json.dumps({probe}, default=str))"))
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    lines = [o["text"] for o in nb.cells[-1].outputs if o.get("name") == "stdout"]
    line = next(l for l in "".join(lines).splitlines() if l.startswith(PROBE))
    return nb, json.loads(line[len(PROBE):])


def tagged(nb, tag: str) -> list:
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


def mime_outputs(cell, mime: str) -> list[str]:
    return [o["data"][mime] for o in cell.outputs if mime in o.get("data", {})]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    return {"root": root, "DATA_DIR": str(root / "data"), "RUNS_DIR": str(root / "runs"), "CONFIG_DIR": str(ROOT / "configs")}


@pytest.fixture(scope="module")
def quickstart(workspace):
    params = {k: workspace[k] for k in ("DATA_DIR", "RUNS_DIR", "CONFIG_DIR")} | {"BILSTM_EPOCHS": 3, "BERT_EPOCHS": 2}
    probe = ('{"comparison": comparison.to_dict(), "history_shape": list(bilstm.history.shape), '
             '"labels": predictions["label"].tolist(), "bilstm_dir": str(bilstm.run_dir), "bert_arch": bert.info["architecture"]}')
    return execute("01_quickstart", params, probe, workspace["root"])


def test_notebooks_are_stripped_and_parameterised():
    for name in NAMES:
        nb = _read(name)
        nbformat.validate(nb)
        assert nb.nbformat == 4
        assert len([c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]) == 1, name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs are not stripped"


def test_01_quickstart(quickstart):
    nb, probe = quickstart
    assert probe["bert_arch"] == "bert"
    assert probe["history_shape"][0] == 3  # three epochs, one row each
    comparison = probe["comparison"]
    assert set(comparison["test accuracy"]) == {"BiLSTM", "BERT"}
    assert 0.75 <= comparison["test accuracy"]["BiLSTM"] <= 1.0, comparison  # the sample data is learnable
    assert 0.5 <= comparison["test accuracy"]["BERT"] <= 1.0, comparison
    assert probe["labels"][:2] == ["positive", "negative"]  # BiLSTM on a clearly positive and a clearly negative text
    for cell in tagged(nb, "plot"):
        assert mime_outputs(cell, "image/png"), cell.source
    (evaluation,) = tagged(nb, "evaluation")
    page = mime_outputs(evaluation, "text/html")[0]
    assert page.count("<table") == 2 and "macro_f1" in page


def test_02_compression(quickstart, workspace):
    runs = pathlib.Path(quickstart[1]["bilstm_dir"]).parent
    params = {"RUN_DIR": str(runs / "sample_bilstm"), "TEACHER_DIR": str(runs / "sample_bert"), "DATA_DIR": workspace["DATA_DIR"],
              "RUNS_DIR": str(workspace["root"] / "distill_runs"), "CONFIG_DIR": workspace["CONFIG_DIR"],
              "MODEL_BASE_PATH": str(workspace["root"] / "compressed"), "TARGET_SPARSITY": 0.5,
              "QUANTIZE": [],  # TFLite conversion of an LSTM takes minutes here; tests/compression covers it
              "STEPS_PER_EPOCH": 6, "EPOCHS": 2}
    probe = ('{"rows": report.to_frame().to_dict(orient="records"), "versions": versions, '
             '"distilled": distilled.metrics["validation"]["accuracy"], "student": distilled.info["architecture"]}')
    nb, probe = execute("02_compression", params, probe, workspace["root"])
    rows = {r["variant"]: r for r in probe["rows"]}
    assert set(rows) == {"dense", "pruned"}
    assert rows["pruned"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    for row in rows.values():
        assert 0.5 <= row["accuracy"] <= 1.0, row
    assert rows["pruned"]["gzip_bytes"] < rows["dense"]["gzip_bytes"]  # half the weights are zeros
    published = sorted(int(r["version"]) for r in rows.values() if r["version"] == r["version"] and r["version"] is not None)
    assert probe["versions"] == published == [1]  # the pruned variant, served as version 1
    (report,) = tagged(nb, "report")
    assert "<table" in mime_outputs(report, "text/html")[0]
    (plot,) = tagged(nb, "plot")
    assert mime_outputs(plot, "image/png")
    assert probe["student"] == "bilstm" and 0.6 <= probe["distilled"] <= 1.0  # a learnt student, not a copy


def test_03_serving(quickstart, workspace):
    bilstm_dir = quickstart[1]["bilstm_dir"]
    params = {"RUN_DIR": bilstm_dir, "DATA_DIR": workspace["DATA_DIR"], "CONFIG_DIR": workspace["CONFIG_DIR"],
              "MODEL_BASE_PATH": str(workspace["root"] / "saved_models")}
    probe = ('{"grpc": grpc_answer["label"].tolist(), "rest": [p["label"] for p in rest_answer["predictions"]], '
             '"counts": request_counts, "exit_code": exit_code, "version": str(version_dir), "pid": server.pid}')
    nb, probe = execute("03_serving", params, probe, workspace["root"])
    assert pathlib.Path(probe["version"]).name == "1"
    assert probe["grpc"][:2] == ["positive", "negative"]
    assert probe["rest"] == probe["grpc"]  # both protocols, one model
    predict_counts = [line for line in probe["counts"] if "Predict" in line or "predict" in line]
    assert predict_counts and sum(float(line.rsplit(" ", 1)[1]) for line in predict_counts) >= 2
    assert probe["exit_code"] == 0
    with pytest.raises(ProcessLookupError):  # the server is gone
        os.kill(probe["pid"], 0)


def test_04_tensorboard(quickstart, workspace):
    params = {k: workspace[k] for k in ("DATA_DIR", "RUNS_DIR", "CONFIG_DIR")} | {"LAUNCH_TENSORBOARD": True, "STOP_TENSORBOARD": True}
    probe = '{"hparams": table.reset_index().to_dict(orient="records"), "inventory": inventory.reset_index().to_dict(orient="records"), "tb_port": tb_port}'
    try:
        nb, probe = execute("04_tensorboard", params, probe, workspace["root"])
    finally:
        _stop_tensorboards(workspace["RUNS_DIR"])
    rows = {r["run"]: r for r in probe["hparams"]}
    assert set(rows) == {"sample_bilstm", "sample_bert"}
    assert rows["sample_bilstm"]["architecture"] == "bilstm" and rows["sample_bert"]["architecture"] == "bert"
    assert 0.5 <= rows["sample_bilstm"]["validation epoch_accuracy"] <= 1.0
    for row in probe["inventory"]:
        assert row["projector"] and row["hparams"] and row["pr_curves"] == 2 and "confusion_matrix" in row["images"], row
    (board,) = tagged(nb, "tensorboard")
    shown = "".join(mime_outputs(board, "text/html"))
    assert str(probe["tb_port"]) in shown and "iframe" in shown  # TensorBoard came up and was embedded


def _stop_tensorboards(logdir: str) -> None:
    from tensorboard import manager

    for info in manager.get_all():
        if logdir in info.logdir:
            try:
                os.kill(info.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_05_ner(workspace):
    params = {k: workspace[k] for k in ("DATA_DIR", "CONFIG_DIR")} | {"RUNS_DIR": str(workspace["root"] / "ner_runs"), "EPOCHS": 4}
    probe = '{"f1": evaluation["entity_f1"], "shape": list(predictions.shape), "entities": predictions["entities"].tolist()}'
    nb, probe = execute("05_ner", params, probe, workspace["root"])
    assert 0.3 <= probe["f1"] <= 1.0, probe["f1"]
    assert probe["shape"] == [2, 4]
    (cell,) = tagged(nb, "entities")
    page = mime_outputs(cell, "text/html")[0]
    found = sum(len(e) for e in probe["entities"])
    assert found >= 1 and page.count("<mark") == found
