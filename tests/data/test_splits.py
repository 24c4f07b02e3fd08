"""Stratified, seeded validation splits that keep source lines."""
from __future__ import annotations

import pandas as pd
import pytest

from llmos_tf.data.splits import stratified_split
from llmos_tf.errors import DataError


def frame(counts: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, n in counts.items() for _ in range(n)]
    df = pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels, "line": range(2, len(labels) + 2)})
    df.attrs.update({"path": "train.csv", "format": "csv"})
    return df


def test_deterministic_for_a_seed():
    df = frame({"a": 50, "b": 30, "c": 20})
    t1, v1 = stratified_split(df, 0.2, seed=3)
    t2, v2 = stratified_split(df, 0.2, seed=3)
    pd.testing.assert_frame_equal(t1, t2)
    pd.testing.assert_frame_equal(v1, v2)
    _, v3 = stratified_split(df, 0.2, seed=4)
    assert v1["line"].tolist() != v3["line"].tolist()


def test_proportions_and_disjoint():
    df = frame({"a": 50, "b": 30, "c": 20})
    train, validation = stratified_split(df, 0.2, seed=0)
    assert len(validation) == 20 and len(train) == 80
    assert validation["label"].value_counts().to_dict() == {"a": 10, "b": 6, "c": 4}
    assert set(train["line"]).isdisjoint(validation["line"])
    assert sorted(train["line"].tolist() + validation["line"].tolist()) == df["line"].tolist()


def test_keeps_attrs_lines_and_file_order():
    train, validation = stratified_split(frame({"a": 10, "b": 10}), 0.3, seed=0)
    assert train.attrs == {"path": "train.csv", "format": "csv"} == validation.attrs
    assert list(train.columns) == ["text", "label", "line"]
    assert train["line"].is_monotonic_increasing and validation["line"].is_monotonic_increasing
    assert train.index.tolist() == list(range(len(train)))


def test_singleton_classes_stay_in_train():
    df = frame({"a": 10, "b": 10, "rare": 1, "rarer": 1})
    train, validation = stratified_split(df, 0.2, seed=0)
    assert {"rare", "rarer"} <= set(train["label"])
    assert not {"rare", "rarer"} & set(validation["label"])
    assert len(train) + len(validation) == len(df)


def test_all_singletons_is_an_error():
    with pytest.raises(DataError, match="train.csv.*validation"):
        stratified_split(frame({"a": 1, "b": 1, "c": 1}), 0.5, seed=0)


def test_fraction_too_small_for_classes():
    with pytest.raises(DataError, match="train.csv.*stratified.*validation fraction"):
        stratified_split(frame({c: 2 for c in "abcdefghij"}), 0.1, seed=0)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "x"])
def test_invalid_fraction(fraction):
    with pytest.raises(DataError, match="fraction"):
        stratified_split(frame({"a": 5, "b": 5}), fraction, seed=0)


def test_token_frames_without_label_use_random_split():
    df = pd.DataFrame({"tokens": [["w"]] * 20, "tags": [["O"]] * 20, "line": range(1, 40, 2)})
    df.attrs["path"] = "ner.conll"
    train, validation = stratified_split(df, 0.25, seed=1)
    assert len(validation) == 5 and len(train) == 15
    assert stratified_split(df, 0.25, seed=1)[1]["line"].tolist() == validation["line"].tolist()
    assert train.attrs["path"] == "ner.conll"


def test_single_row_cannot_be_split():
    df = pd.DataFrame({"tokens": [["w"]], "tags": [["O"]], "line": [1]})
    with pytest.raises(DataError, match="cannot be split"):
        stratified_split(df, 0.5, seed=0)
