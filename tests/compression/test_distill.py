"""Distillation: the student's loss against the teacher falls, and the student is an ordinary run."""
from __future__ import annotations

import yaml

from llmos_tf.compression.augment import MASK, augment


def test_augment_is_seeded_and_new():
    texts = ["a warm and funny film", "a dull and boring mess of a movie"]
    a = augment(texts, copies=3, p_mask=0.3, seed=1)
    assert a == augment(texts, copies=3, p_mask=0.3, seed=1)
    assert a and not set(a) & set(texts)
    assert any(MASK in t for t in a)


def test_distillation_lowers_the_student_loss_against_the_teacher(trained_run, tiny_data, tmp_path):
    from llmos_tf.compression.distillation import distill
    from llmos_tf.config import config_from_dict
    from llmos_tf.tasks.classification import TrainedRun
    from tests.conftest import tiny_config_text

    cfg = config_from_dict(yaml.safe_load(tiny_config_text(tiny_data["train"], tmp_path, name="student", epochs=4)),
                           ["training.learning_rate=0.005", "model.lstm_units=8"])
    result = distill(trained_run, cfg, loss="kl", temperature=2.0, alpha=0.2, augment_copies=1, verbose=0, say=lambda *_: None)
    soft = result.history["distill_loss"]
    assert soft[-1] < soft[0] * 0.8, soft
    assert result.info["distillation"]["augmented_examples"] > 0
    student = TrainedRun.load(result.run_dir)
    assert list(student.labels.names) == result.info["labels"]
    assert student.evaluate(tiny_data["test"])["accuracy"] >= 0.6


def test_mse_loss_and_bad_options(trained_run, tiny_data, tmp_path):
    import pytest

    from llmos_tf.compression.distillation import distill
    from llmos_tf.config import config_from_dict
    from llmos_tf.errors import ConfigError
    from tests.conftest import tiny_config_text

    cfg = config_from_dict(yaml.safe_load(tiny_config_text(tiny_data["train"], tmp_path, name="student_mse", epochs=2)), [])
    with pytest.raises(ConfigError, match="--alpha"):
        distill(trained_run, cfg, alpha=1.5)
    with pytest.raises(ConfigError, match="run folder"):
        distill(tmp_path, cfg)
    result = distill(trained_run, cfg, loss="mse", alpha=0.0, verbose=0, say=lambda *_: None)
    assert result.history["distill_loss"][-1] < result.history["distill_loss"][0]


def test_a_teacher_from_before_label_names_teaches_a_named_student(trained_run, tmp_path):
    """A teacher answering the raw values ``0``/``1`` and a student config naming them: the names line up by value."""
    import shutil

    from llmos_tf.compression.distillation import distill
    from llmos_tf.config import config_from_dict
    from tests.conftest import make_sentiment_rows, tiny_config_text, write_csv

    teacher = tmp_path / "teacher"
    shutil.copytree(trained_run, teacher)
    (teacher / "labels.txt").write_text("0\n1\n", encoding="utf-8")  # ids as before: 0 = negative, 1 = positive
    rows = [(text, {"negative": "0", "positive": "1"}[label]) for text, label in make_sentiment_rows(120, seed=5)]
    train = write_csv(tmp_path / "numbered.csv", rows)
    cfg = config_from_dict(yaml.safe_load(tiny_config_text(train, tmp_path, name="named_student", epochs=1)),
                           ["data.label_names={0: negative, 1: positive}"])
    result = distill(teacher, cfg, verbose=0, say=lambda *_: None)
    assert result.info["labels"] == ["negative", "positive"]
