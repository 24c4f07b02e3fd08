"""The Task abstraction: what differs between classification, tagging and multitask runs.

One trainer (:func:`llmos_tf.training.loop.fit`) runs any task: it owns the run
folder, the strategy, resumption, TensorBoard, the best checkpoint, mixed
precision, ``run.json`` and ``finish_run``, once. A :class:`Task` owns what
differs (TF Model Garden's ``official/core/base_task.py``; keras-hub's
``Task`` = backbone + preprocessor + head): reading and validating its data,
its label maps, the preprocessor (tokenizer) and tf.data inputs, the model for
the configured architecture (from :mod:`llmos_tf.models.registry`), losses and
metrics, validation callbacks, the final evaluation, what ``run.json`` records,
the loaded-run predictor (one ``predict(texts)`` for every task) and its
serving module for export.

``get_task(cfg)`` (in :mod:`llmos_tf.tasks`) picks the task class registered
under ``cfg.task``; asking a task its ``name`` or its attributes replaces
comparing task strings.

Example::

    from llmos_tf.tasks import get_task
    task = get_task(load_config("configs/sample_ner.yaml"))   # TaggingTask
    data = task.prepare_data()                                  # validated, nothing written
"""
from __future__ import annotations

import abc
import dataclasses
import pathlib
from typing import Any, ClassVar, Sequence

from llmos_tf.config import RunConfig
from llmos_tf.errors import ConfigError
from llmos_tf.task_kinds import TaskKind, task_kind


@dataclasses.dataclass
class TaskInputs:
    """What :meth:`Task.build_inputs` gives the trainer.

    ``train`` repeats (the trainer sets ``steps_per_epoch``); ``steps_per_epoch``
    is one pass over the training data in batches; ``validation`` is the
    ``(features, labels)`` set Keras evaluates each epoch (None when the task
    validates in a callback only); ``facts`` go into ``run.json``'s ``data``.
    """

    train: Any
    steps_per_epoch: int
    examples: str  # "<n> examples" / "<n> sentences", for the error when no full batch fits
    validation: Any = None
    validation_inputs: Any = None  # features only, for callbacks and the final evaluation
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # task-private (a multitask run's per-head checks)


