"""The generated sample data: every file written, deterministic, readable by the readers."""
from __future__ import annotations

import pytest

from llmos_tf.data.conll import read_conll
from llmos_tf.data.readers import read_labelled_table
from llmos_tf.data.sample import main, write_sample_data

EXPECTED = {
    "sentiment_train": "sentiment_train.csv",
    "sentiment_test": "sentiment_test.csv",
    "sentiment_train_tsv": "sentiment_train.tsv",
    "sentiment_train_parquet": "sentiment_train.parquet",
    "intent_train": "intent_train.jsonl",
    "intent_test": "intent_test.jsonl",
    "ner_train": "ner_train.conll",
    "ner_valid": "ner_valid.conll",
    "corpus": "corpus.txt",
}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    paths = write_sample_data(out, seed=0)
    return out, paths


def test_all_files_written(sample_dir):
    out, paths = sample_dir
    assert {key: path.name for key, path in paths.items()} == EXPECTED
    assert all(path.parent == out and path.stat().st_size > 0 for path in paths.values())
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED.values())  # no temp files left


def test_deterministic_per_seed(sample_dir, tmp_path):
    _, paths = sample_dir
    again = write_sample_data(tmp_path / "again", seed=0)
    other = write_sample_data(tmp_path / "other", seed=1)
    for key, path in paths.items():
        assert again[key].read_bytes() == path.read_bytes(), key
    assert other["sentiment_train"].read_bytes() != paths["sentiment_train"].read_bytes()


def test_sentiment_files(sample_dir):
    _, paths = sample_dir
    train = read_labelled_table(paths["sentiment_train"])
    test = read_labelled_table(paths["sentiment_test"])
    assert len(train) == 480 and len(test) == 120
    assert set(train["label"]) == set(test["label"]) == {"positive", "negative"}
    assert abs((train["label"] == "positive").mean() - 0.5) < 0.05
    lengths = train["text"].str.split().str.len()
    assert lengths.min() >= 4 and lengths.max() <= 30
    for key in ("sentiment_train_tsv", "sentiment_train_parquet"):
        other = read_labelled_table(paths[key])
        assert other["text"].tolist() == train["text"].tolist(), key
        assert other["label"].tolist() == train["label"].tolist(), key
    assert read_labelled_table(paths["sentiment_train_tsv"]).attrs["text_column"] == "sentence"


def test_intent_files(sample_dir):
    _, paths = sample_dir
    train = read_labelled_table(paths["intent_train"])
    test = read_labelled_table(paths["intent_test"])
    assert train.attrs["label_column"] == "category"
    assert len(train) + len(test) == 450
    assert 5 <= train["label"].nunique() <= 6 and set(test["label"]) == set(train["label"])


def test_ner_files(sample_dir):
    _, paths = sample_dir
    train = read_conll(paths["ner_train"])
    valid = read_conll(paths["ner_valid"])
    assert len(train) == 300 and len(valid) == 80
    tags = {tag for row in train["tags"] for tag in row}
    assert {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "B-MISC"} <= tags
    for tokens, row in zip(train["tokens"], train["tags"]):
        assert len(tokens) == len(row)
        for prev, tag in zip(["O"] + row, row):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:]


def test_corpus(sample_dir):
    _, paths = sample_dir
    lines = paths["corpus"].read_text(encoding="utf-8").splitlines()
    assert 450 <= len(lines) <= 550 and all(line.strip() for line in lines)


def test_module_entry_point(tmp_path, capsys):
    assert main([str(tmp_path / "cli"), "--seed", "2", "--n-sentiment", "40", "--n-intent", "30"]) == 0
    assert (tmp_path / "cli" / "corpus.txt").exists()
    assert "sentiment_train" in capsys.readouterr().out
