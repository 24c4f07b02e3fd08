"""data.label_names: config normalisation, validation against the data, and the names in every split.

Also the bring-your-own-data rule: overriding ``data.train`` drops the config's
validation, test and label names unless they are overridden too.
"""
from __future__ import annotations

import pytest

from llmos_tf.config import config_from_dict
from llmos_tf.data.labels import LabelMap, apply_label_names, check_label_names
from llmos_tf.data.prepare import prepare_classification_data
from llmos_tf.data.readers import read_labelled_table
from llmos_tf.errors import ConfigError, DataError
from tests.conftest import make_sentiment_rows, write_csv

NAMES = {"0": "negative", "1": "positive"}


def _numeric_rows(n: int, seed: int):
    """The fixture's sentences labelled as SST-2 does: 1 = positive, 0 = negative."""
    return [(text, "1" if label == "positive" else "0") for text, label in make_sentiment_rows(n, seed)]


@pytest.fixture
def numeric_files(tmp_path):
    return {
        "train": write_csv(tmp_path / "train.csv", _numeric_rows(60, 1), header=("sentence", "score")),
        "test": write_csv(tmp_path / "test.csv", _numeric_rows(20, 2), header=("sentence", "score")),
    }


# -- config --------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [{0: "negative", 1: "positive"}, {"0": "negative", "1": "positive"},
                                 {0.0: " negative", "1 ": "positive"}])
def test_keys_are_normalised_to_the_label_values_as_read(raw):
    cfg = config_from_dict({"data": {"train": "t.csv", "label_names": raw}})
    assert cfg.data.label_names == NAMES


def test_bool_keys_read_as_the_readers_read_true_and_false():
    cfg = config_from_dict({"data": {"train": "t.csv", "label_names": {True: "spam", False: "ham"}}})
    assert cfg.data.label_names == {"true": "spam", "false": "ham"}


def test_set_overrides_one_name_or_the_whole_mapping():
    base = {"data": {"train": "t.csv", "label_names": {0: "negative", 1: "positive"}}}
    assert config_from_dict(base, ["data.label_names.1=good"]).data.label_names == {"0": "negative", "1": "good"}
    assert config_from_dict(base, ["data.label_names={0: bad, 1: good}"]).data.label_names == {"0": "bad", "1": "good"}
    assert config_from_dict({"data": {"train": "t.csv"}}, ["data.label_names.0=neg", "data.label_names.1=pos"]).data.label_names == {"0": "neg", "1": "pos"}


@pytest.mark.parametrize("raw,message", [
    ({0: "same", 1: "same"}, "same name 'same'"),
    ({0: ""}, "one-line label name"),
    ({0: "two\nlines"}, "one-line label name"),
    ({0: ["a"]}, "one-line label name"),
    ({}, "expected a mapping of label value to name"),
    ("negative", "expected a mapping"),
])
def test_bad_label_names_are_config_errors(raw, message):
    with pytest.raises(ConfigError, match=message) as err:
        config_from_dict({"data": {"train": "t.csv", "label_names": raw}})
    assert "label_names" in str(err.value)


def test_label_names_only_apply_to_classification():
    with pytest.raises(ConfigError, match="only used with task: classification"):
        config_from_dict({"task": "ner", "data": {"train": "t.txt", "label_names": {0: "x"}}})
    ner_head = {"name": "ner", "task": "ner", "train": "n.txt", "label_names": {"O": "outside"}}
    sentiment = {"name": "sentiment", "train": "s.csv", "label_names": {0: "negative"}}
    with pytest.raises(ConfigError, match=r"heads\[1\]\.label_names: ner head 'ner'"):
        config_from_dict({"task": "multitask", "model": {"architecture": "bert"}, "training": {"monitor": "val_score"},
                          "heads": [sentiment, ner_head]})


# -- data ----------------------------------------------------------------------------------
def test_ids_follow_the_values_not_the_names():
    labels = LabelMap.from_labels(["1", "0", "1"], names={"0": "zebra", "1": "apple"})
    assert labels.names == ["zebra", "apple"]  # class 0 is the file's 0, although 'apple' sorts first
    assert LabelMap.from_labels(["b", "a"], names={"b": "bee"}).names == ["a", "bee"]


