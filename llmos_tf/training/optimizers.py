"""Optimizers and learning-rate schedules from the ``training:`` config."""
from __future__ import annotations

from llmos_tf._tf import tf, tf_keras


class WarmupLinearDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(max(total_steps, 1))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * step / tf.maximum(float(self.warmup_steps), 1.0)
        decay_span = tf.maximum(float(self.total_steps - self.warmup_steps), 1.0)
        decay = self.peak * tf.maximum(0.0, 1.0 - (step - self.warmup_steps) / decay_span)
        return tf.where(step < self.warmup_steps, warm, decay)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def build_optimizer(training_cfg, total_steps: int) -> tf_keras.optimizers.Optimizer:
    """Adam / AdamW (decay skips LayerNorm and bias) / SGD with optional warm-up schedule and clipping."""
    lr = training_cfg.learning_rate
    if training_cfg.warmup_fraction > 0:
        lr = WarmupLinearDecay(lr, int(training_cfg.warmup_fraction * total_steps), total_steps)
    clip = {"global_clipnorm": training_cfg.clipnorm} if training_cfg.clipnorm else {}
    if training_cfg.optimizer == "sgd":
        return tf_keras.optimizers.SGD(learning_rate=lr, momentum=0.9, **clip)
    if training_cfg.optimizer == "adamw" or training_cfg.weight_decay > 0:
        opt = tf_keras.optimizers.AdamW(learning_rate=lr, weight_decay=training_cfg.weight_decay, epsilon=1e-6, **clip)
        opt.exclude_from_weight_decay(var_names=["bias", "LayerNorm", "layer_norm", "layernorm", "beta", "gamma"])
        return opt
    return tf_keras.optimizers.Adam(learning_rate=lr, **clip)


def current_learning_rate(optimizer) -> float:
    lr = optimizer.learning_rate
    if isinstance(lr, tf_keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(optimizer.iterations))
    return float(tf_keras.backend.get_value(lr))
