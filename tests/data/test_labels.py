"""LabelMap: stable ids, file round trip, and clear errors for unseen labels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmos_tf.data.labels import LabelMap, check_label_classes
from llmos_tf.errors import DataError


def test_from_labels_sorts_lexicographically():
    labels = LabelMap.from_labels(["pos", "neg", "pos", "neutral"])
    assert labels.names == ["neg", "neutral", "pos"]
    assert len(labels) == 3 and "neg" in labels and "other" not in labels


def test_from_labels_sorts_numeric_labels_numerically():
    assert LabelMap.from_labels(["10", "2", "1", "2"]).names == ["1", "2", "10"]
    assert LabelMap.from_labels(["-1", "0", "0.5"]).names == ["-1", "0", "0.5"]


def test_mixed_labels_sort_lexicographically():
    assert LabelMap.from_labels(["10", "2", "b"]).names == ["10", "2", "b"]


def test_encode_decode_round_trip():
    labels = LabelMap(["neg", "pos"])
    ids = labels.encode(["pos", "neg", "pos"])
    assert ids.dtype == np.int32 and ids.tolist() == [1, 0, 1]
    assert labels.decode(ids) == ["pos", "neg", "pos"]
    assert labels.decode(np.array([[0], [1]])) == ["neg", "pos"]
    assert labels.to_dict() == {"neg": 0, "pos": 1}


def test_unseen_label_names_file_and_line():
    labels = LabelMap(["a", "b", "c"])
    with pytest.raises(DataError) as info:
        labels.encode(["a", "foo"], path="dev.csv", lines=[8, 9])
    assert str(info.value) == "dev.csv, line 9: label 'foo' was never seen in training (known labels: a, b, c)"


def test_unseen_label_lists_at_most_twenty():
    labels = LabelMap([f"intent_{i:02d}" for i in range(77)])
    with pytest.raises(DataError) as info:
        labels.encode(["nope"])
    msg = str(info.value)
    assert "intent_19" in msg and "intent_20" not in msg and "(77 in all)" in msg


def test_decode_out_of_range():
    with pytest.raises(DataError, match="out of range"):
        LabelMap(["a"]).decode([3])


@pytest.mark.parametrize("names", [[], ["a", "a"], ["a", ""], ["a\nb"]])
def test_invalid_names(names):
    with pytest.raises(DataError):
        LabelMap(names)


def test_save_load_round_trip(tmp_path):
    labels = LabelMap(["négatif", "positif", "10"])
    path = tmp_path / "labels.txt"
    labels.save(path)
    assert path.read_text(encoding="utf-8") == "négatif\npositif\n10\n"
    assert LabelMap.load(path) == labels
    assert list(tmp_path.iterdir()) == [path]


def test_load_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="not found"):
        LabelMap.load(tmp_path / "labels.txt")
    (tmp_path / "labels.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        LabelMap.load(tmp_path / "labels.txt")


def test_load_blank_line(tmp_path):
    (tmp_path / "labels.txt").write_text("a\n\nb\n")
    with pytest.raises(DataError, match="line 2: empty label"):
        LabelMap.load(tmp_path / "labels.txt")


def test_check_label_classes_single_class():
    df = pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"], "line": [2, 3]})
    df.attrs.update({"path": "bank.csv", "label_column": "category"})
    with pytest.raises(DataError) as info:
        check_label_classes(df)
    assert str(info.value) == "bank.csv: label column 'category' has only one class ('x'); a classifier needs at least two"


def test_check_label_classes_ok():
    check_label_classes(pd.DataFrame({"label": ["x", "y"]}))
