"""Shared fixtures: tiny data the tests make themselves (no network, no ../shared)."""
from __future__ import annotations

import csv
import os
import pathlib
import pickle
import random
import shutil
from typing import Any, Callable

import pytest
from filelock import FileLock

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


def built_once(tmp_path_factory, name: str, build: Callable[[pathlib.Path], Any]) -> Any:
    """``build(folder)``'s result, built once for the whole test run even under pytest-xdist.

    Each xdist worker is its own process with its own session fixtures, so a session fixture that trains a
    tiny run would train it once per worker. The first worker to get here builds it into a folder beside
    the workers' own temporary folders, under a file lock; the others wait for the lock and reuse the
    recorded result (pickled, so paths stay paths). A build that raised leaves no record, so the next
    worker tries again and fails the same way; a half-built folder is removed first."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / f"built_once_{name}"
    with FileLock(str(folder) + ".lock"):
        record = folder / ".built_once.pickle"
        if record.exists():
            return pickle.loads(record.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        value = build(folder)
        record.write_bytes(pickle.dumps(value))
        return value


# The slowest test files, slowest first (from `make test`'s --durations table). `make test` runs two
# xdist workers with --dist loadfile --no-loadscope-reorder: each worker is handed one file at a time,
# in collection order, so starting the long files first lets both workers finish together instead of
# one running a long file alone at the end (xdist's own reorder puts files with the most tests first,
# which put these last).
SLOW_FILES_FIRST = (
    "tests/notebooks/test_notebooks.py",
    "tests/test_readme_tour.py",
    "tests/training/test_multi_worker.py",
    "tests/training/test_distribute.py",
    "tests/training/test_bilstm_crf.py",
    "tests/compression/test_compress_serving.py",
    "tests/compression/test_compress_tagger.py",
    "tests/training/test_resume.py",
    "tests/compression/test_structured_compress.py",
    "tests/training/test_tasks.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Slow files first (see :data:`SLOW_FILES_FIRST`); everything else keeps its collection order."""
    rank = {path: i for i, path in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, pathlib.Path]:
    return built_once(tmp_path_factory, "tiny_data", lambda root: {
        "train": write_csv(root / "train.csv", make_sentiment_rows(240, seed=1)),
        "test": write_csv(root / "test.csv", make_sentiment_rows(60, seed=2)),
    })


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
    def build(root: pathlib.Path) -> pathlib.Path:
        from llmos_tf.cli import main

        config = root / "tiny.yaml"
        config.write_text(tiny_config_text(tiny_data["train"], root / "runs", epochs=4))
        assert main(["train", str(config)]) == 0
        return root / "runs" / "tiny"

    return built_once(tmp_path_factory, "trained_run", build)


@pytest.fixture(scope="session")
def tiny_ner_run(tmp_path_factory) -> dict:
    """The sample BERT tagger trained once through ``llmos train`` (3 epochs), shared by the NER CLI and
    NER compression tests; ``stdout`` is what the training printed. Tests must not modify the run folder."""
    def build(root: pathlib.Path) -> dict:
        import contextlib
        import io

        import yaml

        from llmos_tf.cli import main
        from llmos_tf.data.sample import write_sample_data

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

    return built_once(tmp_path_factory, "tiny_ner_run", build)


@pytest.fixture(scope="session")
def tiny_multitask_run(tmp_path_factory) -> dict:
    """The tiny sentiment + NER multitask run trained once through ``llmos train``, shared by the
    multitask training and export tests; ``stdout`` is what the training printed. Do not modify it."""
    def build(root: pathlib.Path) -> dict:
        import contextlib
        import io

        from tests.training.multitask_fixture import train_tiny_multitask

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            run_dir, paths = train_tiny_multitask(root)
        return {"run_dir": run_dir, "paths": paths, "stdout": printed.getvalue()}

    return built_once(tmp_path_factory, "tiny_multitask_run", build)


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
    def build(root: pathlib.Path) -> pathlib.Path:
        from llmos_tf.cli import main

        config = root / "tiny_bert.yaml"
        config.write_text(tiny_bert_config_text(tiny_data["train"], root / "runs"))
        assert main(["train", str(config)]) == 0
        return root / "runs" / "tiny_bert"

    return built_once(tmp_path_factory, "tiny_bert_run", build)
