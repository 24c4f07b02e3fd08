"""Pick a ``tf.distribute`` strategy the way a user expects.

``auto``: TPUStrategy when a TPU resolves, MultiWorkerMirroredStrategy when
``TF_CONFIG`` is set, MirroredStrategy with 2+ GPUs, else the default strategy.
Models, optimizers and metrics are built inside ``strategy.scope()``; the
config's batch size is per replica.

Multi-worker runs follow TensorFlow's multi-worker Keras pattern: every worker
runs the same ``llmos train`` command with its own ``TF_CONFIG``; only the chief
writes the run folder (checkpoints, TensorBoard logs, ``model.keras``,
``run.json``), the other workers write the same files into a private scratch
folder (:class:`WorkerRole`) that is removed at the end, because saving can
need every worker's cooperation (collective reads of mirrored variables).
``BackupAndRestore`` reads the chief's ``backup/`` from every worker, so the run
folder must be on storage all workers see (a shared disk or ``gs://``).
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from dataclasses import dataclass

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


# One strategy object per kind and process: a second MirroredStrategy in the same
# process reuses collective instance keys and fails with "Shape mismatch in the
# collective instance" (seen on TF 2.21, CPU); MultiWorkerMirroredStrategy and the
# TPU system may only be set up once anyway.
_STRATEGIES: dict[tuple[str, str | None], tf.distribute.Strategy] = {}


def resolve_strategy(name: str = "auto", *, tpu: str | None = None) -> tf.distribute.Strategy:
    """Create (once per process) the strategy for ``--strategy NAME``."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy: unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    choice = describe_choice(name, tpu=tpu)
    if choice == "default":
        return tf.distribute.get_strategy()
    key = (choice, tpu if choice == "tpu" else None)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _create(choice, tpu)
    return _STRATEGIES[key]


