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

The student is a :class:`DistillationTask` run by the one fit driver
(:func:`llmos_tf.training.loop.fit`), so the run folder, TensorBoard logs, best
checkpoint, mixed precision and ``run.json`` are those of every other task.
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
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError
from llmos_tf.tasks.base import TaskInputs
from llmos_tf.tasks.classification import SUMMARY_KEYS, ClassificationTask
from llmos_tf.training.evaluation import classification_metrics

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
        # minimize, not apply_gradients: a LossScaleOptimizer (training.mixed_precision: mixed_float16) scales the loss here
        self.optimizer.minimize(total, self.student.trainable_variables, tape=tape)
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


class DistillationTask(ClassificationTask):
    """A sentence classifier (the student) trained against a teacher's soft labels, run by
    :func:`llmos_tf.training.loop.fit` like any task.

    What differs from :class:`~llmos_tf.tasks.classification.ClassificationTask`: the
    labels are the teacher's (the student answers in its order), the inputs carry the
    teacher's log-probabilities of the transfer set (training texts plus augmented
    copies), ``fit`` trains a :class:`Distiller` around the student, and ``run.json``
    records the teacher. A student run does not resume (its folder's config does not
    name the teacher), so an unfinished one trains again from the start.
    """

    resumable = False
    write_graph = False

    def __init__(self, cfg, teacher: Teacher, *, loss: str, temperature: float, alpha: float, augment_copies: int,
                 say: Callable[[str], None] = print) -> None:
        super().__init__(cfg)
        self.teacher, self.loss, self.temperature, self.alpha, self.augment_copies, self.say = teacher, loss, temperature, alpha, augment_copies, say

    def prepare_data(self):
        from llmos_tf.data.labels import LabelMap

        data = super().prepare_data()
        teacher = self.teacher
        names = self.cfg.data.label_names or {}
        if names and set(teacher.label_names) <= set(names) and not set(teacher.label_names) & set(data.labels.names):
            # a teacher trained before data.label_names answers the raw values: same ids, the student's names
            teacher.label_names = [names[label] for label in teacher.label_names]
        unknown = sorted(set(data.labels.names) - set(teacher.label_names))
        if unknown:
            raise ConfigError(f"--student data has labels the teacher does not know: {', '.join(unknown[:10])}; teacher labels: "
                              f"{', '.join(teacher.label_names[:10])}")
        self.labels = LabelMap(list(teacher.label_names))  # the student predicts in the teacher's label order
        return data

    def label_maps(self, data):
        from llmos_tf.training import artifacts

        return {artifacts.LABELS_FILE: self.labels}

    def build_inputs(self, data, preprocessor, plan, eval_plan, *, seed: int) -> TaskInputs:
        from tqdm.auto import tqdm

        from llmos_tf.compression.augment import augment
        from llmos_tf.data.pipeline import count_batches, make_dataset, token_lengths

        labels, features = self.labels, self.architecture.features
        train_texts = data.train["text"].astype(str).tolist()
        y_train = np.asarray(labels.encode(data.train["label"].astype(str).tolist()), np.int32)
        extra = augment(train_texts, copies=self.augment_copies, seed=self.cfg.seed) if self.augment_copies else []
        texts = train_texts + extra
        hard = np.concatenate([y_train, -np.ones(len(extra), np.int32)])
        self.say(f"teacher {self.teacher.source} labels {len(texts)} texts ({len(extra)} augmented) ...")
        with tqdm(total=len(texts), unit="text", desc="teacher", disable=not sys.stderr.isatty()) as bar:
            soft = self.teacher.log_probabilities(texts, progress=bar.update)
        val_texts = data.validation["text"].astype(str).tolist()
        self.y_val = np.asarray(labels.encode(data.validation["label"].astype(str).tolist()), np.int32)
        val_soft = self.teacher.log_probabilities(val_texts)
        self.teacher_metrics = classification_metrics(self.y_val, val_soft.argmax(-1), labels.names)
        self.say(f"teacher validation accuracy {self.teacher_metrics['accuracy']:.4f}")
        self.transfer = {"transfer_examples": len(texts), "augmented_examples": len(extra)}
        return TaskInputs(
            train=transfer_dataset(texts, hard, soft, preprocessor, plan, training=True, seed=seed, features=features, repeat=True),
            steps_per_epoch=count_batches(token_lengths(texts, preprocessor, plan.max_length), plan, training=True),
            examples=f"{len(texts)} examples",
            validation=transfer_dataset(val_texts, self.y_val, val_soft, preprocessor, eval_plan, training=False, seed=seed, features=features),
            validation_inputs=make_dataset(val_texts, None, preprocessor, eval_plan, training=False, features=features),
        )

    def build_model(self, data, preprocessor, vocabulary):
        from llmos_tf.models import registry

        context = registry.BuildContext(num_labels=len(self.labels), vocabulary=list(vocabulary), task=self.name, max_length=self.max_length)
        return self.architecture.build(self.model_config, context)

    def training_model(self, model):
        return Distiller(model, loss=self.loss, temperature=self.temperature, alpha=self.alpha, name="distiller")

    def compile_args(self, model) -> dict[str, Any]:
        return {}  # the Distiller computes its own loss and accuracy

    def validation_callbacks(self, data, preprocessor, inputs: TaskInputs, log_dir: pathlib.Path, batch_size: int) -> list:
        from llmos_tf.training.callbacks import ValidationReport

        return [ValidationReport(inputs.validation_inputs, self.y_val, data.validation["text"].astype(str).tolist(), self.labels.names, log_dir)]

    def evaluate(self, model, data, preprocessor, inputs: TaskInputs, batch_size: int) -> dict[str, Any]:
        return {"validation": classification_metrics(self.y_val, model.predict(inputs.validation_inputs, verbose=0).argmax(-1), self.labels.names)}

    def run_info(self, data, metrics: dict[str, Any], inputs: TaskInputs) -> dict[str, Any]:
        d = self.cfg.data
        return {
            "labels": self.labels.names,
            "data": {**data.summary(), "files": {"train": d.train, "validation": d.validation, "test": d.test}},
            "metrics": {k: {m: v[m] for m in SUMMARY_KEYS} for k, v in metrics.items()},
            "distillation": {
                "teacher": str(self.teacher.source), "loss": self.loss, "temperature": self.temperature, "alpha": self.alpha,
                **self.transfer, "augment_copies": self.augment_copies,
                "teacher_validation_accuracy": self.teacher_metrics["accuracy"],
            },
        }


def distill(teacher_source: str | pathlib.Path, cfg, *, loss: str = "kl", temperature: float = 2.0, alpha: float = 0.5,
            augment_copies: int = 0, overwrite: bool = False, verbose: int | None = None, command: str | None = None,
            say: Callable[[str], None] = print) -> DistillResult:
    """Train the student ``cfg`` describes against the teacher, under the strategy in scope; see the module docstring."""
    from llmos_tf.tasks import task_class
    from llmos_tf.training.distribute import check_compression_strategy
    from llmos_tf.training.loop import fit

    _check(loss, temperature, alpha, augment_copies)
    check_compression_strategy(tf.distribute.get_strategy(), "distill")  # the strategy the student trains under
    if task_class(cfg.task) is not ClassificationTask:
        raise ConfigError(f"--student: distillation trains a sentence classifier; the config's task is {cfg.task!r}")
    task = DistillationTask(cfg, Teacher(teacher_source), loss=loss, temperature=temperature, alpha=alpha,
                            augment_copies=augment_copies, say=say)
    result = fit(task, overwrite=overwrite, strategy="default", verbose=verbose, command=command)
    return DistillResult(result.run_dir, result.metrics, result.info, result.history, task.teacher_metrics)
