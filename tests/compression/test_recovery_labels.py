"""A version published before ``data.label_names`` existed is recovered with the names its config now gives."""
import json
import pathlib

from llmos_tf.compression.recovery import _version_facts

CONFIG = """name: named
task: classification
data:
  train: train.csv
  label_names: {0: negative, 1: positive}
model:
  architecture: bilstm
"""


def _version(tmp_path: pathlib.Path, labels: list[str]) -> pathlib.Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "named.yaml").write_text(CONFIG, encoding="utf-8")
    version = tmp_path / "base" / "named" / "1"
    (version / "assets").mkdir(parents=True)
    card = {"labels": labels, "training_command": "llmos train configs/named.yaml --set output_dir=/elsewhere"}
    (version / "assets" / "llmos.json").write_text(json.dumps(card), encoding="utf-8")
    (version / "assets" / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return version


def test_raw_values_become_the_configs_names_in_id_order(tmp_path):
    card, labels, cfg = _version_facts(_version(tmp_path, ["0", "1"]), tmp_path)
    assert labels == ["negative", "positive"] and card["labels"] == ["0", "1"]
    assert cfg.data.label_names == {"0": "negative", "1": "positive"}


def test_labels_the_names_do_not_cover_stay_as_published(tmp_path):
    _, labels, _ = _version_facts(_version(tmp_path, ["0", "1", "2"]), tmp_path)
    assert labels == ["0", "1", "2"]
