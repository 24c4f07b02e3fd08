"""Tasks: what a run of each ``task:`` reads, builds, trains, validates, predicts and serves.

Importing this package registers every built-in task; :func:`get_task` picks
the one a config names (see :mod:`llmos_tf.tasks.base` for the interface).

============== ================================ ==========================
``task:``      class                            loaded run (``predict``)
============== ================================ ==========================
classification :class:`.ClassificationTask`     :class:`.TrainedRun`
ner            :class:`.TaggingTask`            :class:`.TrainedTagger`
multitask      :class:`.MultitaskTask`          :class:`.TrainedMultitask`
(pretraining)  :class:`.PretrainingTask`        :class:`.TrainedEncoder` (fill-mask)
============== ================================ ==========================

``pretraining`` is built from ``llmos pretrain``'s flags, not named by a config's
``task:``; its runs load like the others.

Architectures plug into every task through :mod:`llmos_tf.models.registry`, so
"architecture x task" is a table, not code paths.

Example::

    from llmos_tf.tasks import get_task, load_trained
    task = get_task(cfg)                 # cfg.task == "ner" -> TaggingTask(cfg)
    load_trained("runs/sample_ner").predict(["Anna Berg lives in Oslo ."])
"""
from __future__ import annotations

import json
import pathlib
from typing import Any

from llmos_tf.config import RunConfig
from llmos_tf.errors import RunError
from llmos_tf.tasks import classification, multitask, pretraining, tagging  # noqa: F401  (register the built-in tasks)
from llmos_tf.tasks.base import Task, TaskInputs, register_task, registered, task_class  # noqa: F401

DEFAULT_TASK = classification.ClassificationTask.name  # runs written before run.json recorded a task


def get_task(cfg: RunConfig) -> Task:
    """The task ``cfg.task`` names, built for ``cfg``; a ConfigError naming the valid tasks otherwise."""
    return task_class(cfg.task)(cfg)


def run_task_name(run_dir: str | pathlib.Path) -> str | None:
    """The ``task`` a finished run recorded in ``run.json`` (None when there is no readable run.json)."""
    from llmos_tf.training import artifacts

    try:
        info = json.loads((pathlib.Path(run_dir) / artifacts.RUN_FILE).read_text(encoding="utf-8"))
        return info.get("task", DEFAULT_TASK) if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def run_task(run_dir: str | pathlib.Path) -> type[Task]:
    """The task class of a finished run (from ``run.json``); RunError when the folder is not a finished run."""
    from llmos_tf.training import artifacts

    info: dict[str, Any] = artifacts.read_run_info(run_dir)  # clear errors for a missing folder / unfinished run
    name = info.get("task", DEFAULT_TASK)
    try:
        return task_class(name, every=True)
    except Exception:
        raise RunError(f"{run_dir}: run.json names task {name!r}, which this version does not know; "
                       f"known: {', '.join(sorted(registered(every=True)))}") from None


def load_trained(run_dir: str | pathlib.Path):
    """A finished run of any task as its predictor: ``predict(texts)``, ``evaluate(path)``, ``read_unlabelled(path)``."""
    return run_task(run_dir).load(run_dir)