def _create(choice: str, tpu: str | None) -> tf.distribute.Strategy:
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
        _check_tf_config(os.environ["TF_CONFIG"])
        # AUTO picks NCCL on GPUs and RING (gRPC) on CPUs
        options = tf.distribute.experimental.CommunicationOptions(implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if choice == "mirrored":
        return tf.distribute.MirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")  # one_device
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")

def _check_tf_config(text: str) -> None:
    """Fail with the field that is wrong instead of a hang or a gRPC error later."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({err.msg} at position {err.pos})") from None
    cluster, task = spec.get("cluster") if isinstance(spec, dict) else None, spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError('TF_CONFIG.cluster: expected {"worker": ["host:port", ...]} (see README, "Scaling out")')
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError('TF_CONFIG.task: expected {"type": "worker", "index": N}')
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not 0 <= int(task["index"]) < len(members):
        raise ConfigError(f"TF_CONFIG.task: {task['type']}:{task['index']} is not in cluster {sorted(cluster)}")


def with_data_sharding(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Auto-shard in-memory data by element (DATA) instead of AUTO's failed FILE attempt.

    Our pipelines start from in-memory frames (``from_tensor_slices``), which
    have no files to shard: every worker builds the same seeded pipeline and
    keeps its share of each global batch, which also keeps ``predict`` in order.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@dataclass
class WorkerRole:
    """Where this process writes: the chief writes the run folder, other workers a scratch copy.

    ``write_dir`` is the folder the trainer fills; ``run_dir`` is the shared run
    folder (the chief's), where ``backup/`` lives for every worker.
    """

    run_dir: pathlib.Path
    write_dir: pathlib.Path
    is_chief: bool
    task: str

    @classmethod
    def of(cls, strategy: tf.distribute.Strategy, run_dir: str | pathlib.Path) -> "WorkerRole":
        run_dir = pathlib.Path(run_dir)
        extended = strategy.extended
        if not extended._in_multi_worker_mode() or extended.should_checkpoint:  # noqa: SLF001  (what Keras itself checks)
            return cls(run_dir=run_dir, write_dir=run_dir, is_chief=True, task=_task_name(strategy))
        task = _task_name(strategy)
        scratch = scratch_dir(run_dir, task)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        return cls(run_dir=run_dir, write_dir=scratch, is_chief=False, task=task)

    def seed_from_chief(self, relative: str) -> None:
        """Copy the chief's ``relative`` folder into the scratch folder (non-chief, resumed runs).

        A resumed worker must make the same best-checkpoint decisions and
        restore the same weights as the chief; call this after the model is
        built (variable creation is a collective, so the chief is past its own
        set-up and no longer deleting anything).
        """
        source = self.run_dir / relative
        if self.is_chief or not source.is_dir():
            return
        shutil.copytree(source, self.write_dir / relative, dirs_exist_ok=True)

    def cleanup(self) -> None:
        """Remove the scratch folder of a non-chief worker (no-op on the chief)."""
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)


def scratch_dir(run_dir: str | pathlib.Path, task: str) -> pathlib.Path:
    """The non-chief write folder of ``task`` (e.g. ``worker:1``) for ``run_dir``.

    Deterministic, so a restarted worker finds (and clears) its own leftovers;
    local (``tempfile.gettempdir()``), so workers never write into the chief's folder.
    """
    run_dir = pathlib.Path(run_dir)
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:10]
    return pathlib.Path(tempfile.gettempdir()) / f"llmos-{run_dir.name}-{digest}-{task.replace(':', '')}"


def _task_name(strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return "local"
    return f"{resolver.task_type}:{resolver.task_id}"


# What TF-MOT 0.8 does under each strategy (see the module docstring of check_compression_strategy).
_COMPRESSION_SUPPORT = {
    "prune": {"default", "one_device", "mirrored", "multi_worker"},
    "qat": {"default", "one_device", "mirrored", "multi_worker"},
    "distill": {"default", "one_device", "mirrored", "multi_worker", "tpu"},
    "ptq": {"default", "one_device", "mirrored", "multi_worker", "tpu"},
}
_TECHNIQUE_NAMES = {"prune": "pruning", "qat": "quantization-aware training", "distill": "distillation", "ptq": "post-training quantization"}


def strategy_kind(strategy: tf.distribute.Strategy | str) -> str:
    """``default | one_device | mirrored | multi_worker | tpu | <class name>`` for a strategy or a ``--strategy`` name."""
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise ConfigError(f"--strategy: unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
        return describe_choice(strategy)
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        return "one_device"
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return "default"
    return type(strategy).__name__


def check_compression_strategy(strategy: tf.distribute.Strategy | str, what: str) -> None:
    """Fail up front, with a ConfigError, when TF-MOT cannot run ``what`` under ``strategy``.

    ``what``: ``prune`` | ``qat`` | ``distill`` | ``ptq``. What is known:

    * Pruning (``prune_low_magnitude`` + ``UpdatePruningStep``) supports
      ``tf.distribute`` in graph execution (TF-MOT's pruning compatibility
      matrix): the masked weights are all-reduced in a ``merge_call``. Tested
      (tests/training/test_distribute.py) on MirroredStrategy over 2 logical
      CPUs; also run on a 2-process MultiWorkerMirroredStrategy cluster on
      loopback (same sparsity and loss on both workers).
    * QAT (``quantize_model``) lists ``tf.distribute`` only on TF-MOT's
      roadmap, but trains under MirroredStrategy (tested) and
      MultiWorkerMirroredStrategy (run as above): the fake-quant ranges are
      ordinary mirrored variables. TF-MOT's own limits still apply (QAT has no
      LSTM support whatever the strategy).
    * Neither is in TF-MOT's support matrix for TPUStrategy (no TPU tests;
      pruning's per-step mask update and the fake-quant ops were written for
      CPU/GPU): compress on CPU/GPU, then serve or convert the result.
    * Distillation is plain Keras training and post-training quantization is
      the TFLite converter: both work anywhere.
    * ParameterServerStrategy and CentralStorageStrategy are not used by llmos.

    ``llmos compress`` and ``llmos distill`` (:func:`~llmos_tf.compression.pipeline.compress`,
    :func:`~llmos_tf.compression.pruning.prune_run`, :func:`~llmos_tf.compression.distillation.distill`)
    run under the strategy in scope (``tf.distribute.get_strategy()``: the default one from the
    command line, the caller's inside ``strategy.scope()`` in Python) and check it here first.
    """
    if what not in _COMPRESSION_SUPPORT:
        raise ConfigError(f"compression technique {what!r}: valid: {', '.join(_COMPRESSION_SUPPORT)}")
    kind = strategy_kind(strategy)
    if kind in _COMPRESSION_SUPPORT[what]:
        return
    supported = sorted(_COMPRESSION_SUPPORT[what])
    where = f"--strategy {kind}" if isinstance(strategy, str) else f"the {kind} strategy in scope"
    raise ConfigError(
        f"{where}: TF-MOT {_TECHNIQUE_NAMES[what]} cannot run under this strategy "
        f"(it supports: {', '.join(supported)}); compress on CPU/GPU (the default or a mirrored strategy), "
        "then export or convert the compressed model for the TPU"
    )
