"""NER end to end on the project's own sample data: train a tiny random-init BERT tagger,
check the run folder, truncation counting, entity F1 and TrainedTagger's token mapping."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import llmos_tf.config as config_module
from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError, RunError

LONG_SENTENCES = 3
LONG_WORDS = 60  # > max_length subwords: the tail of these sentences is dropped
MAX_LENGTH = 32


def tiny_ner_config(train: pathlib.Path, output_dir: pathlib.Path, *, name: str = "tiny_ner", epochs: int = 3, **overrides):
    values = {
        "name": name,
        "task": "ner",
        "seed": 3,
        "output_dir": str(output_dir),
        "data": {"train": str(train), "validation_fraction": 0.2, "max_length": MAX_LENGTH, "bucket_boundaries": [12, 16, 24]},
        "text": {"vocabulary_size": 300},
        "model": {"architecture": "bert", "encoder": None, "num_layers": 1, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64, "dropout": 0.0},
        "training": {"epochs": epochs, "batch_size": 16, "learning_rate": 0.003, "monitor": "val_entity_f1", "early_stopping_patience": 0,
                     "log_every_steps": 5, "backup_every_steps": 10},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        values[section][field] = value
    return config_module.config_from_dict(values)


_CACHE: dict[str, object] = {}


def tiny_tagger_run(tmp_path_factory) -> dict[str, object]:
    """Train once per test session (shared with tests/export/test_export_tagger.py)."""
    if "run" not in _CACHE:
        from llmos_tf.data.sample import write_sample_data
        from llmos_tf.training import trainer

        root = tmp_path_factory.mktemp("ner")
        paths = write_sample_data(root / "data")
        train = root / "data" / "ner_train_long.conll"
        long = "".join(f"{'Oslo' if i % 2 else 'rain'} {'B-LOC' if i % 2 else 'O'}\n" for i in range(LONG_WORDS)) + "\n"
        train.write_text(paths["ner_train"].read_text(encoding="utf-8") + long * LONG_SENTENCES, encoding="utf-8")
        cfg = tiny_ner_config(train, root / "runs")
        result = trainer.train(cfg, verbose=0, command="pytest")
        _CACHE.update(run=result.run_dir, result=result, cfg=cfg, valid=paths["ner_valid"], train=train)
    return _CACHE


@pytest.fixture
def shared(tmp_path_factory):
    return tiny_tagger_run(tmp_path_factory)


def test_run_folder_like_the_classifier(shared):
    run_dir = shared["run"]
    for name in ("config.yaml", "vocab.txt", "labels.txt", "model.keras", "metrics.json", "run.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "backup").exists()
    labels = (run_dir / "labels.txt").read_text().split()
    assert labels[0] == "O" and set(labels) == {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"}
    info = json.loads((run_dir / "run.json").read_text())
    assert info["task"] == "ner" and info["architecture"] == "bert" and info["labels"] == labels
    val = info["metrics"]["validation"]
    for key in ("entity_precision", "entity_recall", "entity_f1", "token_accuracy", "per_type"):
        assert key in val, key
    assert set(val["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["entity_f1"] == val["entity_f1"]
    assert info["data"]["train_examples"] + info["data"]["validation_examples"] == 300 + LONG_SENTENCES
    assert info["command"] == "pytest"


def test_truncated_sentences_are_counted(shared):
    """run.json's counts equal a plain-Python recount: whole words kept while they fit in max_length - 2 subwords."""
    from llmos_tf.data.conll import read_conll
    from llmos_tf.models import registry
    from llmos_tf.text.wordpiece import load_vocabulary
    from llmos_tf.tasks.tagging_data import tagger_text_encoder

    cfg = shared["cfg"]
    encoder = tagger_text_encoder(registry.model_config(cfg.model), load_vocabulary(shared["run"] / "vocab.txt"), cfg.text, MAX_LENGTH)
    sentences = read_conll(shared["train"])["tokens"].tolist()
    words = sorted({w for s in sentences for w in s})
    pieces = dict(zip(words, (max(len(p), 1) for p in encoder.tokenize(tf.constant(words)).to_list())))  # empty -> [UNK]
    dropped = [len(s) - int(np.sum(np.cumsum([pieces[w] for w in s]) <= MAX_LENGTH - 2)) for s in sentences]
    data = json.loads((shared["run"] / "run.json").read_text())["data"]
    assert data["truncated_train_sentences"] + data["truncated_validation_sentences"] == sum(d > 0 for d in dropped)
    assert data["dropped_train_words"] + data["dropped_validation_words"] == sum(dropped)
    assert sum(d > 0 for d in dropped[-LONG_SENTENCES:]) == LONG_SENTENCES
    assert sum(dropped[-LONG_SENTENCES:]) >= LONG_SENTENCES * (LONG_WORDS - (MAX_LENGTH - 2))


