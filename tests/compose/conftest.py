"""Compose test fixtures: the session's tiny BiLSTM and tiny BERT runs exported once, and a plain-TensorFlow loader."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import built_once


@pytest.fixture(scope="session")
def exported(trained_run, tiny_bert_run, tmp_path_factory) -> dict[str, pathlib.Path]:
    """``base`` (a model base path) with ``tiny_bert/1`` (has `encode`) and ``tiny_bilstm/1``; both answer negative/positive."""
    def build(base: pathlib.Path) -> dict[str, pathlib.Path]:
        from llmos_tf.export.writer import export_run

        return {"base": base, "bert": export_run(tiny_bert_run, base, "tiny_bert"), "bilstm": export_run(trained_run, base, "tiny_bilstm")}

    return built_once(tmp_path_factory, "compose_members", build)


def load_in_plain_tf(version_dir: pathlib.Path, signature: str, inputs: dict, tmp_path: pathlib.Path) -> dict:
    """Call ``signature`` of a SavedModel in a fresh interpreter that imports only tensorflow and tensorflow_text
    (no llmos_tf on the path), as TF Serving would; returns the outputs as lists."""
    script = f"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load({str(version_dir)!r})
inputs = json.loads({json.dumps(inputs)!r})
feeds = {{k: tf.constant(v, dtype=tf.int32 if k == "k" else tf.string) for k, v in inputs.items()}}
out = model.signatures[{signature!r}](**feeds)
assert not [m for m in sys.modules if m.startswith("llmos_tf")], "llmos_tf was imported"
print("OUT " + json.dumps({{k: (v.numpy().astype(str) if v.dtype == tf.string else v.numpy()).tolist() for k, v in out.items()}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("OUT "))
    return json.loads(line[4:])
