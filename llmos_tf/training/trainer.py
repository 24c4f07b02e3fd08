"""``llmos train``: config in, finished run folder out.

Order of work (so that a bad input costs nothing and a killed run loses little):

1. validate config and data (no folder is created before this passes);
2. create or resume ``runs/<name>/`` (an unfinished folder with the same
   config is resumed from ``backup/``; a finished one is refused without
   ``overwrite``);
3. vocabulary, tf.data pipelines, model and optimizer inside ``strategy.scope()``;
4. ``fit`` with BackupAndRestore, best-checkpoint, early stopping and
   TensorBoard logging (scalars, learning rate, hparams, graph, confusion matrix);
5. restore the best weights, evaluate, write ``model.keras`` and finally
   ``run.json`` (the completion marker).
"""
from __future__ import annotations

import pathlib
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import RunConfig, dump_config
from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
from llmos_tf.data.prepare import PreparedData, prepare_classification_data
from llmos_tf.errors import RunError
from llmos_tf.models import registry
from llmos_tf.training import artifacts
from llmos_tf.training.callbacks import BestCheckpoint, LearningRateLogger, ValidationReport, metric_mode
from llmos_tf.training.distribute import WorkerRole, describe_choice, resolve_strategy, with_data_sharding
from llmos_tf.training.evaluation import classification_metrics
from llmos_tf.training.optimizers import build_optimizer
from llmos_tf.training.precision import loss_scaled, precision_policy
from llmos_tf.training.tensorboard_extras import EmbeddingProjector, profile_batches


@dataclass
class TrainResult:
    run_dir: pathlib.Path
    metrics: dict[str, Any]
    info: dict[str, Any]
    history: dict[str, list[float]]


def training_facts(*, model, history, best, monitor: str, steps_per_epoch: int, replicas: int, resumed: bool,
                   start_step: int, final_step: int, started: float, command: str | None) -> dict[str, Any]:
    """The part of ``run.json`` every trainer (classifier, tagger) records the same way."""
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
    """Remembers the optimizer step at which ``fit`` started (non-zero after a resume)."""

    step = 0

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())


def _prepare_run_dir(cfg: RunConfig, overwrite: bool, role: WorkerRole | None = None) -> tuple[pathlib.Path, bool]:
    """Return (run_dir, resuming); a non-chief worker gets its scratch folder and leaves the run folder to the chief."""
    run_dir = cfg.run_dir
    config_text = dump_config(cfg)
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


def _vocabulary(cfg: RunConfig, data: PreparedData, run_dir: pathlib.Path, arch) -> list[str]:
    from llmos_tf.text.wordpiece import load_vocabulary, save_vocabulary

    path = run_dir / artifacts.VOCAB_FILE
    if path.is_file():
        return load_vocabulary(path)
    vocab = arch.vocabulary(registry.model_config(cfg.model), data.train["text"].tolist(), cfg.text)
    save_vocabulary(vocab, path)
    return vocab


def _hparams(cfg: RunConfig) -> dict[str, Any]:
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


def write_hparams(run_dir: pathlib.Path, cfg: RunConfig) -> None:
    """Record the hyperparameters for TensorBoard's HParams dashboard."""
    from tensorboard.plugins.hparams import api as hp

    values = _hparams(cfg)
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        hp.hparams_config(
            hparams=[hp.HParam(name) for name in values],
            metrics=[
                hp.Metric("epoch_accuracy", group="validation", display_name="val accuracy"),
                hp.Metric("epoch_loss", group="validation", display_name="val loss"),
                hp.Metric("epoch_macro_f1", group="validation", display_name="val macro-F1"),
            ],
        )
        hp.hparams(values, trial_id=cfg.name)


