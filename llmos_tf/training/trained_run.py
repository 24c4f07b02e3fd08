"""Where :class:`TrainedRun` used to live; it is the classification task's loaded run now
(:mod:`llmos_tf.tasks.classification`). Kept so that ``from llmos_tf.training.trained_run
import TrainedRun`` (notebooks, scripts, older code) keeps working."""
from llmos_tf.tasks.classification import TrainedRun

__all__ = ["TrainedRun"]
