"""Where the conlleval port used to live: :mod:`llmos_tf.metrics.conlleval` now (metrics sit below tasks
and training). Kept for the modules and tests other owners have not moved yet (explain/, serving/,
compression/, tests/training/test_conlleval.py); import from ``llmos_tf.metrics.conlleval``."""
from llmos_tf.metrics.conlleval import *  # noqa: F401,F403
from llmos_tf.metrics.conlleval import entity_spans, format_report, per_type_frame, split_tag  # noqa: F401
