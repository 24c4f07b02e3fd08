"""The task registry picks each finished run's loaded predictor, with one ``predict(texts)`` signature."""
from __future__ import annotations

import json

import pytest

from llmos_tf.errors import RunError


def test_load_trained_picks_each_task_and_predicts_texts(trained_run, tiny_multitask_run, tmp_path_factory):
    from llmos_tf.tasks import load_trained, run_task
    from llmos_tf.tasks.classification import ClassificationTask, TrainedRun
    from llmos_tf.tasks.multitask import MultitaskTask, TrainedMultitask
    from llmos_tf.tasks.tagging import TaggingTask, TrainedTagger
    from tests.training.test_tagging import tiny_tagger_run

    ner_run = tiny_tagger_run(tmp_path_factory)["run"]
    mt_run = tiny_multitask_run["run_dir"]
    assert [run_task(p) for p in (trained_run, ner_run, mt_run)] == [ClassificationTask, TaggingTask, MultitaskTask]

    classifier = load_trained(trained_run)
    assert type(classifier) is TrainedRun
    assert list(classifier.predict(["the film was wonderful"]).columns) == ["text", "label", "probability"]
    tagger = load_trained(ner_run)
    assert type(tagger) is TrainedTagger
    row = tagger.predict(["Anna Berg joined Acme Corp in Oslo ."]).iloc[0]
    assert len(row["tags"]) == 8 and list(row.index) == ["text", "tokens", "tags", "entities"]
    multitask = load_trained(mt_run)
    assert type(multitask) is TrainedMultitask
    assert multitask.predict(["a wonderful film"], head="sentiment").loc[0, "label"] in ("positive", "negative")
    with pytest.raises(RunError, match="a multitask run has heads .*; choose one with --head"):
        multitask.predict(["a wonderful film"])  # the same predict(texts); which head must be said


def test_a_run_of_an_unknown_task_is_refused_with_the_known_ones(tmp_path):
    from llmos_tf.tasks import load_trained

    run = tmp_path / "future"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"task": "translation"}))
    with pytest.raises(RunError, match="names task 'translation', which this version does not know; known: classification, multitask, ner, pretraining"):
        load_trained(run)
    with pytest.raises(RunError, match="not a finished run"):
        load_trained(tmp_path)