class Task(abc.ABC):
    """One kind of run. Subclasses set ``name`` and implement the abstract methods.

    Class attributes the trainer reads (instead of comparing task names):

    * ``hparam_metrics`` – ``(tag, display name)`` pairs for TensorBoard's HParams dashboard;
    * ``multi_worker`` – None when multi-worker training works, else the reason it is refused;
    * ``resumable`` – whether an unfinished folder with the same config resumes from ``backup/``;
    * ``write_graph`` – whether TensorBoard gets the model graph;
    * ``summary_metrics`` – ``(metric key, display name)`` headline figures of an evaluation (``llmos train``'s
      table, ``Evaluation.summary``);
    * ``kind`` – the task's :class:`~llmos_tf.task_kinds.TaskKind` (``task_kind(name)``), the facts that hold
      before TensorFlow is imported: ``data_format`` (what ``evaluate(path)`` reads), ``has_heads`` (whether
      ``predict``/``evaluate`` take a ``head``), ``configurable`` (whether a run config's ``task:`` may name
      it; pretraining is built from ``llmos pretrain``'s flags, and :func:`registered` lists only the config
      tasks), what it predicts, explains and whether it calibrates.
    """

    name: ClassVar[str]
    kind: ClassVar[TaskKind]  # task_kind(name), set by each subclass
    hparam_metrics: ClassVar[tuple[tuple[str, str], ...]] = (
        ("epoch_accuracy", "val accuracy"), ("epoch_loss", "val loss"), ("epoch_macro_f1", "val macro-F1"))
    multi_worker: ClassVar[str | None] = None
    resumable: ClassVar[bool] = True
    write_graph: ClassVar[bool] = True
    summary_metrics: ClassVar[tuple[tuple[str, str], ...]] = (("examples", "examples"), ("accuracy", "accuracy"), ("macro_f1", "macro-F1"))

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    # -- configuration ---------------------------------------------------------
    @property
    def architecture(self):
        """The :class:`~llmos_tf.models.registry.Architecture` of ``model.architecture``."""
        from llmos_tf.models import registry

        return registry.get(self.cfg.architecture)

    @property
    def model_config(self):
        from llmos_tf.models import registry

        return registry.model_config(self.cfg.model)

    @property
    def max_length(self) -> int:
        """Tokens per example after the architecture's limit (a BERT checkpoint's positions)."""
        return self.architecture.max_length(self.model_config, self.cfg.data.max_length)

    def check(self) -> None:
        """Refuse what ``config_from_dict`` cannot see (a hand-built config); raises ConfigError."""

    def config_text(self) -> str:
        """What the run folder's ``config.yaml`` holds (a resumed run must have the same text)."""
        from llmos_tf.config import dump_config

        return dump_config(self.cfg)

    def extra_hparams(self) -> dict[str, Any]:
        """Task-specific values added to the flat hyperparameters TensorBoard compares."""
        return {}

    # -- data ------------------------------------------------------------------
    @abc.abstractmethod
    def prepare_data(self) -> Any:
        """Read, validate and split the task's files; writes nothing."""

    @abc.abstractmethod
    def label_maps(self, data) -> dict[str, Any]:
        """Run-folder file name -> :class:`~llmos_tf.data.labels.LabelMap` (``labels.txt`` for one head)."""

    @abc.abstractmethod
    def learn_vocabulary(self, data) -> list[str]:
        """The vocabulary a new run learns (or its checkpoint brings)."""

    @abc.abstractmethod
    def build_preprocessor(self, vocabulary: Sequence[str]) -> Any:
        """Raw text -> token ids, exactly as the export does it."""

    @abc.abstractmethod
    def build_inputs(self, data, preprocessor, plan, eval_plan, *, seed: int) -> TaskInputs:
        """tf.data pipelines for ``plan`` (training) and ``eval_plan`` (validation)."""

    # -- model -----------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self, data, preprocessor, vocabulary: Sequence[str]) -> Any:
        """The model for ``model.architecture`` (built inside the strategy scope and dtype policy)."""

    def build_losses(self, model) -> Any:
        raise NotImplementedError

    def build_metrics(self, model) -> Any:
        raise NotImplementedError

    def compile_args(self, model) -> dict[str, Any]:
        """Keyword arguments of ``compile`` besides the optimizer."""
        return {"loss": self.build_losses(model), "metrics": self.build_metrics(model)}

    def training_model(self, model) -> Any:
        """What ``fit`` trains (default: the model itself; distillation wraps the student)."""
        return model

    # -- validation, evaluation, run.json ---------------------------------------
    @abc.abstractmethod
    def validation_callbacks(self, data, preprocessor, inputs: TaskInputs, log_dir: pathlib.Path, batch_size: int) -> list:
        """Callbacks that put the task's validation metrics into ``logs`` (placed before TensorBoard)."""

    @abc.abstractmethod
    def evaluate(self, model, data, preprocessor, inputs: TaskInputs, batch_size: int) -> dict[str, Any]:
        """``{"validation": ..., ["test": ...]}`` metrics of the restored best model (``metrics.json``)."""

    @abc.abstractmethod
    def run_info(self, data, metrics: dict[str, Any], inputs: TaskInputs) -> dict[str, Any]:
        """The task's part of ``run.json`` (``labels``, ``data``, ``metrics`` and any extras), in file order."""

    @classmethod
    def per_class_frame(cls, metrics: dict[str, Any]) -> Any:
        """Precision, recall, F1 and support per label of an evaluation's ``metrics`` (a DataFrame)."""
        from llmos_tf.training.evaluation import per_class_frame

        return per_class_frame(metrics)

    # -- inference and export ----------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def load(cls, run_dir: str | pathlib.Path) -> Any:
        """The finished run as a predictor: ``predict(texts) -> DataFrame``, ``evaluate(path)``."""


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` what ``task: <cls.name>`` runs (its ``kind`` must be that name's)."""
    if getattr(cls, "kind", None) is not task_kind(cls.name):
        raise TypeError(f"{cls.__name__}.kind must be task_kind({cls.name!r}) (llmos_tf.task_kinds)")
    _TASKS[cls.name] = cls
    return cls


def registered(every: bool = False) -> dict[str, type[Task]]:
    """Task name -> class, of the tasks imported so far (see :mod:`llmos_tf.tasks`): the ones a config's
    ``task:`` may name, or with ``every`` also those built otherwise (pretraining), whose runs load too."""
    return {name: cls for name, cls in _TASKS.items() if every or cls.kind.configurable}


def task_class(name: str, where: str = "task", every: bool = False) -> type[Task]:
    """The class registered under ``name`` (see :func:`registered`), or a ConfigError naming the valid tasks."""
    tasks = registered(every)
    if name not in tasks:
        raise ConfigError(f"{where}: unknown task {name!r}; valid tasks: {', '.join(sorted(tasks))}")
    return tasks[name]