def test_entity_f1_improves_over_an_untrained_model(shared):
    from llmos_tf.data.conll import read_conll
    from llmos_tf.models import registry
    from llmos_tf.text.wordpiece import load_vocabulary
    from llmos_tf.tasks.tagging import build_bert_tagger
    from llmos_tf.tasks.tagging_data import WordTagPredictor, evaluate_frame, tagger_text_encoder

    result, cfg = shared["result"], shared["cfg"]
    history = result.history
    assert len(history["val_entity_f1"]) == 3 and "val_token_accuracy" in history and "val_entity_precision" in history
    trained_f1 = result.metrics["validation"]["entity_f1"]
    assert trained_f1 == pytest.approx(max(history["val_entity_f1"]))  # best epoch restored

    model_cfg = registry.model_config(cfg.model)
    vocab = load_vocabulary(shared["run"] / "vocab.txt")
    tags = (shared["run"] / "labels.txt").read_text().split()
    tf_keras.utils.set_random_seed(0)
    untrained = build_bert_tagger(model_cfg, vocab, len(tags), MAX_LENGTH)
    predictor = WordTagPredictor(tagger_text_encoder(model_cfg, vocab, cfg.text, MAX_LENGTH), untrained)
    baseline = evaluate_frame(predictor, read_conll(shared["valid"]), tags)["entity_f1"]
    assert trained_f1 > 0.6
    assert trained_f1 > baseline + 0.3


def test_tensorboard_has_validation_entity_f1(shared):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(shared["run"] / "validation"), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["tensors"] + acc.Tags()["scalars"]
    for tag in ("epoch_entity_f1", "epoch_token_accuracy", "epoch_loss"):
        assert tag in tags, (tag, tags)
    assert len(acc.Tensors("epoch_entity_f1")) == 3


def test_trained_tagger_maps_back_to_whitespace_tokens(shared):
    from llmos_tf.metrics.conlleval import entity_spans
    from llmos_tf.tasks.tagging import TrainedTagger

    tagger = TrainedTagger.load(shared["run"])
    sentences = [
        "Anna Berg joined Acme Corp in Oslo last year .",
        "  Lars   Holm flew to Kyoto,   on Tuesday!  ",  # extra spaces and glued punctuation
        "U.S. stocks rose ; Zürich-based xqzvbnm ☃ gained 3.5 %",  # unknown words and symbols
        "",
        " ".join(["Oslo"] * (MAX_LENGTH + 10)),  # longer than max_length
    ]
    frame = tagger.predict(sentences)
    assert list(frame.columns) == ["text", "tokens", "tags", "entities"]
    for text, tokens, tags, entities in frame.itertuples(index=False):
        assert tokens == text.split()
        assert len(tags) == len(tokens)
        assert all(t in tagger.labels for t in tags)
        assert [(e["type"], e["start"], e["end"]) for e in entities] == entity_spans(tags)
        assert all(e["text"] == " ".join(tokens[e["start"]:e["end"]]) for e in entities)
    first = frame.loc[0]
    assert first["tags"][:2] == ["B-PER", "I-PER"] and first["tags"][6] == "B-LOC"
    long_tags = frame.loc[4, "tags"]
    assert long_tags[MAX_LENGTH - 2:] == ["O"] * (len(long_tags) - (MAX_LENGTH - 2))  # dropped tokens are "O"
    assert tagger.predict_tags(sentences) == frame["tags"].tolist()
    assert tagger.predict_tags([]) == [] and tagger.predict([]).empty