def test_encode_reads_values_through_the_names():
    labels = LabelMap(["negative", "positive"])
    assert labels.encode(["1", "negative", "0"], names=NAMES).tolist() == [1, 0, 0]
    with pytest.raises(DataError, match="label '2' was never seen"):
        labels.encode(["2"], names=NAMES)
    with pytest.raises(DataError, match="label '1' was never seen"):
        labels.encode(["1"])  # without the names a value is just an unknown label
    assert LabelMap(["0", "1"]).encode(["1", "0"], names=NAMES).tolist() == [1, 0]  # a run from before names


def test_check_label_names_names_the_key_and_the_values():
    with pytest.raises(ConfigError) as err:
        check_label_names({"0": "negative", "2": "positive"}, ["0", "1"], where="data.label_names", source="train.tsv")
    assert str(err.value) == "data.label_names: '2' is not a label value of train.tsv; its label values are: 0, 1"
    with pytest.raises(ConfigError, match="the name '1' is also a label value"):
        check_label_names({"0": "1"}, ["0", "1"], where="data.label_names", source="train.tsv")
    check_label_names({"0": "negative"}, ["0", "1"], where="data.label_names", source="train.tsv")  # a partial mapping is fine


def test_apply_label_names_keeps_lines_and_attrs(numeric_files):
    frame = read_labelled_table(numeric_files["train"], "sentence", "score")
    named = apply_label_names(frame, {"1": "positive"})
    assert set(named["label"]) == {"positive", "0"}
    assert named["line"].tolist() == frame["line"].tolist() and named.attrs == frame.attrs
    assert set(frame["label"]) == {"0", "1"}  # the input frame is untouched
    assert apply_label_names(frame, None) is frame


def test_prepared_data_carries_the_names_in_every_split(numeric_files):
    cfg = config_from_dict({"data": {"train": str(numeric_files["train"]), "test": str(numeric_files["test"]),
                                     "text_column": "sentence", "label_column": "score",
                                     "label_names": {1: "positive", 0: "negative"}, "validation_fraction": 0.25}})
    data = prepare_classification_data(cfg.data, seed=3)
    assert data.labels.names == ["negative", "positive"]
    for frame, ids in ((data.train, data.y_train), (data.validation, data.y_validation), (data.test, data.y_test)):
        assert set(frame["label"]) == {"negative", "positive"}
        assert data.labels.decode(ids) == frame["label"].tolist()
    raw = read_labelled_table(numeric_files["test"], "sentence", "score")
    assert data.y_test.tolist() == raw["label"].astype(int).tolist()  # id = the file's value


def test_a_key_the_data_lacks_is_a_clear_error(numeric_files):
    cfg = config_from_dict({"data": {"train": str(numeric_files["train"]), "text_column": "sentence", "label_column": "score",
                                     "label_names": {"pos": "positive", 0: "negative"}}})
    with pytest.raises(ConfigError) as err:
        prepare_classification_data(cfg.data, seed=0)
    message = str(err.value)
    assert message.startswith("data.label_names: 'pos' is not a label value of ")
    assert "train.csv (column 'score')" in message and message.endswith("its label values are: 0, 1")
    with pytest.raises(ConfigError, match=r"^heads\[2\]\.label_names: 'pos'"):
        prepare_classification_data(cfg.data, seed=0, names_key="heads[2].label_names")


# -- bring your own train file ---------------------------------------------------------------
SAMPLE_LIKE = {"name": "s", "data": {"train": "data/sample/sentiment_train.csv", "validation": "data/sample/dev.csv",
                                     "test": "data/sample/sentiment_test.csv", "label_names": {"0": "negative"},
                                     "validation_fraction": 0.15}}


