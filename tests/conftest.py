"""Shared fixtures: tiny data the tests make themselves (no network, no ../shared)."""
from __future__ import annotations

import csv
import pathlib
import random

import pytest

import llmos_tf  # noqa: F401  (selects tf_keras before TensorFlow loads)

POSITIVE = ["great", "wonderful", "lovely", "brilliant", "superb", "delightful", "moving", "funny"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "tedious", "clumsy", "bland", "painful"]
NOUNS = ["film", "movie", "story", "cast", "script", "ending", "soundtrack", "plot"]


def make_sentiment_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Short review-like sentences whose label follows the adjective: learnable in a few steps."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = POSITIVE if label == "positive" else NEGATIVE
        noun = rng.choice(NOUNS)
        extra = " ".join(rng.choice(NOUNS) for _ in range(rng.randint(0, 6)))
        rows.append((f"the {noun} was {rng.choice(words)} and {rng.choice(words)} {extra}".strip(), label))
    return rows


def write_csv(path: pathlib.Path, rows, header=("text", "label")) -> pathlib.Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("tiny_data")
    return {
        "train": write_csv(root / "train.csv", make_sentiment_rows(240, seed=1)),
        "test": write_csv(root / "test.csv", make_sentiment_rows(60, seed=2)),
    }


def tiny_config_text(train: pathlib.Path, output_dir: pathlib.Path, name: str = "tiny", epochs: int = 3, extra: str = "") -> str:
    return f"""
name: {name}
seed: 7
output_dir: {output_dir}
data:
  train: {train}
  validation_fraction: 0.2
  max_length: 16
  bucket_boundaries: [4, 8, 12]
text:
  vocabulary_size: 120
model:
  architecture: bilstm
  embedding_dim: 16
  lstm_units: 16
  dropout: 0.1
training:
  epochs: {epochs}
  batch_size: 16
  learning_rate: 0.01
  log_every_steps: 5
  backup_every_steps: 5
  early_stopping_patience: 0
{extra}
"""


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_data) -> pathlib.Path:
    """One tiny BiLSTM run shared by the evaluate/predict/export/TensorBoard tests."""
    from llmos_tf.cli import main

    root = tmp_path_factory.mktemp("trained")
    config = root / "tiny.yaml"
    config.write_text(tiny_config_text(tiny_data["train"], root / "runs", epochs=4))
    assert main(["train", str(config)]) == 0
    return root / "runs" / "tiny"


@pytest.fixture(scope="session")
def tiny_ner_run(tmp_path_factory) -> dict:
    """The sample BERT tagger trained once through ``llmos train`` (3 epochs), shared by the NER CLI and
    NER compression tests; ``stdout`` is what the training printed. Tests must not modify the run folder."""
    import contextlib
    import io

    import yaml

    from llmos_tf.cli import main
    from llmos_tf.data.sample import write_sample_data

    root = tmp_path_factory.mktemp("ner")
    paths = write_sample_data(root / "data")
    config = yaml.safe_load(open("configs/sample_ner.yaml"))
    config.update(output_dir=str(root / "runs"), name="ner")
    config["data"].update(train=str(paths["ner_train"]), validation=str(paths["ner_valid"]))
    config["training"]["epochs"] = 3
    (root / "ner.yaml").write_text(yaml.safe_dump(config))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", str(root / "ner.yaml")]) == 0
    return {"run_dir": root / "runs" / "ner", "paths": paths, "stdout": printed.getvalue()}


@pytest.fixture(scope="session")
def tiny_multitask_run(tmp_path_factory) -> dict:
    """The tiny sentiment + NER multitask run trained once through ``llmos train``, shared by the
    multitask training and export tests; ``stdout`` is what the training printed. Do not modify it."""
    import contextlib
    import io

    from tests.training.multitask_fixture import train_tiny_multitask

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_dir, paths = train_tiny_multitask(tmp_path_factory.mktemp("multitask"))
    return {"run_dir": run_dir, "paths": paths, "stdout": printed.getvalue()}


TINY_BERT_MODEL = """
model:
  architecture: bert
  encoder: null
  num_layers: 1
  hidden_dim: 32
  num_heads: 2
  intermediate_dim: 64
  dropout: 0.0
  pooling: mean
"""


def tiny_bert_config_text(train: pathlib.Path, output_dir: pathlib.Path, name: str = "tiny_bert", epochs: int = 3) -> str:
    """The tiny BiLSTM config with a one-layer random-init BERT (learnt WordPiece vocabulary) as model."""
    text = tiny_config_text(train, output_dir, name=name, epochs=epochs)
    text = text.replace("""model:
  architecture: bilstm
  embedding_dim: 16
  lstm_units: 16
  dropout: 0.1
""", TINY_BERT_MODEL)
    return text.replace("learning_rate: 0.01", "learning_rate: 0.003")


@pytest.fixture(scope="session")
def tiny_bert_run(tmp_path_factory, tiny_data) -> pathlib.Path:
    """One tiny BERT classifier run (1 layer, 32 units, 3 epochs) shared by explain/compose/structured
    compression tests. Tests must not modify the run folder."""
    from llmos_tf.cli import main

    root = tmp_path_factory.mktemp("tiny_bert")
    config = root / "tiny_bert.yaml"
    config.write_text(tiny_bert_config_text(tiny_data["train"], root / "runs"))
    assert main(["train", str(config)]) == 0
    return root / "runs" / "tiny_bert"
