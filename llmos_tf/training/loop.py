"""The one fit driver: any :class:`~llmos_tf.tasks.base.Task` in, a finished run folder out.

Order of work (so that a bad input costs nothing and a killed run loses little):

1. the run options are checked against the task (:func:`check_run_options`,
   the one rule for ``--strategy multi_worker`` and ``--profile``), the config
   and data are validated: no folder is created before this passes;
2. ``runs/<name>/`` is created or resumed (an unfinished folder with the same
   config is resumed from ``backup/``; a finished one is refused without
   ``overwrite``); a non-chief worker of a multi-worker run writes a scratch
   copy (:class:`~llmos_tf.training.distribute.WorkerRole`);
3. vocabulary, label files, tf.data inputs, then model and optimizer inside
   ``strategy.scope()`` and the ``training.mixed_precision`` dtype policy
   (every task: layers take the policy when they are built);
4. ``fit`` with BackupAndRestore, the task's validation callbacks, learning-rate
   and TensorBoard logging (``--profile`` traces too), best checkpoint and early stopping;
5. the best weights are restored, the task evaluates, ``model.keras``,
   ``metrics.json`` and finally ``run.json`` (the completion marker) are written.

Example::

    from llmos_tf.tasks import get_task
    result = fit(get_task(load_config("configs/sample_ner.yaml")), strategy="default")
    result.metrics["validation"]["entity_f1"]
"""
from __future__ import annotations

import sys
import time
from typing import Any

from llmos_tf._tf import tf_keras
from llmos_tf.data.pipeline import BatchingPlan
from llmos_tf.errors import RunError
from llmos_tf.tasks.base import Task
from llmos_tf.training import artifacts
from llmos_tf.training.callbacks import BestCheckpoint, LearningRateLogger, metric_mode
from llmos_tf.training.distribute import WorkerRole, describe_choice, resolve_strategy, with_data_sharding
from llmos_tf.training.optimizers import build_optimizer
from llmos_tf.training.precision import loss_scaled, precision_policy
from llmos_tf.training.run_folder import StartStep, TrainResult, prepare_run_dir, run_vocabulary, training_facts, write_hparams
from llmos_tf.training.tensorboard_extras import profile_batches


def check_run_options(task: Task, *, strategy: str = "auto", tpu: str | None = None, profile: str | None = None) -> None:
    """The one rule for run options a task may not support; raises before anything is written.

    ``--profile`` works for every task (Keras' TensorBoard callback traces the
    batches) and is only parsed here. ``--strategy multi_worker`` needs a task
    whose every callback and evaluation is safe to run on each worker; a task
    says why not in its ``multi_worker`` attribute.
    """
    profile_batches(profile)  # a bad --profile value fails before any folder is written
    if task.multi_worker is not None and describe_choice(strategy, tpu=tpu) == "multi_worker":
        raise RunError(f"--strategy multi_worker: {task.multi_worker}; train this {task.name!r} run on one machine "
                       "(--strategy mirrored uses all its GPUs)")


