import pytest

from llmos_tf.config import config_from_dict, dump_config, load_config, parse_override
from llmos_tf.errors import ConfigError


def test_defaults_and_overrides():
    cfg = config_from_dict({"name": "x", "data": {"train": "a.csv"}}, ["training.epochs=7", "model.lstm_layers=2", "data.bucket_boundaries=[4,8]"])
    assert cfg.training.epochs == 7
    assert cfg.model["lstm_layers"] == 2 and cfg.model["architecture"] == "bilstm"
    assert cfg.data.bucket_boundaries == [4, 8]
    assert str(cfg.run_dir).endswith("runs/x")


def test_dump_round_trip():
    cfg = config_from_dict({"name": "x", "training": {"learning_rate": 0.01}})
    import yaml

    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


@pytest.mark.parametrize(
    "override, words",
    [
        ("trainin.epochs=3", ["unknown config key 'trainin'", "training"]),
        ("training.epoch=3", ["'training.epoch'", "epochs"]),
        ("model.lstm_unitz=3", ["'model.lstm_unitz'", "lstm_units"]),
        ("training.epochs=abc", ["training.epochs", "integer"]),
        ("data.bucketing=maybe", ["data.bucketing", "true or false"]),
        ("training.epochs=0", ["training.epochs", "at least 1"]),
        ("model.architecture=transformerxl", ["unknown architecture", "bilstm"]),
        ("training.optimizer=lion", ["training.optimizer", "adamw"]),
        ("nokey", ["key=value"]),
    ],
)
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x"}, [override])
    for word in words:
        assert word in str(err.value)


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata:\n  train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_parse_override_types():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b=0.5") == ("a.b", 0.5)
    assert parse_override("a.b=hello") == ("a.b", "hello")
    assert parse_override("a.b=") == ("a.b", "")
