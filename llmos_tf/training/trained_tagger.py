"""Where :class:`TrainedTagger` used to live; it is the NER task's loaded run now
(:mod:`llmos_tf.tasks.tagging`). Kept so that older imports keep working."""
from llmos_tf.tasks.tagging import CONLL_SUFFIXES, TrainedTagger, is_tagger_run  # noqa: F401

__all__ = ["CONLL_SUFFIXES", "TrainedTagger", "is_tagger_run"]