def fit(task: Task, *, overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, command: str | None = None,
        profile: str | None = None, tpu: str | None = None, extra_info: dict[str, Any] | None = None) -> TrainResult:
    """Train ``task``'s run; see the module docstring. ``extra_info`` is added to ``run.json``
    before the training facts (distillation records its teacher there)."""
    cfg, t = task.cfg, task.cfg.training
    started = time.time()
    check_run_options(task, strategy=strategy, tpu=tpu, profile=profile)
    task.check()
    dist = resolve_strategy(strategy, tpu=tpu)  # first: MultiWorkerMirroredStrategy must exist before other TensorFlow work
    role = WorkerRole.of(dist, cfg.run_dir)
    tf_keras.utils.set_random_seed(cfg.seed)
    data = task.prepare_data()
    run_dir, resuming = prepare_run_dir(cfg, overwrite, role, config_text=task.config_text())
    resuming = resuming and task.resumable
    vocab = run_vocabulary(run_dir, lambda: task.learn_vocabulary(data))
    for file_name, labels in task.label_maps(data).items():
        labels.save(run_dir / file_name)

    preprocessor = task.build_preprocessor(vocab)
    replicas = dist.num_replicas_in_sync
    d = cfg.data
    plan = BatchingPlan(batch_size=t.batch_size * replicas, max_length=task.max_length, bucketing=d.bucketing,
                        bucket_boundaries=tuple(d.bucket_boundaries), tpu_mode=d.tpu_mode)
    eval_plan = BatchingPlan(batch_size=plan.batch_size, max_length=task.max_length, bucketing=False, tpu_mode=False)
    inputs = task.build_inputs(data, preprocessor, plan, eval_plan, seed=cfg.seed)
    steps_per_epoch = min(inputs.steps_per_epoch, t.steps_per_epoch) if t.steps_per_epoch else inputs.steps_per_epoch
    if steps_per_epoch < 1:
        raise RunError(f"data.train: {inputs.examples} make no full batch of {plan.batch_size} in TPU mode; lower training.batch_size")
    train_ds = with_data_sharding(inputs.train)
    val_ds = with_data_sharding(inputs.validation) if inputs.validation is not None else None
    if inputs.validation_inputs is not None:
        inputs.validation_inputs = with_data_sharding(inputs.validation_inputs)

    with dist.scope(), precision_policy(t.mixed_precision):  # layers take the policy when built
        model = task.build_model(data, preprocessor, vocab)
        trained = task.training_model(model)
        trained.compile(optimizer=loss_scaled(build_optimizer(t, steps_per_epoch * t.epochs), t.mixed_precision), **task.compile_args(model))

    if not resuming:
        write_hparams(run_dir, cfg, metrics=task.hparam_metrics, extra=task.extra_hparams())
    role.seed_from_chief(artifacts.CHECKPOINT_DIR)  # a resumed worker restores what the chief restores
    best = BestCheckpoint(run_dir / artifacts.CHECKPOINT_DIR, t.monitor)
    start_step = StartStep()
    callbacks: list[tf_keras.callbacks.Callback] = []
    if task.resumable:
        # the chief's backup/ for every worker (Keras writes non-chief copies to a temporary sub-folder)
        callbacks.append(tf_keras.callbacks.BackupAndRestore(str(cfg.run_dir / artifacts.BACKUP_DIR), save_freq=max(1, t.backup_every_steps),
                                                             delete_checkpoint=False))
    callbacks += [
        start_step,  # after BackupAndRestore: sees the restored step counter
        # before TensorBoard and the monitors: they read the task's validation metrics from logs
        *task.validation_callbacks(data, preprocessor, inputs, run_dir, plan.batch_size),
        LearningRateLogger(run_dir, t.log_every_steps),
        tf_keras.callbacks.TensorBoard(str(run_dir), update_freq=max(1, t.log_every_steps), write_graph=task.write_graph,
                                       profile_batch=profile_batches(profile)),
        best,
    ]
    if t.early_stopping_patience > 0:
        callbacks.append(tf_keras.callbacks.EarlyStopping(monitor=t.monitor, mode=metric_mode(t.monitor), patience=t.early_stopping_patience))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    history = trained.fit(train_ds, validation_data=val_ds, epochs=t.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose)
    final_step = int(trained.optimizer.iterations.numpy())  # before restoring the best weights (they carry optimizer state)
    best.restore()
    metrics = task.evaluate(model, data, preprocessor, inputs, plan.batch_size)
    info = {
        "name": cfg.name,
        "task": task.name,
        "architecture": cfg.architecture,
        **task.run_info(data, metrics, inputs),
        **(extra_info or {}),
        **training_facts(
            model=model, history=history, best=best, monitor=t.monitor, steps_per_epoch=steps_per_epoch,
            replicas=replicas, resumed=resuming, start_step=start_step.step, final_step=final_step, started=started, command=command,
        ),
    }
    artifacts.finish_run(run_dir, model, metrics, info)  # every worker saves (saving may need collectives) ...
    role.cleanup()  # ... and only the chief's copy stays
    return TrainResult(run_dir=cfg.run_dir, metrics=metrics, info=info, history={k: [float(x) for x in v] for k, v in history.history.items()})