def train(cfg: RunConfig, *, overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, command: str | None = None,
          profile: str | None = None, tpu: str | None = None) -> TrainResult:
    """Train the model the config describes; see the module docstring for the steps.

    ``profile`` (``"START,STOP"`` batches, classification runs) records TensorBoard profiler traces.
    """
    if profile and cfg.task != "classification":
        raise RunError(f"--profile: profiler traces are recorded for classification runs; this run's task is {cfg.task!r}")
    profile_batches(profile)  # a bad --profile value fails before any folder is written
    if cfg.task != "classification" and describe_choice(strategy, tpu=tpu) == "multi_worker":
        # the tagger and multitask trainers do not separate chief and worker folders yet: refuse rather than corrupt a run
        raise RunError(f"--strategy multi_worker: multi-worker training is implemented for classification runs; "
                       f"train this {cfg.task!r} run on one machine (--strategy mirrored uses all its GPUs)")
    if cfg.task == "ner":
        from llmos_tf.training.tagging import train_tagger

        return train_tagger(cfg, overwrite=overwrite, strategy=strategy, verbose=verbose, command=command)
    if cfg.task == "multitask":
        from llmos_tf.training.multitask import train_multitask

        return train_multitask(cfg, overwrite=overwrite, strategy=strategy, verbose=verbose, command=command)
    started = time.time()
    dist = resolve_strategy(strategy, tpu=tpu)  # first: MultiWorkerMirroredStrategy must exist before other TensorFlow work
    role = WorkerRole.of(dist, cfg.run_dir)
    tf_keras.utils.set_random_seed(cfg.seed)
    data = prepare_classification_data(cfg.data, cfg.seed)
    arch = registry.get(cfg.architecture)
    run_dir, resuming = _prepare_run_dir(cfg, overwrite, role)
    vocab = _vocabulary(cfg, data, run_dir, arch)
    data.labels.save(run_dir / artifacts.LABELS_FILE)

    model_cfg = registry.model_config(cfg.model)
    d = cfg.data
    max_length = arch.max_length(model_cfg, d.max_length)
    tokenizer = arch.tokenizer(model_cfg, vocab, cfg.text, max_length)
    replicas = dist.num_replicas_in_sync
    plan = BatchingPlan(
        batch_size=cfg.training.batch_size * replicas,
        max_length=max_length,
        bucketing=d.bucketing,
        bucket_boundaries=tuple(d.bucket_boundaries),
        tpu_mode=d.tpu_mode,
    )
    train_texts = data.train["text"].tolist()
    lengths = token_lengths(train_texts, tokenizer, max_length)
    truncated = int(np.sum(lengths >= max_length))
    steps_per_epoch = count_batches(lengths, plan, training=True)
    if cfg.training.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.training.steps_per_epoch)
    if steps_per_epoch < 1:
        raise RunError(f"data.train: {len(train_texts)} examples make no full batch of {plan.batch_size} in TPU mode; lower training.batch_size")
    train_ds = with_data_sharding(make_dataset(train_texts, data.y_train, tokenizer, plan, training=True, seed=cfg.seed, shuffle_buffer=d.shuffle_buffer, repeat=True, features=arch.features))
    eval_plan = BatchingPlan(batch_size=plan.batch_size, max_length=max_length, bucketing=False, tpu_mode=False)
    val_texts = data.validation["text"].tolist()
    val_ds = with_data_sharding(make_dataset(val_texts, data.y_validation, tokenizer, eval_plan, training=False, features=arch.features))
    val_inputs = val_ds.map(lambda x, y: x)

    total_steps = steps_per_epoch * cfg.training.epochs
    with dist.scope(), precision_policy(cfg.training.mixed_precision):  # layers take the policy when built
        model = arch.build(model_cfg, registry.BuildContext(num_labels=len(data.labels), vocabulary=vocab, task=cfg.task, max_length=max_length))
        model.compile(
            optimizer=loss_scaled(build_optimizer(cfg.training, total_steps), cfg.training.mixed_precision),
            loss=tf_keras.losses.SparseCategoricalCrossentropy(),
            metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            steps_per_execution=1,
        )

    if not resuming:
        write_hparams(run_dir, cfg)
    role.seed_from_chief(artifacts.CHECKPOINT_DIR)  # a resumed worker restores what the chief restores
    best = BestCheckpoint(run_dir / artifacts.CHECKPOINT_DIR, cfg.training.monitor)
    start_step = StartStep()
    callbacks: list[tf_keras.callbacks.Callback] = [
        # the chief's backup/ for every worker (Keras writes non-chief copies to a temporary sub-folder)
        tf_keras.callbacks.BackupAndRestore(str(cfg.run_dir / artifacts.BACKUP_DIR), save_freq=max(1, cfg.training.backup_every_steps), delete_checkpoint=False),
        start_step,  # after BackupAndRestore: sees the restored step counter
        ValidationReport(val_inputs, data.y_validation, val_texts, data.labels.names, run_dir),
        EmbeddingProjector(val_inputs, data.y_validation, val_texts, data.labels.names, run_dir / "validation"),
        LearningRateLogger(run_dir, cfg.training.log_every_steps),
        tf_keras.callbacks.TensorBoard(str(run_dir), update_freq=max(1, cfg.training.log_every_steps), write_graph=True, profile_batch=profile_batches(profile)),
        best,
    ]
    if cfg.training.early_stopping_patience > 0:
        callbacks.append(tf_keras.callbacks.EarlyStopping(monitor=cfg.training.monitor, mode=metric_mode(cfg.training.monitor), patience=cfg.training.early_stopping_patience))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.training.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
    final_step = int(model.optimizer.iterations.numpy())  # before restoring the best weights (they carry optimizer state)
    best.restore()
    val_metrics = classification_metrics(data.y_validation, model.predict(val_inputs, verbose=0).argmax(-1), data.labels.names)
    metrics: dict[str, Any] = {"validation": val_metrics}
    if data.test is not None:
        test_ds = make_dataset(data.test["text"].tolist(), None, tokenizer, eval_plan, training=False, cache=False, features=arch.features)
        metrics["test"] = classification_metrics(data.y_test, model.predict(test_ds, verbose=0).argmax(-1), data.labels.names)

    info = {
        "name": cfg.name,
        "task": cfg.task,
        "architecture": cfg.architecture,
        "labels": data.labels.names,
        "data": {**data.summary(), "files": {"train": d.train, "validation": d.validation, "test": d.test}, "truncated_train_examples": truncated},
        "metrics": {k: {m: v[m] for m in ("examples", "accuracy", "macro_f1")} for k, v in metrics.items()},
        **training_facts(
            model=model, history=history, best=best, monitor=cfg.training.monitor, steps_per_epoch=steps_per_epoch,
            replicas=replicas, resumed=resuming, start_step=start_step.step, final_step=final_step, started=started, command=command,
        ),
    }
    artifacts.finish_run(run_dir, model, metrics, info)  # every worker saves (saving may need collectives) ...
    role.cleanup()  # ... and only the chief's copy stays
    return TrainResult(run_dir=cfg.run_dir, metrics=metrics, info=info, history={k: [float(x) for x in v] for k, v in history.history.items()})
