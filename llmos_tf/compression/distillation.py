"""Knowledge distillation: a BERT teacher into a BiLSTM student (Tang et al. 2019).

The teacher (a run folder or an exported version) labels the transfer set, the
student's training texts plus optional augmented ones (:mod:`.augment`), once,
before training: its log-probabilities are stored with each example. The
student then learns from

    loss = alpha * CE(hard label, student)  +  (1 - alpha) * distill

where ``distill`` is either ``kl``: KL(softmax(teacher / T) || softmax(student / T)) * T²
(Hinton et al.; the T² keeps gradient sizes comparable across temperatures) or
``mse``: the squared distance between the two logit vectors, each centred
(Tang et al.'s logit regression; centring makes it independent of the constant
by which log-probabilities differ from logits). Augmented texts have no gold
label, so only the distillation term sees them. The student's logits are its
classifier's pre-softmax outputs, read from the same weights.

The result is an ordinary run folder (config, vocabulary, labels, best model,
TensorBoard logs, ``run.json`` with the teacher and the loss settings), so
``llmos evaluate``, ``export``, ``compress`` and ``serve`` work on it unchanged.

Example::

    result = distill("runs/sst2_bert", load_config("configs/sst2_bilstm.yaml"), temperature=2.0, alpha=0.1)
    result.metrics["validation"]["accuracy"]
"""
from __future__ import annotations

import pathlib
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError, RunError

LOSSES = ("kl", "mse")


# -- the teacher -------------------------------------------------------------
class Teacher:
    """Texts → log-probabilities ``[N, labels]`` and the label names, from a run or an exported version."""

    def __init__(self, source: str | pathlib.Path, batch_size: int = 64):
        source = pathlib.Path(source)
        self.source = source
        self.batch_size = batch_size
        if (source / "saved_model.pb").is_file():
            from llmos_tf.serving.servable import Servable

            servable = Servable.load("teacher", 1, source)
            if "serving_default" not in servable.inputs or "probabilities" not in servable.outputs["serving_default"]:
                raise ConfigError(f"--teacher {source}: its serving_default has no probabilities output (a classifier export is needed)")
            self.label_names = servable.class_names or []
            self._servable = servable
            self._run = None
        elif (source / "run.json").is_file():
            from llmos_tf.compression.run_data import is_tagger, load_trained

            run = load_trained(source)
            if is_tagger(run):
                raise ConfigError(f"--teacher {source}: a NER run; distillation here is for sentence classifiers")
            self.label_names = list(run.labels.names)
            self._run = run
            self._servable = None
        else:
            raise ConfigError(f"--teacher {source}: expected a run folder (with run.json) or an exported version (with saved_model.pb)")
        if not self.label_names:
            raise ConfigError(f"--teacher {source}: its label names are unknown (no assets/labels.txt)")

    def log_probabilities(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                          chunk_size: int = 2048) -> np.ndarray:
        """Rows in input order. Texts go shortest first, in chunks of ``chunk_size`` (one ``predict`` call
        each, so the progress bar moves): batches of similar length pad little, and a 67k transfer set
        is not 1,000 small calls."""
        texts = [str(t) for t in texts]
        out = np.zeros([len(texts), len(self.label_names)], np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), chunk_size):
            index = order[start:start + chunk_size]
            chunk = [texts[i] for i in index]
            if self._run is not None:
                probs = self._run.predict_proba(chunk, batch_size=self.batch_size)
            else:
                probs = np.concatenate([
                    self._servable.run("serving_default", {"text": np.array([t.encode("utf-8") for t in chunk[i:i + self.batch_size]], dtype=object)})["probabilities"]
                    for i in range(0, len(chunk), self.batch_size)])
            out[index] = np.log(np.clip(probs, 1e-7, 1.0))
            if progress:
                progress(len(chunk))
        return out


