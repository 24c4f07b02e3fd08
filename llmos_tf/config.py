"""One YAML file fully describes a run.

The schema is a tree of dataclasses, so a typo in the file or in a
``--set section.key=value`` override is caught before any work starts, with an
error that names the bad key and lists the valid ones (spaCy-style; the
checker is :mod:`llmos_tf.schema`, shared with the model registry). The
``model`` section is checked against the schema of the chosen architecture,
which each architecture registers in :mod:`llmos_tf.models.registry`.

The task names a config may say (``TASKS``, ``HEAD_TASKS``) come from the table
of task kinds (:mod:`llmos_tf.task_kinds`, no TensorFlow); the task classes that
run them are registered in :mod:`llmos_tf.tasks` (a test checks the two agree).
This module sits below the tasks (they import it), so the few per-task config
rules stay here and read the kinds' facts rather than asking the registry.

Why one module of ~400 lines: the dataclasses, their cross-field checks and
the YAML loading/dumping are one schema; split, a rule would live away from
the fields it checks.

Example::

    cfg = load_config("configs/sample_bilstm.yaml", ["training.epochs=2"])
    cfg.training.epochs  # -> 2
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

from llmos_tf.errors import ConfigError
from llmos_tf.schema import build
from llmos_tf.schema import did_you_mean  # noqa: F401  (re-exported: config.did_you_mean)
from llmos_tf.task_kinds import KINDS, task_kind


@dataclass
class DataConfig:
    """Where the examples come from and how they become batches."""

    train: str | None = None
    validation: str | None = None
    test: str | None = None
    format: str | None = None  # csv | tsv | jsonl | parquet | conll; None = from the extension
    text_column: str | None = None  # None = first of text, sentence
    label_column: str | None = None  # None = first of label, category
    label_names: dict[str, str] | None = None  # label value -> name the model answers, e.g. {0: negative, 1: positive}
    validation_fraction: float = 0.1  # stratified split of train when no validation file
    max_train_examples: int | None = None  # stratified, seeded subsample of train (CPU budgets)
    max_length: int = 64  # tokens per example after tokenization (longer ones are truncated)
    bucketing: bool = True  # bucket_by_sequence_length (CPU/GPU); False pads every batch to max_length
    bucket_boundaries: list[int] = field(default_factory=lambda: [8, 16, 24, 32, 48, 64])
    tpu_mode: bool = False  # fixed shapes: pad to max_length, drop_remainder=True
    shuffle_buffer: int = 10000


@dataclass
class TextConfig:
    """Tokenizer settings (the BiLSTM learns its own WordPiece vocabulary)."""

    vocabulary_size: int = 8000
    lowercase: bool = True
    strip_accents: bool = True


@dataclass
class TrainingConfig:
    """Optimisation and checkpointing."""

    epochs: int = 5
    batch_size: int = 32  # per replica
    optimizer: str = "adam"  # adam | adamw | sgd
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.0  # of all steps, linear warm-up then linear decay when > 0
    clipnorm: float | None = 1.0
    monitor: str = "val_accuracy"  # early stopping / best checkpoint metric
    early_stopping_patience: int = 2  # epochs without improvement; 0 disables
    log_every_steps: int = 50  # TensorBoard step-level scalars
    backup_every_steps: int = 200  # BackupAndRestore frequency (resume after kill -9)
    steps_per_epoch: int | None = None  # cap, for quick runs
    mixed_precision: str | None = None  # None/float32 | mixed_float16 (GPU, loss-scaled) | mixed_bfloat16 (TPU, recent CPUs)
    augment: dict[str, float] | None = None  # {typo|lowercase|punctuation|drop: rate}: perturbed copies of the training texts (llmos_tf.explain.robustness)


@dataclass
class HeadConfig:
    """One head of a ``task: multitask`` run: its own data, loss weight and share of the batches.

    ``task: classification`` heads read labelled tables (csv, tsv, jsonl, parquet) and
    classify the pooled sentence vector; ``task: ner`` heads read CoNLL files and tag
    every token of the shared encoder's sequence output.
    """

    name: str = "head"
    task: str = "classification"  # classification | ner
    train: str | None = None
    validation: str | None = None
    format: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    label_names: dict[str, str] | None = None  # label value -> name (classification heads)
    loss_weight: float = 1.0
    sampling_rate: float = 1.0  # relative share of training batches drawn from this head's data


@dataclass
class RunConfig:
    """The whole run: ``name`` picks ``<output_dir>/<name>/``."""

    name: str = "run"
    task: str = "classification"
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"architecture": "bilstm"})
    training: TrainingConfig = field(default_factory=TrainingConfig)
    heads: list[HeadConfig] = field(default_factory=list)  # task: multitask only

    @property
    def run_dir(self) -> pathlib.Path:
        return pathlib.Path(self.output_dir) / self.name

    @property
    def architecture(self) -> str:
        return str(self.model.get("architecture", "bilstm"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TASKS = tuple(kind.name for kind in KINDS if kind.configurable)  # classification, ner, multitask
HEAD_TASKS = tuple(kind.name for kind in KINDS if kind.multitask_head)  # classification, ner
# per-head validation metrics a multitask run logs as val_<head>_<metric>; the first is the head's main metric
HEAD_METRICS = {"classification": ("accuracy", "macro_f1"), "ner": ("entity_f1", "entity_precision", "entity_recall")}


def multitask_monitors(heads: Sequence[HeadConfig]) -> list[str]:
    """What a multitask run logs each epoch, i.e. the valid ``training.monitor`` values.

    ``val_score`` is the mean of every head's main metric (accuracy for
    classification heads, entity F1 for NER heads). ``val_accuracy`` and
    ``val_macro_f1`` (means over heads) exist only when every head is a
    classification head, as they did before NER heads.
    """
    out = ["val_score"]
    if all(task_kind(h.task).predicts == "label" for h in heads):
        out += ["val_accuracy", "val_macro_f1"]
    return out + [f"val_{h.name}_{m}" for h in heads if h.task in HEAD_METRICS for m in HEAD_METRICS[h.task]]


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is a value, not a section", key=dotted, override=dotted)
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value``; the value is parsed as YAML (``2`` -> int, ``[1,2]`` -> list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. training.epochs=3", override=text)
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key", override=text)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


# what a config's train file brings along; see _drop_train_companions
TRAIN_COMPANIONS = ("validation", "test", "label_names")


def _drop_train_companions(tree: dict[str, Any], overrides: Sequence[tuple[str, Any]]) -> list[str]:
    """Bring your own data: a new ``data.train`` does not inherit the config's other data.

    A config's ``data.validation``, ``data.test`` and ``data.label_names`` describe its
    own train file. When an override sets ``data.train`` to a different file, each of them
    that no override sets too is dropped: validation is then carved from the new train
    file (``data.validation_fraction``), there is no test set, and labels are named as the
    file has them. So ``llmos train configs/sample_bilstm.yaml --set data.train=own.csv``
    trains and validates on ``own.csv`` instead of testing it on the sample's test file.
    One ``info:`` line on stderr says what was dropped; returns the dropped keys.
    """
    data = tree.get("data")
    trains = [value for key, value in overrides if key == "data.train"]
    if not trains or trains[-1] is None or not isinstance(data, dict):
        return []
    if data.get("train") is not None and os.path.normpath(str(trains[-1])) == os.path.normpath(str(data["train"])):
        return []
    keys = {key for key, _ in overrides}
    dropped = {f"data.{k}": data.pop(k) for k in TRAIN_COMPANIONS if data.get(k) is not None and f"data.{k}" not in keys}
    if dropped:
        parts = [f"{k} ({v})" for k, v in dropped.items()]
        what = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
        split = ", validation is carved from it (data.validation_fraction)" if "data.validation" in dropped else ""
        print(f"info: data.train is now {trains[-1]}, so the config's {what} {'is' if len(dropped) == 1 else 'are'} "
              f"not used{split}; set {'them' if len(dropped) > 1 else 'it'} with --set to keep {'them' if len(dropped) > 1 else 'it'}",
              file=sys.stderr)
    return list(dropped)


def _label_names(value: Any, where: str) -> dict[str, str] | None:
    """``label_names`` keyed by label values in the string form the readers give them.

    YAML and ``--set`` give keys as ``0``, ``"0"``, ``1.0`` or ``true``; a data file's
    label cells read as ``"0"``, ``"1"``, ``"true"``, so the keys are normalised the same way.
    Which keys exist in the data is checked when the data is read.
    """
    if value is None:
        return None
    if not value:
        raise ConfigError(f"{where}: expected a mapping of label value to name, e.g. {{0: negative, 1: positive}}, got {value!r}")
    out: dict[str, str] = {}
    for key, name in value.items():
        if isinstance(key, bool):
            key = str(key).lower()
        elif isinstance(key, float) and key.is_integer():
            key = int(key)
        key = "" if key is None else str(key).strip()
        if not key:
            raise ConfigError(f"{where}: a label value must not be empty (names: {value!r})")
        if isinstance(name, bool) or not isinstance(name, (str, int)) or not str(name).strip() or any(c in str(name) for c in "\r\n"):
            raise ConfigError(f"{where}.{key}: expected a one-line label name, got {name!r}")
        out[key] = str(name).strip()
    repeated = sorted({n for n in out.values() if list(out.values()).count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: two label values have the same name {repeated[0]!r}")
    return out


def config_from_dict(values: Mapping[str, Any], overrides: Sequence[str] = ()) -> RunConfig:
    """Validate a plain mapping (plus ``key=value`` overrides) into a :class:`RunConfig`.

    Overriding ``data.train`` drops the config's validation, test and label names unless
    they are overridden too (:func:`_drop_train_companions`). An error about a key an
    override set is blamed on that override (``--set model.lstm_unitz=32: unknown config
    key ...``, with ``ConfigError.override`` set), not on the mapping it was applied to.
    """
    tree: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(values))) or {}
    parsed = [parse_override(item) for item in overrides]
    _drop_train_companions(tree, parsed)
    for key, value in parsed:
        _set_path(tree, key, value)
    try:
        return _validated(tree)
    except ConfigError as err:
        culprit = _blamed_override(err, list(overrides), [key for key, _ in parsed])
        if culprit is None:
            raise
        raise ConfigError(f"--set {culprit}: {err}", key=err.key, override=culprit) from None


_LEADING_KEY = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?(?:\.\w+(?:\[\d+\])?)*)\s*:")


def _error_key(err: ConfigError) -> str | None:
    """The dotted key an error is about: its ``key``, else the ``key:`` its message starts with."""
    if err.key:
        return err.key
    match = _LEADING_KEY.match(str(err))
    return match.group(1) if match else None


def _blamed_override(err: ConfigError, overrides: list[str], keys: list[str]) -> str | None:
    """The (last) override that set the key ``err`` is about, a parent or a child of it; else None."""
    if err.override is not None:
        return None
    bad = _error_key(err)
    if not bad:
        return None
    for item, key in reversed(list(zip(overrides, keys))):
        if key == bad or bad.startswith(key + ".") or key.startswith(bad + "."):
            return item
    return None


def _validated(tree: dict[str, Any]) -> RunConfig:
    cfg = build(RunConfig, tree, "")
    cfg.data.label_names = _label_names(cfg.data.label_names, "data.label_names")
    for i, head in enumerate(cfg.heads):
        head.label_names = _label_names(head.label_names, f"heads[{i}].label_names")
    if cfg.task not in TASKS:  # the name itself is what is checked (TASKS: the configurable kinds)
        raise ConfigError(f"task: unknown task {cfg.task!r}; valid tasks: {', '.join(TASKS)}")
    from llmos_tf.models import registry  # validates against schemas only: TensorFlow is not imported

    cfg.model = registry.validate_model_config(cfg.model)
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: RunConfig) -> None:
    d, t = cfg.data, cfg.training
    if not 0.0 < d.validation_fraction < 1.0:
        raise ConfigError(f"data.validation_fraction: expected a number between 0 and 1, got {d.validation_fraction}")
    if d.max_length < 2:
        raise ConfigError(f"data.max_length: expected at least 2, got {d.max_length}")
    if t.epochs < 1:
        raise ConfigError(f"training.epochs: expected at least 1, got {t.epochs}")
    if t.batch_size < 1:
        raise ConfigError(f"training.batch_size: expected at least 1, got {t.batch_size}")
    if t.learning_rate <= 0:
        raise ConfigError(f"training.learning_rate: expected a positive number, got {t.learning_rate}")
    if t.mixed_precision not in (None, "float32", "mixed_float16", "mixed_bfloat16"):
        raise ConfigError(f"training.mixed_precision: unknown policy {t.mixed_precision!r}; valid: float32, mixed_float16, mixed_bfloat16")
    if t.optimizer not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"training.optimizer: unknown optimizer {t.optimizer!r}; valid: adam, adamw, sgd")
    kind = task_kind(cfg.task)
    if d.label_names and kind.predicts != "label":
        per_head = "; name a head's labels with heads[i].label_names" if kind.has_heads else ""
        raise ConfigError(f"data.label_names: only used with task: classification (task is {cfg.task!r}){per_head}")
    cfg.training.augment = check_augment(t.augment, task=cfg.task) or None
    if cfg.model.get("crf") and kind.predicts != "word_tags":
        raise ConfigError(f"model.crf: a CRF decodes tag sequences; it needs task: ner (task is {cfg.task!r})")
    if kind.has_heads:
        names = [h.name for h in cfg.heads]
        if len(names) < 2:
            raise ConfigError("heads: a multitask run needs at least two heads (name, train, ...)")
        if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
            raise ConfigError(f"heads: head names must be distinct identifiers, got {names}")
        for i, head in enumerate(cfg.heads):
            _check_head(i, head)
        if cfg.architecture != "bert":
            raise ConfigError("model.architecture: a multitask run shares a BERT encoder; set model.architecture=bert")
        monitors = multitask_monitors(cfg.heads)
        if t.monitor not in monitors:
            raise ConfigError(f"training.monitor: {t.monitor!r} is not logged by this multitask run; valid: {', '.join(monitors)}")
    elif cfg.heads:
        raise ConfigError(f"heads: only used with task: multitask (task is {cfg.task!r})")
    if not cfg.name or "/" in cfg.name or cfg.name.startswith("."):
        raise ConfigError(f"name: {cfg.name!r} is not a valid run name (no '/', not starting with '.')")


def _check_head(i: int, head: HeadConfig) -> None:
    where = f"heads[{i}]"
    if head.task not in HEAD_TASKS:  # the name itself (HEAD_TASKS: the kinds a head may be)
        raise ConfigError(f"{where}.task: unknown head task {head.task!r} for head {head.name!r}; valid: {', '.join(HEAD_TASKS)}")
    if not head.train:
        raise ConfigError(f"{where}.train: no training file for head {head.name!r}")
    if head.loss_weight < 0 or head.sampling_rate <= 0:
        raise ConfigError(f"{where}: loss_weight must be >= 0 and sampling_rate > 0")
    if task_kind(head.task).data_format == "conll":
        if head.format not in (None, "conll"):
            raise ConfigError(f"{where}.format: ner head {head.name!r} reads CoNLL files; got format {head.format!r} (use conll or leave it unset)")
        for key in ("text_column", "label_column", "label_names"):
            if getattr(head, key) is not None:
                raise ConfigError(f"{where}.{key}: ner head {head.name!r} reads CoNLL files (token and tag per line); {key} does not apply")
    elif head.format == "conll":
        raise ConfigError(f"{where}.format: CoNLL files need a token-classification head; set {where}.task: ner")


# training.augment keys (the perturbations of llmos_tf.explain.robustness usable before training;
# neighbour needs a trained embedding table)
AUGMENTATIONS = ("typo", "lowercase", "punctuation", "drop")


def check_augment(augment: Any, where: str = "training.augment", task: str = "classification") -> dict[str, float]:
    """``training.augment`` as ``{perturbation: rate}``, refused with the bad key named before any run folder exists."""
    if augment in (None, {}):
        return {}
    if not isinstance(augment, Mapping):
        raise ConfigError(f"{where}: expected a mapping of perturbation -> rate, e.g. {{typo: 0.1}}; got {augment!r}", key=where)
    if task_kind(task).predicts != "label":
        raise ConfigError(f"{where}: perturbed copies of training texts are made for task: classification only (task is {task!r})", key=where)
    out = {}
    for kind, rate in augment.items():
        key = f"{where}.{kind}"
        if kind == "neighbour":
            raise ConfigError(f"{key}: not available at training time (no trained embedding table yet); use {', '.join(AUGMENTATIONS)}", key=key)
        if kind not in AUGMENTATIONS:
            raise ConfigError(f"{key}: unknown perturbation; valid: {', '.join(AUGMENTATIONS)}", key=key)
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a rate in (0, 1], got {rate!r}", key=key) from None
        if not 0 < rate <= 1:
            raise ConfigError(f"{key}: expected a rate in (0, 1], got {rate}", key=key)
        out[str(kind)] = rate
    return out


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML run config; relative data paths stay relative to the working directory."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(err, 'problem', err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    try:
        return config_from_dict(values, overrides)
    except ConfigError as err:
        if err.override is not None:  # the file is fine; a --set is wrong, and its message says so
            raise
        line = _yaml_line(text, _error_key(err))
        raise ConfigError(f"{path}{f', line {line}' if line else ''}: {err}", key=err.key) from None


def _yaml_line(text: str, dotted: str | None) -> int | None:
    """1-based line of ``dotted`` (``model.lstm_unitz``, ``heads[1].train``) in a YAML text; None when it is not there."""
    if not dotted:
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in dotted.split("."):
        name, _, index = part.partition("[")
        if not isinstance(node, yaml.MappingNode):
            return None
        match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == name), None)
        if match is None:
            return None
        line, node = match[0].start_mark.line + 1, match[1]
        if index:
            i = int(index.rstrip("]"))
            if not isinstance(node, yaml.SequenceNode) or i >= len(node.value):
                return None
            node = node.value[i]
            line = node.start_mark.line + 1
    return line


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML: re-running it reproduces the run."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
