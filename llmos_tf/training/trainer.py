"""``llmos train``: config in, finished run folder out.

:func:`train` picks the task the config names (:func:`llmos_tf.tasks.get_task`)
and runs it through the one fit driver, :func:`llmos_tf.training.loop.fit`
(run folder, strategy, resume, TensorBoard, best checkpoint, ``run.json``).
"""
from __future__ import annotations

from llmos_tf.config import RunConfig
from llmos_tf.tasks import get_task
from llmos_tf.training.loop import fit
from llmos_tf.training.run_folder import TrainResult


def train(cfg: RunConfig, *, overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, command: str | None = None,
          profile: str | None = None, tpu: str | None = None) -> TrainResult:
    """Train the run ``cfg`` describes, whatever its task (see :mod:`llmos_tf.training.loop`).

    ``profile`` (``"START,STOP"`` batches) records TensorBoard profiler traces.
    """
    return fit(get_task(cfg), overwrite=overwrite, strategy=strategy, verbose=verbose, command=command, profile=profile, tpu=tpu)
