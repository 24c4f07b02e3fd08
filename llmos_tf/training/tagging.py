"""Where the tagging code used to live: :mod:`llmos_tf.tasks.tagging` (loss, metric, entity-F1 callback,
:class:`~llmos_tf.tasks.tagging.TaggingTask`) and :mod:`llmos_tf.tasks.tagging_data` (CoNLL data, tf.data,
the word-tag predictor) now.

Only the names modules and tests outside ``tasks/`` still import from here remain (compression/recovery.py,
compression/pipeline.py, tests/training/test_tagging.py, tests/training/test_bilstm_crf.py); new code imports
from ``llmos_tf.tasks``. Training goes through the one fit driver, :func:`llmos_tf.training.loop.fit`.
"""
from __future__ import annotations

from llmos_tf.config import RunConfig
from llmos_tf.tasks.tagging import NER_MONITORS, MaskedSparseCategoricalCrossentropy, MaskedTokenAccuracy, TaggingTask, build_bert_tagger  # noqa: F401
from llmos_tf.tasks.tagging_data import WordTagPredictor, evaluate_frame, prepare_tagging_data, tagger_text_encoder  # noqa: F401
from llmos_tf.training.loop import fit
from llmos_tf.training.run_folder import TrainResult


def train_tagger(cfg: RunConfig, *, overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, command: str | None = None,
                 profile: str | None = None) -> TrainResult:
    """Train the tagger the config describes (``task: ner``) through :func:`llmos_tf.training.loop.fit`."""
    return fit(TaggingTask(cfg), overwrite=overwrite, strategy=strategy, verbose=verbose, command=command, profile=profile)
