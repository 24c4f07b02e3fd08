"""``task: ner`` training entry point, and where the tagging code used to live.

The task itself is :mod:`llmos_tf.tasks.tagging` (loss, metric, entity-F1
callback, :class:`~llmos_tf.tasks.tagging.TaggingTask`) and
:mod:`llmos_tf.tasks.tagging_data` (CoNLL data, tf.data, the word-tag
predictor); the names stay importable from here for older code. Training goes
through the one fit driver, :func:`llmos_tf.training.loop.fit`.

Example::

    result = train_tagger(load_config("configs/sample_ner.yaml"))
    result.metrics["validation"]["entity_f1"]
"""
from __future__ import annotations

from llmos_tf.config import RunConfig
from llmos_tf.tasks.tagging import (  # noqa: F401  (the names older code imports from here)
    NER_MONITORS,
    NER_TASK,
    SUMMARY_KEYS,
    EntityF1Callback,
    MaskedSparseCategoricalCrossentropy,
    MaskedTokenAccuracy,
    TaggingTask,
    build_bert_tagger,
    tagger_loss,
)
from llmos_tf.tasks.tagging_data import (  # noqa: F401
    TaggingData,
    WordTagPredictor,
    encoding_stats,
    evaluate_frame,
    make_tagging_dataset,
    prepare_tagging_data,
    ragged_tag_ids,
    ragged_words,
    tagger_label_map,
    tagger_text_encoder,
)
from llmos_tf.training.loop import fit
from llmos_tf.training.run_folder import TrainResult


def train_tagger(cfg: RunConfig, *, overwrite: bool = False, strategy: str = "auto", verbose: int | None = None, command: str | None = None,
                 profile: str | None = None) -> TrainResult:
    """Train the tagger the config describes (``task: ner``) through :func:`llmos_tf.training.loop.fit`."""
    return fit(TaggingTask(cfg), overwrite=overwrite, strategy=strategy, verbose=verbose, command=command, profile=profile)
