"""Mixed precision for training (``--mixed_precision`` / ``training.mixed_precision``).

Keras layers read the global dtype policy when they are *built*, so the policy
is set only while the model is constructed and put back afterwards: nothing
else in the process (a later run, an evaluation, the serving code) inherits
it. Variables stay float32 under both policies; the output layers of our models
are pinned to float32 (``dtype="float32"`` on the softmax ``Dense``), so the
saved model returns float32 probabilities whatever the compute dtype.

* ``mixed_float16`` (GPUs with tensor cores): the loss is scaled
  (:class:`tf_keras.mixed_precision.LossScaleOptimizer`) so small float16
  gradients do not underflow.
* ``mixed_bfloat16`` (TPUs, recent CPUs): bfloat16 has float32's range, so no
  loss scaling is needed.

Example::

    with precision_policy("mixed_bfloat16"):
        model = build_model()
    model.compile(optimizer=loss_scaled(Adam(), "mixed_bfloat16"), ...)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from llmos_tf._tf import tf_keras
from llmos_tf.errors import ConfigError

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def check_policy(name: str | None, where: str = "training.mixed_precision") -> str:
    """The policy name to use (``None`` → ``float32``), or a ConfigError naming the valid ones."""
    if name is None:
        return "float32"
    if name not in POLICIES:
        raise ConfigError(f"{where}: unknown policy {name!r}; valid: {', '.join(POLICIES)}")
    return name


@contextlib.contextmanager
def precision_policy(name: str | None) -> Iterator[str]:
    """Set the global Keras dtype policy for the ``with`` block, then restore the previous one."""
    name = check_policy(name)
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def loss_scaled(optimizer: tf_keras.optimizers.Optimizer, name: str | None) -> tf_keras.optimizers.Optimizer:
    """Wrap ``optimizer`` in a dynamic LossScaleOptimizer for ``mixed_float16``; unchanged otherwise."""
    if check_policy(name) == "mixed_float16":
        return tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def compute_dtypes(model: tf_keras.Model) -> dict[str, int]:
    """How many layers compute in each dtype (what a run actually trained with)."""
    counts: dict[str, int] = {}
    for layer in model.submodules:
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and getattr(layer, "weights", None):
            counts[policy.compute_dtype] = counts.get(policy.compute_dtype, 0) + 1
    return counts