# -- the student's training model ---------------------------------------------
def soft_target_kl(teacher_logits: tf.Tensor, student_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) * T² over the last axis (Hinton et al. 2015).

    Log-probabilities work as logits here: they differ from logits by a constant per row."""
    t = float(temperature)
    p_teacher = tf.nn.softmax(teacher_logits / t)
    log_student = tf.nn.log_softmax(student_logits / t)
    return tf.reduce_sum(p_teacher * (tf.math.log(tf.maximum(p_teacher, 1e-12)) - log_student), axis=-1) * t * t


def student_logits_model(student: tf_keras.Model) -> tf_keras.Model:
    """Same layers, but the classifier's pre-softmax logits (its Dense kernel and bias applied without softmax)."""
    head = student.layers[-1]
    if not isinstance(head, tf_keras.layers.Dense):
        raise ConfigError(f"the student's last layer is {type(head).__name__}; distillation needs a Dense softmax classifier head")
    features = tf_keras.Model(student.inputs, head.input)

    class Logits(tf_keras.layers.Layer):
        def call(self, x):
            return tf.matmul(tf.cast(x, head.kernel.dtype), head.kernel) + head.bias

    return tf_keras.Model(student.inputs, Logits(name="logits")(features(student.inputs if len(student.inputs) > 1 else student.inputs[0])))


class MixedLossTracking:
    """The three running means a mixed-loss model reports (``loss``, ``hard_loss``, ``distill_loss``);
    shared by :class:`Distiller` and :class:`~.dense_teacher.TeacherGuidedFineTune`."""

    def _add_loss_trackers(self) -> None:
        self.loss_tracker = tf_keras.metrics.Mean(name="loss")
        self.hard_tracker = tf_keras.metrics.Mean(name="hard_loss")
        self.distill_tracker = tf_keras.metrics.Mean(name="distill_loss")

    def _track_losses(self, total, hard, soft) -> None:
        self.loss_tracker.update_state(total)
        self.hard_tracker.update_state(hard)
        self.distill_tracker.update_state(soft)


