"""Each perturbation is seeded (same seed, same text; another seed, another text) and changes what it claims."""
import re
import string

import numpy as np
import pandas as pd
import pytest

from llmos_tf.explain.robustness import (EmbeddingNeighbours, augment_texts, check_augment, perturb, perturb_all,
                                         robustness_table)

TEXTS = ["The film was GREAT, really moving!", "A dull, tedious plot... and bland acting.", "Wonderful cast; superb script"] * 10


def test_each_perturbation_is_seeded():
    for kind in ("typo", "drop"):
        first = perturb_all(TEXTS, kind, rate=0.5, seed=1)
        assert first == perturb_all(TEXTS, kind, rate=0.5, seed=1)
        assert first != perturb_all(TEXTS, kind, rate=0.5, seed=2)


def test_typo_edits_letters_only_within_words():
    for text in TEXTS[:3]:
        out = perturb(text, "typo", rate=1.0, seed=0)
        words, new = text.split(), out.split()
        assert len(new) == len(words) and out != text
        for a, b in zip(words, new):  # one edit at most per word: lengths differ by <= 1
            assert abs(len(a) - len(b)) <= 1
        assert re.sub(r"[A-Za-z]", "", out) == re.sub(r"[A-Za-z]", "", text)  # punctuation and spaces untouched
    assert perturb("a b c", "typo", rate=1.0, seed=0) == "a b c"  # one-letter words have nothing to edit


def test_lowercase_and_punctuation():
    assert perturb(TEXTS[0], "lowercase") == TEXTS[0].lower()
    out = perturb(TEXTS[1], "punctuation")
    assert not any(c in string.punctuation for c in out) and out.split() == ["A", "dull", "tedious", "plot", "and", "bland", "acting"]


def test_drop_removes_words_and_keeps_one():
    out = perturb(TEXTS[0], "drop", rate=0.5, seed=3)
    kept = out.split()
    assert 0 < len(kept) < len(TEXTS[0].split())
    it = iter(TEXTS[0].split())
    assert all(w in it for w in kept)  # an ordered subsequence of the original words
    assert len(perturb("only", "drop", rate=1.0).split()) == 1


def test_neighbour_swaps_for_the_nearest_embedding():
    vocabulary = ["[PAD]", "good", "great", "bad", "awful", "##ly", "film"]
    matrix = np.array([[0, 0], [1, 0.1], [1, 0.2], [-1, 0.1], [-1, 0.25], [0, 1], [0.1, 1]], np.float32)
    near = EmbeddingNeighbours(vocabulary, matrix)
    assert near("good") == "great" and near("awful") == "bad" and near("unknown") is None
    out = perturb("good film and bad ending", "neighbour", rate=1.0, seed=0, neighbours=near)
    assert out == "great great and awful ending"  # film -> great: the nearest by cosine
    with pytest.raises(ValueError):
        perturb("x", "neighbour")
    with pytest.raises(ValueError):
        perturb("x", "shout")


def test_robustness_table_counts_flips():
    def predict_proba(texts):  # "positive" iff the text still has an upper-case letter
        return np.array([[0.0, 1.0] if any(c.isupper() for c in t) else [1.0, 0.0] for t in texts])

    rows = {r["perturbation"]: r for r in robustness_table(predict_proba, TEXTS, np.ones(len(TEXTS), int), seed=0)}
    assert rows["none"]["accuracy"] == 1.0 and rows["lowercase"]["flip_rate"] == 1.0 and rows["lowercase"]["accuracy"] == 0.0
    assert rows["punctuation"]["flip_rate"] == 0.0 and rows["punctuation"]["changed"] == 1.0
    assert rows["neighbour"]["accuracy"] is None  # no embedding table given: skipped, and said so


def test_augment_adds_perturbed_copies_and_validates():
    texts, labels = augment_texts(TEXTS, list(range(len(TEXTS))), {"typo": 0.3, "lowercase": 1.0}, seed=0)
    assert texts[: len(TEXTS)] == TEXTS and len(texts) > len(TEXTS) + 20
    assert all(labels[texts.index(t)] == labels[texts.index(t)] for t in texts)
    assert augment_texts(TEXTS, [0] * len(TEXTS), {}, seed=0)[0] == TEXTS
    assert check_augment({"typo": "0.1"}) == {"typo": 0.1}
    from llmos_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="training.augment.shout: unknown perturbation"):
        check_augment({"shout": 0.1})
    with pytest.raises(ConfigError, match=r"expected a rate in \(0, 1\]"):
        check_augment({"drop": 2})


def test_augment_training_feeds_the_classification_inputs():
    """What the classification task's tf.data input gets from ``training.augment`` (the config field, parsed)."""
    from types import SimpleNamespace

    from llmos_tf.config import RunConfig
    from llmos_tf.errors import ConfigError
    from llmos_tf.explain.robustness import augment_training
    from llmos_tf.schema import build

    unique = TEXTS[:3]  # no word in common: a copy names its original
    data = SimpleNamespace(train=pd.DataFrame({"text": unique}), y_train=np.array([0, 1, 0]))
    cfg = build(RunConfig, {"training": {"augment": {"drop": 0.3}}}, "")
    texts, labels = augment_training(data, cfg.training, seed=5)
    assert texts[:3] == unique and len(texts) == len(labels) > 3 and labels.dtype == data.y_train.dtype
    for text, label in zip(texts[3:], labels[3:]):  # each copy keeps its original's label
        original = next(i for i, t in enumerate(unique) if set(text.split()) <= set(t.split()))
        assert label == data.y_train[original]
    plain = build(RunConfig, {}, "")
    assert augment_training(data, plain.training, seed=5)[0] == unique
    with pytest.raises(ConfigError, match="training.augment.neighbour"):
        augment_training(data, build(RunConfig, {"training": {"augment": {"neighbour": 0.1}}}, "").training, seed=0)