def test_trained_tagger_evaluate_read_and_is_tagger_run(shared, tmp_path):
    from llmos_tf.data.conll import read_conll
    from llmos_tf.tasks.tagging import TrainedTagger, is_tagger_run

    tagger = TrainedTagger.load(shared["run"])
    metrics = tagger.evaluate(shared["valid"])
    assert metrics["examples"] == 80 and metrics["entity_f1"] > 0.6
    assert set(metrics["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}
    assert tagger.read_unlabelled(shared["valid"])[0] == " ".join(read_conll(shared["valid"]).loc[0, "tokens"])
    (tmp_path / "s.txt").write_text("Anna sings .\n\nBob runs\n")
    assert tagger.read_unlabelled(tmp_path / "s.txt") == ["Anna sings .", "Bob runs"]

    classifier = tmp_path / "classifier_run"
    classifier.mkdir()
    (classifier / "run.json").write_text(json.dumps({"task": "classification"}))
    assert is_tagger_run(shared["run"]) and not is_tagger_run(classifier) and not is_tagger_run(tmp_path / "missing")
    with pytest.raises(RunError, match="not an NER tagger"):
        TrainedTagger.load(classifier)


def test_masked_loss_and_accuracy_ignore_minus_one():
    from llmos_tf.tasks.tagging import MaskedSparseCategoricalCrossentropy, MaskedTokenAccuracy

    y_true = tf.constant([[-1, 0, 1, -1], [-1, 1, -1, -1]])
    probs = tf.constant([[[0.5, 0.5], [0.8, 0.2], [0.4, 0.6], [0.9, 0.1]],
                         [[0.1, 0.9], [0.3, 0.7], [0.5, 0.5], [0.5, 0.5]]])
    expected = -(np.log(0.8) + np.log(0.6) + np.log(0.7)) / 3
    assert float(MaskedSparseCategoricalCrossentropy()(y_true, probs)) == pytest.approx(expected, rel=1e-5)
    acc = MaskedTokenAccuracy()
    acc.update_state(y_true, probs)
    assert float(acc.result()) == 1.0
    acc.update_state(tf.constant([[1, -1]]), tf.constant([[[0.9, 0.1], [0.1, 0.9]]]))
    assert float(acc.result()) == pytest.approx(3 / 4)


def test_bad_configs_fail_before_a_run_folder_exists(tmp_path):
    from llmos_tf.training import trainer

    train = tmp_path / "t.conll"
    train.write_text("Anna B-PER\nsings O\n\nBob B-PER\nruns O\n\n")
    cfg = tiny_ner_config(train, tmp_path / "runs", training__monitor="val_accuracy")
    with pytest.raises(ConfigError, match="training.monitor.*val_entity_f1"):
        trainer.train(cfg)
    cfg = tiny_ner_config(train, tmp_path / "runs", data__format="csv")
    with pytest.raises(ConfigError, match="data.format"):
        trainer.train(cfg)
    assert not (tmp_path / "runs").exists()


def test_shipped_ner_configs_validate():
    from llmos_tf.config import load_config
    from llmos_tf.tasks.tagging import NER_MONITORS

    root = pathlib.Path(__file__).resolve().parents[2] / "configs"
    for name in ("sample_ner.yaml", "conll03_ner.yaml"):
        cfg = load_config(root / name)
        assert cfg.task == "ner" and cfg.architecture == "bert" and cfg.training.monitor in NER_MONITORS
    cfg = load_config(root / "conll03_ner.yaml")
    assert cfg.model["encoder"] == "minilm-l6" and cfg.data.max_length == 128 and cfg.training.epochs == 2
    assert cfg.training.optimizer == "adamw" and cfg.training.learning_rate == 1e-4 and cfg.training.warmup_fraction > 0


def test_get_task_picks_each_task_and_refuses_an_unknown_one(tmp_path):
    """``get_task(cfg)`` is the one place a run's task is chosen: each ``config.TASKS`` entry has a registered
    class, a hand-built config with an unknown task is refused naming the valid ones."""
    import dataclasses

    from llmos_tf.tasks import get_task, registered
    from llmos_tf.tasks.classification import ClassificationTask
    from llmos_tf.tasks.multitask import MultitaskTask
    from llmos_tf.tasks.tagging import TaggingTask

    assert set(registered()) == set(config_module.TASKS)
    cfg = tiny_ner_config(tmp_path / "train.conll", tmp_path / "runs")
    expected = {"classification": ClassificationTask, "ner": TaggingTask, "multitask": MultitaskTask}
    for name, cls in expected.items():
        task = get_task(dataclasses.replace(cfg, task=name))
        assert type(task) is cls and task.name == name and task.cfg.task == name
    with pytest.raises(ConfigError, match="task: unknown task 'translation'; valid tasks: classification, multitask, ner"):
        get_task(dataclasses.replace(cfg, task="translation"))


def test_train_runs_the_config_task_through_the_one_loop(monkeypatch, tmp_path):
    """``trainer.train`` (what ``llmos train`` and ``llmos_tf.train`` call) builds the config's task and hands it,
    with every option, to ``loop.fit``; the multi-worker rule refuses NER and multitask runs with the reason,
    before anything is written, and ``--profile`` is checked the same way for every task."""
    import dataclasses

    from llmos_tf.tasks.multitask import MultitaskTask
    from llmos_tf.tasks.tagging import TaggingTask
    from llmos_tf.training import loop, trainer

    calls = []
    monkeypatch.setattr(trainer, "fit", lambda task, **kwargs: calls.append((type(task), kwargs)) or "done")
    cfg = tiny_ner_config(tmp_path / "train.conll", tmp_path / "runs")
    options = {"overwrite": True, "strategy": "default", "verbose": 0, "command": "llmos train x.yaml", "profile": "2,4", "tpu": None}
    assert trainer.train(cfg, **options) == "done"
    assert calls == [(TaggingTask, options)]
    for task in (TaggingTask(cfg), MultitaskTask(dataclasses.replace(cfg, task="multitask"))):
        with pytest.raises(RunError, match=f"--strategy multi_worker: multi-worker training is implemented for classification runs .*{task.name!r} run"):
            loop.check_run_options(task, strategy="multi_worker")
        loop.check_run_options(task, strategy="default", profile="2,4")  # profiling works for every task
        with pytest.raises(ConfigError, match="--profile"):
            loop.check_run_options(task, profile="x")
    assert not (tmp_path / "runs").exists()


def test_train_on_a_finished_ner_run_is_refused_by_the_tagger(shared):
    """The real dispatch and the real loop: ``trainer.train`` of the finished NER run reaches the run-folder
    check after the tagging task read its CoNLL data (a classification task would fail reading it)."""
    from llmos_tf.training import trainer

    with pytest.raises(RunError, match="finished run already exists"):
        trainer.train(shared["cfg"], strategy="default")
