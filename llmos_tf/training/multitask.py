"""Where :class:`~llmos_tf.tasks.multitask.TrainedMultitask` used to live; the multitask task is
:mod:`llmos_tf.tasks.multitask` now (heads in :mod:`llmos_tf.tasks.multitask_heads`), trained by
:func:`llmos_tf.training.loop.fit` like every task. Kept for the importers outside ``tasks/``
(cli.py's evaluate command, tests/export/test_export_multitask.py)."""
from llmos_tf.tasks.multitask import TrainedMultitask

__all__ = ["TrainedMultitask"]
