"""Fine-tuning a compressed copy against its own dense original (self-distillation).

Pruning fine-tunes on the run's training data to recover from the zeroed
weights. With only the gold labels, that fine-tune also re-fits the training
set: a model that was stopped at its best validation epoch drifts away from it
(on SST-2's short phrases the 0.900 BERT lost 2 points at 50% sparsity this
way). Here the dense model, frozen, is the teacher of its pruned copy:

    loss = alpha * CE(gold label, pruned)  +  (1 - alpha) * KL(dense / T || pruned / T) * T²

so the pruned model is pulled back towards the function the dense one computes,
not only towards the labels (as in Sanh et al. 2020's movement pruning and
Zafrir et al. 2021's "Prune Once for All", which distil from the dense model
while pruning). The models output probabilities; their logs serve as logits.
Token-level models (NER) use the positions whose label is not -1.

Example::

    guided = TeacherGuidedFineTune(pruned, dense, run_loss, alpha=0.5, temperature=2.0)
    guided.compile(optimizer=tf_keras.optimizers.Adam(5e-5), metrics=[...])
    guided.fit(dataset, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
"""
from __future__ import annotations

from llmos_tf._tf import tf, tf_keras
from llmos_tf.compression.distillation import MixedLossTracking, soft_target_kl
from llmos_tf.errors import ConfigError


def _log(probabilities: tf.Tensor) -> tf.Tensor:
    return tf.math.log(tf.clip_by_value(tf.cast(probabilities, tf.float32), 1e-7, 1.0))


class TeacherGuidedFineTune(MixedLossTracking, tf_keras.Model):
    """Trains ``student`` with the mixed loss above; ``teacher`` is only called, never trained."""

    def __init__(self, student: tf_keras.Model, teacher: tf_keras.Model, hard_loss, *, alpha: float = 0.5, temperature: float = 2.0,
                 **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"--distill_alpha: expected a weight in [0, 1] for the gold-label loss, got {alpha}")
        if temperature <= 0:
            raise ConfigError(f"--temperature: expected a positive number, got {temperature}")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.hard_loss = hard_loss
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self._add_loss_trackers()

    @property
    def metrics(self):
        return [self.loss_tracker, self.hard_tracker, self.distill_tracker] + list(self.compiled_metrics.metrics if self.compiled_metrics else [])

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def distill_loss(self, labels: tf.Tensor, teacher_probs: tf.Tensor, student_probs: tf.Tensor) -> tf.Tensor:
        """Mean KL over examples (classifiers) or over labelled positions (taggers: label != -1)."""
        per_item = soft_target_kl(_log(teacher_probs), _log(student_probs), self.temperature)
        weights = tf.cast(tf.not_equal(tf.cast(labels, tf.int32), -1), per_item.dtype)
        return tf.reduce_sum(per_item * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def train_step(self, data):
        inputs, labels = data[0], data[1]
        teacher_probs = tf.stop_gradient(self.teacher(inputs, training=False))
        with tf.GradientTape() as tape:
            probs = self.student(inputs, training=True)
            hard = self.hard_loss(labels, probs)
            soft = self.distill_loss(labels, teacher_probs, probs)
            total = self.alpha * hard + (1.0 - self.alpha) * soft
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        self._track_losses(total, hard, soft)
        self.compiled_metrics.update_state(labels, probs)
        return {m.name: m.result() for m in self.metrics}
