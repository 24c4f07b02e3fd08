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

:func:`train` is the one place that picks the driver by ``task``: it trains
classifiers itself and hands ``ner`` and ``multitask`` runs to
:func:`~llmos_tf.training.tagging.train_tagger` and
:func:`~llmos_tf.training.multitask.train_multitask`. The drivers share the
run-folder skeleton of :mod:`llmos_tf.training.run_folder` and never import
this module (no import cycle).
"""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from llmos_tf._tf import tf_keras
from llmos_tf.config import RunConfig
from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
from llmos_tf.data.prepare import prepare_classification_data
from llmos_tf.errors import RunError
from llmos_tf.models import registry
from llmos_tf.training import artifacts
from llmos_tf.training.callbacks import BestCheckpoint, LearningRateLogger, ValidationReport, metric_mode
from llmos_tf.training.distribute import WorkerRole, describe_choice, resolve_strategy, with_data_sharding
from llmos_tf.training.evaluation import classification_metrics
from llmos_tf.training.optimizers import build_optimizer
from llmos_tf.training.precision import loss_scaled, precision_policy
from llmos_tf.training.run_folder import StartStep, TrainResult, prepare_run_dir, run_vocabulary, training_facts, write_hparams
from llmos_tf.training.tensorboard_extras import EmbeddingProjector, profile_batches


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
    run_dir, resuming = prepare_run_dir(cfg, overwrite, role)
    vocab = run_vocabulary(cfg, data, run_dir, arch)
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
