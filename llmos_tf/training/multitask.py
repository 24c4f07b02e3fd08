"""``task: multitask`` training entry point, and where the multitask code used to live.

The task is :mod:`llmos_tf.tasks.multitask` (:class:`~llmos_tf.tasks.multitask.MultitaskTask`,
:class:`~llmos_tf.tasks.multitask.TrainedMultitask`) with its heads in
:mod:`llmos_tf.tasks.multitask_heads`; training goes through the one fit driver,
:func:`llmos_tf.training.loop.fit`. The names stay importable from here for older code.
"""
from __future__ import annotations

from llmos_tf.config import RunConfig
from llmos_tf.tasks.multitask import MULTITASK, MultitaskTask, TrainedMultitask, head_tasks, is_multitask_run  # noqa: F401
from llmos_tf.tasks.multitask_heads import build_multitask_model, head_labels_file  # noqa: F401
from llmos_tf.training.loop import fit
from llmos_tf.training.run_folder import TrainResult


def train_multitask(cfg: RunConfig, *, overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, command: str | None = None,
                    profile: str | None = None) -> TrainResult:
    """Train one shared encoder with a head per ``heads:`` entry through :func:`llmos_tf.training.loop.fit`."""
    return fit(MultitaskTask(cfg), overwrite=overwrite, strategy=strategy, verbose=verbose, command=command, profile=profile)