class Distiller(MixedLossTracking, tf_keras.Model):
    """Trains ``student`` on (inputs, {label, teacher}) with the mixed loss; predicts the student's probabilities."""

    def __init__(self, student: tf_keras.Model, *, loss: str = "kl", temperature: float = 2.0, alpha: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.logits_model = student_logits_model(student)
        self.kind = loss
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self._add_loss_trackers()
        self.accuracy = tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.hard_tracker, self.distill_tracker, self.accuracy]

    def call(self, inputs, training=False):
        return tf.nn.softmax(self.logits_model(inputs, training=training))

    def distill_loss(self, teacher: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        if self.kind == "mse":
            centred_t = teacher - tf.reduce_mean(teacher, axis=-1, keepdims=True)
            centred_s = logits - tf.reduce_mean(logits, axis=-1, keepdims=True)
            return tf.reduce_mean(tf.square(centred_t - centred_s), axis=-1)
        return soft_target_kl(teacher, logits, self.temperature)

    def _loss_terms(self, targets, logits):
        label = tf.cast(targets["label"], tf.int32)
        labelled = tf.cast(label >= 0, tf.float32)
        hard = tf_keras.losses.sparse_categorical_crossentropy(tf.maximum(label, 0), logits, from_logits=True)
        hard = tf.reduce_sum(hard * labelled) / tf.maximum(tf.reduce_sum(labelled), 1.0)
        soft = tf.reduce_mean(self.distill_loss(targets["teacher"], logits))
        return self.alpha * hard + (1.0 - self.alpha) * soft, hard, soft, label, labelled

    def train_step(self, data):
        inputs, targets = data
        with tf.GradientTape() as tape:
            logits = self.logits_model(inputs, training=True)
            total, hard, soft, label, labelled = self._loss_terms(targets, logits)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return self._update(total, hard, soft, label, labelled, logits)

    def test_step(self, data):
        inputs, targets = data
        logits = self.logits_model(inputs, training=False)
        total, hard, soft, label, labelled = self._loss_terms(targets, logits)
        return self._update(total, hard, soft, label, labelled, logits)

    def _update(self, total, hard, soft, label, labelled, logits):
        self._track_losses(total, hard, soft)
        self.accuracy.update_state(tf.maximum(label, 0), tf.nn.softmax(logits), sample_weight=labelled)
        return {m.name: m.result() for m in self.metrics}


# -- data -------------------------------------------------------------------
def transfer_dataset(texts: Sequence[str], labels: np.ndarray, teacher: np.ndarray, tokenizer, plan, *, training: bool, seed: int,
                     features=None, repeat: bool = False) -> tf.data.Dataset:
    """(inputs, {"label", "teacher"}) batches through the project's tokenize → bucket pipeline.

    The pipeline carries one int32 per example, so it carries the example's
    index, and the index picks the label and the teacher's row after batching."""
    from llmos_tf.data.pipeline import batch_examples, tokenized_examples, truncating

    AUTOTUNE = tf.data.AUTOTUNE
    label_table = tf.constant(np.asarray(labels, np.int32))
    teacher_table = tf.constant(np.asarray(teacher, np.float32))
    ds = tokenized_examples(texts, np.arange(len(texts), dtype=np.int32), truncating(tokenizer, plan.max_length)).cache()
    if training:
        ds = ds.shuffle(min(50000, max(len(texts), 1)), seed=seed, reshuffle_each_iteration=True)
    ds = batch_examples(ds, plan, training=training, labelled=True)

    def targets(ids, index):
        x = features(ids) if features is not None else ids
        return x, {"label": tf.gather(label_table, index), "teacher": tf.gather(teacher_table, index)}

    ds = ds.map(targets, num_parallel_calls=AUTOTUNE)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(AUTOTUNE)


@dataclass
class DistillResult:
    run_dir: pathlib.Path
    metrics: dict[str, Any]
    info: dict[str, Any]
    history: dict[str, list[float]]
    teacher_metrics: dict[str, Any]


def _check(loss: str, temperature: float, alpha: float, augment_copies: int) -> None:
    if loss not in LOSSES:
        raise ConfigError(f"--loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    if temperature <= 0:
        raise ConfigError(f"--temperature: expected a positive number, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha: expected a weight in [0, 1] for the hard-label loss, got {alpha}")
    if augment_copies < 0:
        raise ConfigError(f"--augment: expected a non-negative number of copies, got {augment_copies}")


def distill(teacher_source: str | pathlib.Path, cfg, *, loss: str = "kl", temperature: float = 2.0, alpha: float = 0.5,
            augment_copies: int = 0, overwrite: bool = False, verbose: int | None = None, command: str | None = None,
            say: Callable[[str], None] = print) -> DistillResult:
    """Train the student ``cfg`` describes against the teacher; see the module docstring."""
    from llmos_tf.compression.augment import augment
    from llmos_tf.data.labels import LabelMap
    from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
    from llmos_tf.data.prepare import prepare_classification_data
    from llmos_tf.models import registry
    from llmos_tf.training import artifacts
    from llmos_tf.training.callbacks import BestCheckpoint, ValidationReport, metric_mode
    from llmos_tf.training.evaluation import classification_metrics
    from llmos_tf.training.optimizers import build_optimizer
    from llmos_tf.training.run_folder import StartStep, prepare_run_dir, run_vocabulary, training_facts, write_hparams

    from llmos_tf.training.distribute import check_compression_strategy

    _check(loss, temperature, alpha, augment_copies)
    check_compression_strategy(tf.distribute.get_strategy(), "distill")  # the strategy the student trains under
    if cfg.task != "classification":
        raise ConfigError(f"--student: distillation trains a sentence classifier; the config's task is {cfg.task!r}")
    started = time.time()
    teacher = Teacher(teacher_source)
    tf_keras.utils.set_random_seed(cfg.seed)
    data = prepare_classification_data(cfg.data, cfg.seed)
    names = cfg.data.label_names or {}
    if names and set(teacher.label_names) <= set(names) and not set(teacher.label_names) & set(data.labels.names):
        # a teacher trained before data.label_names answers the raw values: same ids, the student's names
        teacher.label_names = [names[label] for label in teacher.label_names]
    unknown = sorted(set(data.labels.names) - set(teacher.label_names))
    if unknown:
        raise ConfigError(f"--student data has labels the teacher does not know: {', '.join(unknown[:10])}; teacher labels: "
                          f"{', '.join(teacher.label_names[:10])}")
    labels = LabelMap(list(teacher.label_names))  # the student predicts in the teacher's label order
    arch = registry.get(cfg.architecture)
    run_dir, _ = prepare_run_dir(cfg, overwrite)
    vocab = run_vocabulary(cfg, data, run_dir, arch)
    labels.save(run_dir / artifacts.LABELS_FILE)
    model_cfg = registry.model_config(cfg.model)
    d = cfg.data
    max_length = arch.max_length(model_cfg, d.max_length)
    tokenizer = arch.tokenizer(model_cfg, vocab, cfg.text, max_length)

    train_texts = data.train["text"].astype(str).tolist()
    y_train = np.asarray(labels.encode(data.train["label"].astype(str).tolist()), np.int32)
    extra = augment(train_texts, copies=augment_copies, seed=cfg.seed) if augment_copies else []
    texts = train_texts + extra
    hard = np.concatenate([y_train, -np.ones(len(extra), np.int32)])
    say(f"teacher {teacher.source} labels {len(texts)} texts ({len(extra)} augmented) ...")
    from tqdm.auto import tqdm

    with tqdm(total=len(texts), unit="text", desc="teacher", disable=not sys.stderr.isatty()) as bar:
        soft = teacher.log_probabilities(texts, progress=bar.update)
    val_texts = data.validation["text"].astype(str).tolist()
    y_val = np.asarray(labels.encode(data.validation["label"].astype(str).tolist()), np.int32)
    val_soft = teacher.log_probabilities(val_texts)
    teacher_val = classification_metrics(y_val, val_soft.argmax(-1), labels.names)
    say(f"teacher validation accuracy {teacher_val['accuracy']:.4f}")

    plan = BatchingPlan(batch_size=cfg.training.batch_size, max_length=max_length, bucketing=d.bucketing, bucket_boundaries=tuple(d.bucket_boundaries))
    steps = count_batches(token_lengths(texts, tokenizer, max_length), plan, training=True)
    if cfg.training.steps_per_epoch:
        steps = min(steps, cfg.training.steps_per_epoch)
    train_ds = transfer_dataset(texts, hard, soft, tokenizer, plan, training=True, seed=cfg.seed, features=arch.features, repeat=True)
    eval_plan = BatchingPlan(batch_size=plan.batch_size, max_length=max_length, bucketing=False)
    val_ds = transfer_dataset(val_texts, y_val, val_soft, tokenizer, eval_plan, training=False, seed=cfg.seed, features=arch.features)
    val_inputs = make_dataset(val_texts, None, tokenizer, eval_plan, training=False, features=arch.features)

    student = arch.build(model_cfg, registry.BuildContext(num_labels=len(labels), vocabulary=vocab, task=cfg.task, max_length=max_length))
    distiller = Distiller(student, loss=loss, temperature=temperature, alpha=alpha, name="distiller")
    distiller.compile(optimizer=build_optimizer(cfg.training, steps * cfg.training.epochs))
    write_hparams(run_dir, cfg)
    best = BestCheckpoint(run_dir / artifacts.CHECKPOINT_DIR, cfg.training.monitor)
    start_step = StartStep()
    callbacks = [
        start_step,
        ValidationReport(val_inputs, y_val, val_texts, labels.names, run_dir),
        tf_keras.callbacks.TensorBoard(str(run_dir), update_freq=max(1, cfg.training.log_every_steps), write_graph=False, profile_batch=0),
        best,
    ]
    if cfg.training.early_stopping_patience > 0:
        callbacks.append(tf_keras.callbacks.EarlyStopping(monitor=cfg.training.monitor, mode=metric_mode(cfg.training.monitor),
                                                          patience=cfg.training.early_stopping_patience))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    history = distiller.fit(train_ds, validation_data=val_ds, epochs=cfg.training.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=verbose)
    final_step = int(distiller.optimizer.iterations.numpy())
    best.restore()
    val_metrics = classification_metrics(y_val, student.predict(val_inputs, verbose=0).argmax(-1), labels.names)
    metrics = {"validation": val_metrics}
    info = {
        "name": cfg.name,
        "task": cfg.task,
        "architecture": cfg.architecture,
        "labels": labels.names,
        "data": {**data.summary(), "files": {"train": d.train, "validation": d.validation, "test": d.test}},
        "metrics": {k: {m: v[m] for m in ("examples", "accuracy", "macro_f1")} for k, v in metrics.items()},
        "distillation": {
            "teacher": str(teacher.source), "loss": loss, "temperature": temperature, "alpha": alpha,
            "transfer_examples": len(texts), "augmented_examples": len(extra), "augment_copies": augment_copies,
            "teacher_validation_accuracy": teacher_val["accuracy"],
        },
        **training_facts(model=student, history=history, best=best, monitor=cfg.training.monitor, steps_per_epoch=steps, replicas=1,
                         resumed=False, start_step=start_step.step, final_step=final_step, started=started, command=command),
    }
    artifacts.finish_run(run_dir, student, metrics, info)
    return DistillResult(run_dir, metrics, info, {k: [float(x) for x in v] for k, v in history.history.items()}, teacher_val)
