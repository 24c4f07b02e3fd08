"""Where the multitask heads used to live: :mod:`llmos_tf.tasks.multitask_heads` now. Kept for
tests/data/test_label_names.py, the one importer left."""
from llmos_tf.tasks.multitask_heads import prepare_heads

__all__ = ["prepare_heads"]
