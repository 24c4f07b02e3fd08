import json

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.cli import main
from llmos_tf.training.doctor import graph_findings


def test_doctor_reports_devices_strategy_and_tpu_findings(capsys):
    assert main(["doctor", "configs/sample_bilstm.yaml", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["strategy_auto"] == "default"
    assert any(d.startswith("CPU") for d in report["devices"])
    # the sample config buckets by length: the only problem is the config, the BiLSTM graph itself is TPU-ready
    assert len(report["tpu_findings"]) == 1 and "data.tpu_mode is false" in report["tpu_findings"][0]

    assert main(["doctor", "configs/sample_bilstm.yaml", "--set", "data.tpu_mode=true", "--set", "data.bucketing=false"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["llmos doctor", "------------"]
    rows = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in lines[2:] if "  " in line and not line.startswith(" ")}
    assert rows["strategy_auto"] == "default"
    assert "CPU:/device:CPU:0" in rows["devices"].split(", ")
    assert rows["tf_config"] == "False"
    assert lines[-1] == "TPU readiness of configs/sample_bilstm.yaml: ready"


def test_doctor_tpu_strategy_choice_with_tpu_name(capsys):
    assert main(["doctor", "--tpu", "my-tpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["strategy_auto"] == "tpu"


def _model(body):
    ids = tf_keras.Input(shape=(8,), dtype="int32", name="token_ids")
    x = tf_keras.layers.Lambda(body)(ids)
    return tf_keras.Model(ids, tf_keras.layers.Dense(2)(x))


def test_graph_findings_flag_string_ops_dynamic_shapes_and_non_xla_ops():
    clean = _model(lambda ids: tf.cast(ids, tf.float32))
    assert graph_findings(clean, batch_size=4, length=8) == []

    strings = graph_findings(_model(lambda ids: tf.cast(tf.strings.length(tf.strings.as_string(ids)), tf.float32)), 4, 8)
    assert any(f.startswith("string op AsString") for f in strings), strings

    dynamic = graph_findings(_model(lambda ids: tf.cast(tf.reshape(tf.boolean_mask(ids, ids > 0), [-1, 8]), tf.float32)), 4, 8)
    assert any(f.startswith("dynamic shape: Where") for f in dynamic), dynamic

    def host(ids):
        out = tf.py_function(lambda t: np.asarray(t, np.float32), [ids], tf.float32)
        return tf.ensure_shape(out, [None, 8])

    py = graph_findings(_model(host), 4, 8)
    assert any("XLA (the TPU compiler) cannot compile" in f and "PyFunc" in f for f in py), py