def test_own_train_file_drops_the_configs_other_data(capsys):
    cfg = config_from_dict(SAMPLE_LIKE, ["data.train=own.csv", "data.text_column=review"])
    assert (cfg.data.train, cfg.data.validation, cfg.data.test, cfg.data.label_names) == ("own.csv", None, None, None)
    assert cfg.data.validation_fraction == 0.15 and cfg.data.text_column == "review"
    err = capsys.readouterr().err.strip().splitlines()
    info = [line for line in err if line.startswith("info:")]
    assert len(info) == 1
    assert "data.train is now own.csv" in info[0]
    for key in ("data.validation (data/sample/dev.csv)", "data.test (data/sample/sentiment_test.csv)", "data.label_names"):
        assert key in info[0], key
    assert "carved from it (data.validation_fraction)" in info[0] and "--set" in info[0]


def test_what_the_overrides_name_is_kept(capsys):
    cfg = config_from_dict(SAMPLE_LIKE, ["data.train=own.csv", "data.test=own_test.csv", "data.label_names.0=bad"])
    assert (cfg.data.validation, cfg.data.test, cfg.data.label_names) == (None, "own_test.csv", {"0": "bad"})
    info = capsys.readouterr().err
    assert "data.validation (data/sample/dev.csv) and data.label_names ({'0': 'negative'}) are not used" in info
    assert "data.test" not in info  # set by an override: kept


def test_the_same_train_file_keeps_everything(capsys):
    for overrides in (["data.train=./data/sample/sentiment_train.csv"], ["training.epochs=1"], []):
        cfg = config_from_dict(SAMPLE_LIKE, overrides)
        assert cfg.data.validation == "data/sample/dev.csv" and cfg.data.test == "data/sample/sentiment_test.csv"
        assert cfg.data.label_names == {"0": "negative"}
    assert "info:" not in capsys.readouterr().err


def test_a_config_without_other_data_prints_nothing(capsys):
    cfg = config_from_dict({"data": {"train": "a.csv"}}, ["data.train=b.csv"])
    assert cfg.data.train == "b.csv"
    assert capsys.readouterr().err == ""


def test_multitask_heads_name_their_own_labels(numeric_files, tmp_path):
    from llmos_tf.tasks.multitask_heads import prepare_heads

    other = write_csv(tmp_path / "topic.csv", [(f"text number {i}", "a" if i % 2 else "b") for i in range(40)])
    sentiment = {"name": "sentiment", "train": str(numeric_files["train"]), "text_column": "sentence",
                 "label_column": "score", "label_names": {0: "negative", 1: "positive"}}
    tree = {"task": "multitask", "model": {"architecture": "bert"}, "training": {"monitor": "val_score"},
            "heads": [sentiment, {"name": "topic", "train": str(other)}]}
    heads = prepare_heads(config_from_dict(tree))
    assert [h.labels.names for h in heads] == [["negative", "positive"], ["a", "b"]]
    assert set(heads[0].data.validation["label"]) == {"negative", "positive"}
    tree["heads"][1]["label_names"] = {"c": "sea"}
    with pytest.raises(ConfigError, match=r"^heads\[1\]\.label_names: 'c' is not a label value of .*topic.csv"):
        prepare_heads(config_from_dict(tree))


def test_multitask_card_carries_each_heads_label_names():
    from types import SimpleNamespace

    from llmos_tf.config import HeadConfig
    from llmos_tf.export.multitask import multitask_card

    config = SimpleNamespace(model={"architecture": "bert"}, heads=[
        HeadConfig(name="sentiment", label_names={"0": "negative", "1": "positive"}), HeadConfig(name="topic")])
    run = SimpleNamespace(info={}, heads={"sentiment": LabelMap(["negative", "positive"]), "topic": LabelMap(["a", "b"])},
                          tasks={"sentiment": "classification", "topic": "classification"}, config=config, max_length=16,
                          text_encoder=lambda: SimpleNamespace(vocabulary=["[PAD]"]), run_dir="runs/mt")
    heads = multitask_card(run, "mt", 1, None)["heads"]
    assert heads["sentiment"]["label_names"] == {"0": "negative", "1": "positive"}
    assert "label_names" not in heads["topic"]
