"""Where :class:`TrainedTagger` used to live; it is the NER task's loaded run now
(:mod:`llmos_tf.tasks.tagging`). Kept for the importers outside ``tasks/`` (explain/trust.py,
compression/pipeline.py, cli.py's evaluate command, scripts/, tests)."""
from llmos_tf.tasks.tagging import TrainedTagger, is_tagger_run

__all__ = ["TrainedTagger", "is_tagger_run"]
