import json

from llmos_tf.cli import main


def test_doctor_reports_devices_strategy_and_tpu_findings(capsys):
    assert main(["doctor", "configs/sample_bilstm.yaml", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["strategy_auto"] == "default"
    assert any(d.startswith("CPU") for d in report["devices"])
    assert any("tpu_mode" in f for f in report["tpu_findings"])
    assert main(["doctor", "configs/sample_bilstm.yaml", "--set", "data.tpu_mode=true", "--set", "data.bucketing=false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tpu_findings"] == []
    assert main(["doctor", "configs/sample_bilstm.yaml"]) == 0
    out = capsys.readouterr().out
    assert "strategy_auto" in out and "TPU readiness" in out
