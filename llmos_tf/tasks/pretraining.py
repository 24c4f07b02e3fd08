"""Masked-language-model (MLM) pretraining of the tf_keras BERT encoder as a task.

``llmos pretrain`` builds a :class:`PretrainingTask` from its flags
(:class:`~llmos_tf.training.pretrain_config.PretrainConfig`) and runs it through
the one fit driver, :func:`llmos_tf.training.loop.fit`: run folder
(``runs/pretrain_<output name>/`` unless ``--run_dir``), resume after a kill,
TensorBoard, best checkpoint (lowest training loss), mixed precision and
``--profile`` by the same rules as every task, ``run.json``. Its export,
:func:`export_encoder`, writes the *llmos encoder folder* the rest of the code
consumes (``encoder_config.json``, ``encoder.weights.h5``, ``vocabulary.txt``
and ``pretrain.json``; ``model: {encoder: <folder>}`` fine-tunes it).

The encoder is new (sizes from the settings, WordPiece vocabulary learnt from
the corpus) or continued from a checkpoint spec (``minilm-l6``, a keras-hub /
Hugging Face folder, or an encoder folder). The MLM head gathers the encoder's
``sequence_output`` at the masked positions -> Dense(hidden, gelu) -> LayerNorm
-> logits through the (tied) token-embedding matrix plus a bias; the loss is
sparse cross-entropy averaged over the real masked positions (``mask_weights``).

Unlike the other tasks it is not named by a run config's ``task:`` (its corpus
is a list of plain-text files and its product an encoder folder, which
:class:`~llmos_tf.config.RunConfig` does not describe), so its kind is not
``configurable`` (:mod:`llmos_tf.task_kinds`): ``load_trained`` knows its runs, ``get_task`` does not.

Example::

    task = PretrainingTask(PretrainConfig(corpus=["data/sample/corpus.txt"], output="encoders/tiny"))
    result = fit(task)
    export_encoder(result.run_dir, "encoders/tiny")
    load_trained(result.run_dir).predict(["the film was [MASK] ."])   # fill-mask
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import DataConfig, RunConfig, TextConfig, TrainingConfig
from llmos_tf.errors import ConfigError, RunError
from llmos_tf.task_kinds import task_kind
from llmos_tf.tasks.base import Task, TaskInputs, register_task
from llmos_tf.tasks.pretraining_data import Corpus, make_mask_generator, mask_selection_length, mlm_dataset, read_corpus
from llmos_tf.tasks.pretraining_model import MaskedLMPretrainer, learn_corpus_vocabulary, new_encoder
from llmos_tf.training import artifacts
from llmos_tf.training.pretrain_config import PretrainConfig

PRETRAIN_FILE = "pretrain.json"
EVAL_BATCHES = 32  # the final MLM loss is measured on at most this many batches of the corpus


def checkpoint_lowercase(spec: str | None) -> bool:
    """Whether the checkpoint's tokenizer lowercases (a new encoder's vocabulary is learnt lowercased)."""
    if not spec:
        return True
    from llmos_tf.models.pretrained import _load_vocabulary, resolve_checkpoint

    return _load_vocabulary(resolve_checkpoint(spec), spec)[1]


def default_run_dir(settings: PretrainConfig) -> pathlib.Path:
    return pathlib.Path(settings.run_dir or pathlib.Path("runs") / f"pretrain_{pathlib.Path(settings.output).name}")


def run_config(settings: PretrainConfig) -> RunConfig:
    """The :class:`RunConfig` the trainer reads (run folder, optimiser, precision, seed) for these settings."""
    run_dir = default_run_dir(settings)
    model: dict[str, Any] = {"architecture": "bert"}
    if settings.encoder:
        model["encoder"] = settings.encoder
    else:
        model.update({k: getattr(settings, k) for k in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")})
    return RunConfig(
        name=run_dir.name, task=PretrainingTask.name, seed=settings.seed, output_dir=str(run_dir.parent),
        data=DataConfig(max_length=settings.max_length, bucketing=False), text=TextConfig(vocabulary_size=settings.vocabulary_size),
        model=model,
        training=TrainingConfig(epochs=settings.epochs, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                                monitor="loss", early_stopping_patience=0, steps_per_epoch=settings.steps_per_epoch,
                                backup_every_steps=settings.backup_every_steps,
                                mixed_precision=settings.mixed_precision),
    )


def read_settings(run_dir: str | pathlib.Path) -> PretrainConfig:
    """The settings a pretraining run folder's ``config.yaml`` records."""
    path = pathlib.Path(run_dir) / artifacts.CONFIG_FILE
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    values.pop("task", None)
    return PretrainConfig(**{k: v for k, v in values.items() if k in PretrainConfig.__dataclass_fields__})


