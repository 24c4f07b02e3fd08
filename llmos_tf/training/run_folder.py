"""The run-folder skeleton every training driver shares.

Every driver (classifier, tagger, multitask, distilled student) creates or
resumes ``runs/<name>/`` the same way, learns or reloads its vocabulary there,
writes the same TensorBoard hparams, notes the optimizer step ``fit`` resumed
from and records the same training facts in ``run.json``. Those pieces live
here, below the drivers, so that each driver imports them and none imports
another driver: they used to sit in :mod:`llmos_tf.training.trainer`, which also
dispatches to the tagger and multitask drivers, and the drivers imported them
back from it (an import cycle). The file layout itself (names, atomic writes,
the completion marker) is :mod:`llmos_tf.training.artifacts`.

Example::

    run_dir, resuming = prepare_run_dir(cfg, overwrite=False)
    vocab = run_vocabulary(run_dir, lambda: task.learn_vocabulary(data))
    if not resuming:
        write_hparams(run_dir, cfg)
"""
from __future__ import annotations

import pathlib
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import RunConfig, dump_config
from llmos_tf.errors import RunError
from llmos_tf.training import artifacts
from llmos_tf.training.distribute import WorkerRole


@dataclass
class TrainResult:
    """What every training driver returns: the run folder, its metrics, ``run.json``'s content and the Keras history."""

    run_dir: pathlib.Path
    metrics: dict[str, Any]
    info: dict[str, Any]
    history: dict[str, list[float]]


def training_facts(*, model, history, best, monitor: str, steps_per_epoch: int, replicas: int, resumed: bool,
                   start_step: int, final_step: int, started: float, command: str | None) -> dict[str, Any]:
    """The part of ``run.json`` every trainer (classifier, tagger, multitask, student) records the same way,
    so that ``llmos runs`` and resumption checks read one format whatever the task."""
    return {
        "best_epoch": best.best_epoch,
        "monitor": {"name": monitor, "best": best.best},
        "parameters": int(model.count_params()),
        "epochs_run": len(history.history.get("loss", [])),
        "steps_per_epoch": steps_per_epoch,
        "replicas": replicas,
        "resumed": resumed,
        "resumed_from_step": start_step,
        "initial_epoch": history.epoch[0] if history.epoch else None,  # > 0 when BackupAndRestore resumed a later epoch
        "optimizer_steps": final_step,
        "wall_time_seconds": round(time.time() - started, 1),
        "command": command,
        "tensorflow": tf.__version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class StartStep(tf_keras.callbacks.Callback):
    """Remembers the optimizer step at which ``fit`` started (non-zero after a resume).

    Placed after ``BackupAndRestore`` in the callback list, it sees the restored
    step counter, which ``run.json`` records as ``resumed_from_step``.
    """

    step = 0

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())


def prepare_run_dir(cfg: RunConfig, overwrite: bool, role: WorkerRole | None = None, config_text: str | None = None) -> tuple[pathlib.Path, bool]:
    """Create or resume the run folder; return (run_dir, resuming).

    An unfinished folder with the same config is resumed (its ``backup/`` holds the
    state); a finished one, or an unfinished one with a different config, is refused
    unless ``overwrite``, so a typo never destroys a run. A non-chief worker gets its
    scratch folder and leaves the run folder to the chief. ``config_text`` is what
    ``config.yaml`` holds (default: ``cfg`` dumped; pretraining records its own settings).
    """
    run_dir = cfg.run_dir
    config_text = dump_config(cfg) if config_text is None else config_text
    if role is not None and not role.is_chief:
        if artifacts.is_finished(run_dir) and not overwrite:  # the chief refuses too: fail here rather than hang
            raise RunError(f"{run_dir}: a finished run already exists; pass --overwrite to replace it or --set name=NEW_NAME")
        artifacts.write_text_atomic(role.write_dir / artifacts.CONFIG_FILE, config_text)
        return role.write_dir, (run_dir / artifacts.BACKUP_DIR).is_dir()
    if run_dir.exists():
        if overwrite:
            shutil.rmtree(run_dir)
        elif artifacts.is_finished(run_dir):
            raise RunError(f"{run_dir}: a finished run already exists; pass --overwrite to replace it or --set name=NEW_NAME")
        else:
            saved = run_dir / artifacts.CONFIG_FILE
            if saved.is_file() and saved.read_text(encoding="utf-8") != config_text:
                raise RunError(
                    f"{run_dir}: an unfinished run with a different config is there; "
                    "re-run with the same config to resume it, or pass --overwrite to start again"
                )
            if saved.is_file():
                return run_dir, True
    run_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_text_atomic(run_dir / artifacts.CONFIG_FILE, config_text)
    return run_dir, False


def run_vocabulary(run_dir: pathlib.Path, learn: Callable[[], list[str]]) -> list[str]:
    """The run's vocabulary: reloaded from ``vocab.txt`` when resuming (a resumed run must
    tokenize exactly as before), else ``learn()`` (the task learns it from its training
    texts, or its checkpoint brings it) and saved there."""
    from llmos_tf.text.wordpiece import load_vocabulary, save_vocabulary

    path = run_dir / artifacts.VOCAB_FILE
    if path.is_file():
        return load_vocabulary(path)
    vocab = learn()
    save_vocabulary(vocab, path)
    return vocab


def flat_hparams(cfg: RunConfig) -> dict[str, Any]:
    """The run's hyperparameters as TensorBoard's HParams dashboard takes them (flat, scalar values),
    so runs of every task compare in one table."""
    flat: dict[str, Any] = {"architecture": cfg.architecture}
    for key, value in cfg.model.items():
        if key != "architecture" and isinstance(value, (int, float, str, bool)):
            flat[f"model.{key}"] = value
    t = cfg.training
    flat.update({
        "training.learning_rate": t.learning_rate,
        "training.batch_size": t.batch_size,
        "training.epochs": t.epochs,
        "training.optimizer": t.optimizer,
        "data.max_length": cfg.data.max_length,
        "data.bucketing": cfg.data.bucketing,
        "text.vocabulary_size": cfg.text.vocabulary_size,
        "seed": cfg.seed,
    })
    return flat


CLASSIFICATION_HPARAM_METRICS = (("epoch_accuracy", "val accuracy"), ("epoch_loss", "val loss"), ("epoch_macro_f1", "val macro-F1"))


def write_hparams(run_dir: pathlib.Path, cfg: RunConfig, metrics: Sequence[tuple[str, str]] = CLASSIFICATION_HPARAM_METRICS,
                  extra: dict[str, Any] | None = None) -> None:
    """Record the hyperparameters (plus a task's ``extra`` ones) for TensorBoard's HParams dashboard,
    with the task's validation ``metrics`` as ``(tag, display name)`` pairs."""
    from tensorboard.plugins.hparams import api as hp

    values = {**flat_hparams(cfg), **(extra or {})}
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        hp.hparams_config(
            hparams=[hp.HParam(name) for name in values],
            metrics=[hp.Metric(tag, group="validation", display_name=display) for tag, display in metrics],
        )
        hp.hparams(values, trial_id=cfg.name)
