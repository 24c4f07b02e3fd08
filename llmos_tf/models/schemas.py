"""The ``model:`` section of each built-in architecture, without TensorFlow.

A run config is validated before any work starts, and a typo must be reported
in a fraction of a second; importing TensorFlow takes several. The schemas
therefore live here, apart from the builders in :mod:`llmos_tf.models.bilstm`
and :mod:`llmos_tf.models.bert_classifier` (which re-export them), and
:func:`llmos_tf.models.registry.validate_model_config` checks a ``model:``
mapping against them without importing those modules.

Example::

    BiLSTMConfig(lstm_units=64).lstm_layers  # -> 1
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BiLSTMConfig:
    """Hyperparameters of :func:`~llmos_tf.models.bilstm.build_bilstm_classifier` (the ``model:`` section)."""

    architecture: str = "bilstm"
    embedding_dim: int = 128
    lstm_units: int = 128
    lstm_layers: int = 1  # 1 or 2
    dropout: float = 0.3
    embedding_dropout: float = 0.0  # drops whole embedding channels (SpatialDropout1D)
    recurrent_dropout: float = 0.0
    # Initialise the embedding from a BERT checkpoint's WordPiece embeddings (e.g. minilm-l6);
    # the run then uses that checkpoint's vocabulary and embedding_dim becomes its hidden size.
    pretrained_embeddings: str | None = None
    freeze_embeddings: bool = False
    # task: ner only: a CRF layer over the per-token scores (sequence log-likelihood, Viterbi decoding)
    crf: bool = False


@dataclass
class BertClassifierConfig:
    """The ``model:`` section for ``architecture: bert``."""

    architecture: str = "bert"
    encoder: str | None = "minilm-l6"  # checkpoint; null = random init with the sizes below
    pooling: str = "mean"  # mean | cls
    dropout: float = 0.1
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # freeze the lowest N transformer blocks
    # from-scratch sizes (ignored when ``encoder`` names a checkpoint)
    num_layers: int = 2
    hidden_dim: int = 128
    num_heads: int = 2
    intermediate_dim: int = 512
    max_sequence_length: int = 512
    # task: ner only: a CRF layer over the per-token scores (sequence log-likelihood, Viterbi decoding)
    crf: bool = False


# architecture name -> schema, for validation before the builders (and TensorFlow) are imported
BUILTIN_SCHEMAS: dict[str, type] = {"bilstm": BiLSTMConfig, "bert": BertClassifierConfig}
