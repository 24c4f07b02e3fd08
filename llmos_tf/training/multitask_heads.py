"""Where the multitask heads used to live: :mod:`llmos_tf.tasks.multitask_heads` now. Kept for older imports."""
from llmos_tf.tasks.multitask_heads import *  # noqa: F401,F403
from llmos_tf.tasks.multitask_heads import prepare_heads  # noqa: F401
