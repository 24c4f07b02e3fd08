"""The table of task kinds (``llmos_tf.task_kinds``, issue #16): TensorFlow-free, and in step with the task registry."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from llmos_tf import config
from llmos_tf.errors import ConfigError
from llmos_tf.task_kinds import KINDS, TaskKind, task_kind

ROOT = pathlib.Path(__file__).resolve().parents[1]
CARD_ONLY = {"sentence_embedding", "semantic_search"}  # llmos compose's encoder and search-index versions: no run, no task class


def test_importing_the_kinds_and_the_config_does_not_import_tensorflow():
    code = "import sys, llmos_tf.task_kinds, llmos_tf.config; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_lookup_defaults_to_classification_and_names_the_known_tasks():
    assert task_kind(None) is task_kind("classification")
    assert [k.name for k in KINDS][:4] == ["classification", "ner", "multitask", "pretraining"]
    with pytest.raises(ConfigError, match="unknown task 'translation'; known tasks: classification, ner, multitask, pretraining"):
        task_kind("translation")


def test_facts_use_the_documented_values():
    for kind in KINDS:
        assert kind.data_format in ("table", "conll", "per_head", "text"), kind
        assert kind.predicts in ("label", "word_tags", "heads", "tokens", "embedding", "neighbours"), kind
        assert kind.explains in ("classes", "entities", None), kind
        assert kind.has_heads == (kind.data_format == "per_head"), kind
    assert [k.name for k in KINDS if k.calibrates] == ["classification"]
    assert {k.name: k.explains for k in KINDS if k.explains} == {"classification": "classes", "ner": "entities"}


def test_config_task_lists_come_from_the_kinds():
    assert config.TASKS == ("classification", "ner", "multitask")
    assert config.HEAD_TASKS == ("classification", "ner")
    assert set(config.HEAD_METRICS) == set(config.HEAD_TASKS)


def test_every_task_class_has_its_kind_and_every_configurable_kind_a_task_class():
    from llmos_tf.tasks import registered
    from llmos_tf.tasks.multitask_heads import ClassificationHead, NerHead

    every = registered(every=True)
    for name, cls in every.items():
        assert isinstance(cls.kind, TaskKind) and cls.kind is task_kind(name), cls
    assert set(registered()) == {k.name for k in KINDS if k.configurable} == set(config.TASKS)
    assert {k.name for k in KINDS} - set(every) == CARD_ONLY
    assert not any(task_kind(name).configurable for name in CARD_ONLY)
    assert {ClassificationHead.task, NerHead.task} == set(config.HEAD_TASKS)


def test_card_only_kinds_are_the_tasks_compose_writes_into_model_cards():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "llmos_tf" / "compose").glob("*.py"))
    for name in CARD_ONLY:
        assert f'"task": "{name}"' in source, name


def test_register_task_refuses_a_class_whose_kind_is_not_its_names():
    from llmos_tf.tasks.base import register_task
    from llmos_tf.tasks.classification import ClassificationTask

    class Mislabelled(ClassificationTask):
        name = "ner"  # kind still task_kind("classification")

    with pytest.raises(TypeError, match=r"Mislabelled.kind must be task_kind\('ner'\)"):
        register_task(Mislabelled)
