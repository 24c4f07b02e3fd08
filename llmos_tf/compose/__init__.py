"""Servables built from other servables: ensembles, sentence encoders and semantic-search indexes.

Each is an ordinary SavedModel version in TF Serving layout (``<base>/<name>/<version>``) that
``llmos serve`` and the stock ``tensorflow_model_server`` serve and hot-reload like any model:

* :mod:`~llmos_tf.compose.ensemble` -- ``llmos ensemble``: members' probabilities combined in one graph;
* :mod:`~llmos_tf.compose.embeddings` -- ``llmos encode``: an ``encode`` signature and Parquet vectors;
* :mod:`~llmos_tf.compose.search_index` -- ``llmos index``: exact top-k search as a ``search`` signature.
"""
