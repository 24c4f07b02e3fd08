"""Pick a ``tf.distribute`` strategy the way a user expects.

``auto``: TPUStrategy when a TPU resolves, MultiWorkerMirroredStrategy when
``TF_CONFIG`` is set, MirroredStrategy with 2+ GPUs, else the default strategy.
Models, optimizers and metrics are built inside ``strategy.scope()``; the
config's batch size is per replica.
"""
from __future__ import annotations

import json
import os

from llmos_tf._tf import tf
from llmos_tf.errors import ConfigError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def _tpu_resolver(tpu: str | None):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        resolver.cluster_spec()
        if not resolver.cluster_spec().as_dict() and not tpu:
            return None
        return resolver
    except (ValueError, RuntimeError, tf.errors.NotFoundError, KeyError):
        return None


def describe_choice(name: str = "auto", *, tpu: str | None = None) -> str:
    """The strategy ``name`` would resolve to, without creating it."""
    if name != "auto":
        return name
    if tpu:
        return "tpu"
    if os.environ.get("TF_CONFIG"):
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) >= 2:
        return "mirrored"
    return "default"


def resolve_strategy(name: str = "auto", *, tpu: str | None = None) -> tf.distribute.Strategy:
    """Create the strategy for ``--strategy NAME``."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy: unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    choice = describe_choice(name, tpu=tpu)
    if choice == "tpu":
        resolver = _tpu_resolver(tpu)
        if resolver is None:
            raise ConfigError(f"--strategy tpu: no TPU found{' named ' + repr(tpu) if tpu else ''}; pass --tpu NAME on a Cloud TPU VM")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if choice == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy multi_worker: TF_CONFIG is not set (see README, 'Scaling out')")
        json.loads(os.environ["TF_CONFIG"])
        return tf.distribute.MultiWorkerMirroredStrategy()
    if choice == "mirrored":
        return tf.distribute.MirroredStrategy()
    if choice == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return tf.distribute.get_strategy()