class _LossLog(tf_keras.callbacks.Callback):
    """The first batch's loss and the per-epoch losses of this process (``pretrain.json`` reports them)."""

    def __init__(self):
        super().__init__()
        self.first_loss: float | None = None  # the run's very first batch (None after a resume)
        self.losses: list[float] = []
        self.resumed = False

    def on_train_begin(self, logs=None):
        self.resumed = int(self.model.optimizer.iterations.numpy()) > 0  # BackupAndRestore ran first: no first batch here

    def on_train_batch_end(self, batch, logs=None):
        if self.first_loss is None and not self.resumed:
            self.first_loss = float((logs or {}).get("loss", float("nan")))

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(float((logs or {}).get("loss", float("nan"))))


@register_task
class PretrainingTask(Task):
    """MLM pretraining of a BERT encoder (see the module docstring)."""

    name = "pretraining"
    kind = task_kind(name)  # not configurable: built from `llmos pretrain`'s flags
    summary_metrics = (("mlm_loss", "MLM loss"),)
    hparam_metrics = (("epoch_loss", "train MLM loss"),)
    multi_worker = ("the encoder folder is exported by the process that trains, and `llmos pretrain` has no worker roles; "
                    "multi-worker training is implemented for classification runs")
    write_graph = False  # a subclassed model: Keras has no graph to draw before it is called

    def __init__(self, settings: PretrainConfig) -> None:
        super().__init__(run_config(settings))
        self.settings = settings
        self._log = _LossLog()

    @property
    def max_length(self) -> int:
        return int(self.settings.max_length)

    def config_text(self) -> str:
        return yaml.safe_dump({"task": self.name, **dataclasses.asdict(self.settings)}, sort_keys=False)

    def check(self) -> None:
        s = self.settings
        if not 0.0 < s.mask_rate < 1.0:
            raise ConfigError(f"mask_rate={s.mask_rate}: must be between 0 and 1")
        for name in ("batch_size", "epochs", "max_length", "backup_every_steps"):
            if int(getattr(s, name)) < 1:
                raise ConfigError(f"{name}={getattr(s, name)}: must be at least 1")
        if s.max_length < 3:
            raise ConfigError(f"max_length={s.max_length}: must be at least 3 ([CLS] token [SEP])")
        if s.steps_per_epoch is not None and s.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch={s.steps_per_epoch}: must be at least 1 (or unset)")
        if not s.output:
            raise ConfigError("output: an output folder is required")
        output = pathlib.Path(s.output)
        if output.is_file() or (output.is_dir() and any(output.iterdir()) and not (output / "encoder_config.json").is_file()):
            raise RunError(f"{output}: exists and is not an encoder folder; choose another --output")
        if s.encoder:
            from llmos_tf.models.bert_classifier import BertClassifierConfig, checkpoint_positions

            positions = checkpoint_positions(BertClassifierConfig(encoder=s.encoder))
            if positions is not None and s.max_length > positions:
                raise ConfigError(f"max_length={s.max_length} exceeds encoder {s.encoder!r}'s {positions} positions")

    def extra_hparams(self) -> dict[str, Any]:
        return {"mask_rate": self.settings.mask_rate, "encoder": self.settings.encoder or "new"}

    # -- data ------------------------------------------------------------------
    def prepare_data(self) -> Corpus:
        return Corpus(*read_corpus(self.settings.corpus))

    def label_maps(self, data) -> dict[str, Any]:
        return {}

    def learn_vocabulary(self, data: Corpus) -> list[str]:
        if self.settings.encoder:
            from llmos_tf.models.pretrained import _load_vocabulary, resolve_checkpoint

            return _load_vocabulary(resolve_checkpoint(self.settings.encoder), self.settings.encoder)[0]
        return learn_corpus_vocabulary(self.settings, data.texts)

    def build_preprocessor(self, vocabulary: Sequence[str]):
        from llmos_tf.text.bert_tokenizer import BertTextEncoder

        lowercase = checkpoint_lowercase(self.settings.encoder)
        return BertTextEncoder(list(vocabulary), sequence_length=self.max_length, lowercase=lowercase, strip_accents=lowercase)

    def _dataset(self, texts, preprocessor, batch_size: int, *, seed: int, repeat: bool):
        generator = make_mask_generator(preprocessor.vocabulary, mask_rate=self.settings.mask_rate, max_length=self.max_length)
        return mlm_dataset(texts, preprocessor, generator, batch_size=batch_size, max_length=self.max_length, seed=seed, repeat=repeat)

    def build_inputs(self, data: Corpus, preprocessor, plan, eval_plan, *, seed: int) -> TaskInputs:
        n, batch = len(data.texts), plan.batch_size
        return TaskInputs(train=self._dataset(data.texts, preprocessor, batch, seed=seed, repeat=True),
                          steps_per_epoch=max(1, n // batch), examples=f"{n} passages",
                          facts={"passages": n, "corpus": data.files, "corpus_fingerprint": data.fingerprint})

    # -- model -----------------------------------------------------------------
    def build_model(self, data, preprocessor, vocabulary: Sequence[str]) -> MaskedLMPretrainer:
        s = self.settings
        if s.encoder:
            from llmos_tf.models.pretrained import load_pretrained_encoder

            encoder, checkpoint_vocabulary, _ = load_pretrained_encoder(s.encoder)
            if list(checkpoint_vocabulary) != list(vocabulary):
                raise RunError(f"{self.cfg.run_dir}: vocab.txt does not match checkpoint {s.encoder!r}; pass --overwrite to start again")
        else:
            encoder = new_encoder(s, vocabulary)
        return MaskedLMPretrainer(encoder)

    def compile_args(self, model) -> dict[str, Any]:
        return {}  # the loss is the model's own (masked positions only, in train_step)

    # -- validation, evaluation, run.json ---------------------------------------
    def validation_callbacks(self, data, preprocessor, inputs: TaskInputs, log_dir: pathlib.Path, batch_size: int) -> list:
        return [self._log]

    def evaluate(self, model, data: Corpus, preprocessor, inputs: TaskInputs, batch_size: int) -> dict[str, Any]:
        """The restored best weights' MLM loss on (the start of) the corpus with fixed masks: no held-out text
        exists, so this is a training-set figure; it checks the restored weights are the trained ones."""
        ds = self._dataset(data.texts, preprocessor, batch_size, seed=self.cfg.seed + 1, repeat=False).take(EVAL_BATCHES)
        result = model.evaluate(ds, verbose=0, return_dict=True)
        return {"corpus": {"mlm_loss": float(result["loss"]), "passages": min(len(data.texts), EVAL_BATCHES * batch_size)}}

    def run_info(self, data: Corpus, metrics: dict[str, Any], inputs: TaskInputs) -> dict[str, Any]:
        return {
            "data": inputs.facts,
            "metrics": metrics,
            "pretraining": {"settings": dataclasses.asdict(self.settings), "losses": self._log.losses, "first_loss": self._log.first_loss,
                            "mask_selection_length": mask_selection_length(self.max_length, self.settings.mask_rate)},
        }

    # -- inference and export ----------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedEncoder":
        return TrainedEncoder.load(run_dir)


class TrainedEncoder:
    """A finished pretraining run loaded back: ``predict(texts)`` fills each ``[MASK]`` with the MLM head's best token.

    Example::

        load_trained("runs/pretrain_tiny").predict(["the film was [MASK] ."]).loc[0, "predictions"]  # ['good']
    """

    def __init__(self, run_dir: pathlib.Path, settings: PretrainConfig, model: MaskedLMPretrainer, vocabulary: list[str], info: dict[str, Any]):
        self.run_dir, self.settings, self.model, self.vocabulary, self.info = run_dir, settings, model, vocabulary, info

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedEncoder":
        from llmos_tf.tasks.classification import load_keras_model
        from llmos_tf.text.wordpiece import load_vocabulary

        run_dir = pathlib.Path(run_dir)
        info = artifacts.read_run_info(run_dir)
        return cls(run_dir, read_settings(run_dir), load_keras_model(run_dir), load_vocabulary(run_dir / artifacts.VOCAB_FILE), info)

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        """One row per text: ``predictions``, the best token for each ``[MASK]`` in order (empty without one)."""
        from llmos_tf.text.bert_tokenizer import MASK_TOKEN, BertTextEncoder

        lowercase = checkpoint_lowercase(self.settings.encoder)
        encoder = BertTextEncoder(self.vocabulary, sequence_length=self.settings.max_length, lowercase=lowercase, strip_accents=lowercase)
        rows = []
        for text in map(str, texts):  # "[MASK]" is split out before WordPiece, which would cut it into "[", "mask", "]"
            parts = [encoder.tokenize([p]).to_list()[0] for p in text.split(MASK_TOKEN)]
            ids = [encoder.cls_id] + sum(([*p, encoder.mask_id] for p in parts[:-1]), []) + parts[-1]
            rows.append((ids[: self.settings.max_length - 1] + [encoder.sep_id]))
        width = self.settings.max_length
        token_ids = np.full([len(rows), width], encoder.pad_id, np.int32)
        for i, ids in enumerate(rows):
            token_ids[i, : len(ids)] = ids
        masks = [np.nonzero(r == encoder.mask_id)[0] for r in token_ids]
        positions = np.zeros([len(rows), max([1, *map(len, masks)])], np.int32)
        for i, m in enumerate(masks):
            positions[i, : len(m)] = m
        logits = self.model({"token_ids": token_ids, "padding_mask": (token_ids != encoder.pad_id).astype(np.int32),
                             "segment_ids": np.zeros_like(token_ids), "mask_positions": positions}, training=False).numpy() if rows else []
        best = [[self.vocabulary[j] for j in logits[i, : len(m)].argmax(-1)] for i, m in enumerate(masks)]
        return pd.DataFrame({"text": list(texts), "predictions": best})


def export_encoder(run_dir: str | pathlib.Path, output: str | os.PathLike) -> dict[str, Any]:
    """Write the finished run's encoder as an llmos encoder folder at ``output`` (staged, then renamed into place;
    an encoder folder already there is replaced) and return its ``pretrain.json`` summary."""
    from llmos_tf.models.pretrained import save_encoder

    trained = TrainedEncoder.load(run_dir)
    info, output = trained.info, pathlib.Path(output)
    p = info.get("pretraining", {})
    losses = _epoch_losses(trained.run_dir, p.get("losses", []))
    summary = {
        "losses": losses,
        "first_loss": p.get("first_loss"),
        "last_loss": losses[-1] if losses else None,
        "steps": info.get("optimizer_steps"),
        "output": str(output),
        "run_dir": str(trained.run_dir),
        "config": p.get("settings", dataclasses.asdict(trained.settings)),
        "encoder_config": trained.model.encoder.get_config(),
        "vocabulary_size": len(trained.vocabulary),
        "lowercase": checkpoint_lowercase(trained.settings.encoder),
        "mask_selection_length": p.get("mask_selection_length"),
        "corpus": info.get("data", {}).get("corpus"),
        "corpus_fingerprint": info.get("data", {}).get("corpus_fingerprint"),
        "num_passages": info.get("data", {}).get("passages"),
        "metrics": info.get("metrics"),
        "elapsed_seconds": info.get("wall_time_seconds"),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_encoder(trained.model.encoder, tmp, trained.vocabulary)
    (tmp / PRETRAIN_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _replace_folder(tmp, output)
    return summary


def _epoch_losses(run_dir: pathlib.Path, fallback: list[float]) -> list[float]:
    """Mean MLM loss per epoch from the run's TensorBoard event files: the whole history, also when a killed
    run was resumed (``run.json`` only has the epochs of the process that finished)."""
    from llmos_tf.tensorboard_data import read_history

    try:
        history = read_history(run_dir)
    except RunError:
        return list(fallback)
    return [float(x) for x in history["loss"].dropna()] if "loss" in history else list(fallback)


def _replace_folder(tmp: pathlib.Path, output: pathlib.Path) -> None:
    """Rename ``tmp`` to ``output``; an existing encoder folder there is replaced."""
    from llmos_tf.models.pretrained import is_encoder_folder

    if output.exists():
        if output.is_file() or (any(output.iterdir()) and not is_encoder_folder(output)):
            shutil.rmtree(tmp, ignore_errors=True)
            raise RunError(f"{output}: exists and is not an encoder folder; choose another --output")
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        output.rename(old)
        tmp.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(output)
