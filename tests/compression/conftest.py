"""Compression fixtures: one pruned tiny BiLSTM run shared by the pruning, TFLite and QAT tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_run(trained_run):
    from llmos_tf.compression.run_data import load_trained

    return load_trained(trained_run)


@pytest.fixture(scope="session")
def pruned(tiny_run, tmp_path_factory):
    from llmos_tf.compression.pruning import prune_run

    log_dir = tmp_path_factory.mktemp("pruning_logs")
    result = prune_run(tiny_run, target_sparsity=0.8, epochs=2, log_dir=log_dir)
    result.log_dir = log_dir
    return result


@pytest.fixture(scope="session")
def validation_texts(tiny_run):
    from llmos_tf.compression.pipeline import validation_set

    return validation_set(tiny_run).texts


def tiny_bert_classifier(num_labels: int = 3, vocabulary_size: int = 64, max_length: int = 16):
    """A two-block BERT classifier small enough to fine-tune in seconds."""
    from llmos_tf.models.bert import BertEncoder
    from llmos_tf.models.heads import build_sentence_classifier

    encoder = BertEncoder(vocabulary_size=vocabulary_size, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32,
                          max_sequence_length=max_length)
    return build_sentence_classifier(encoder, num_labels, pooling="mean", dropout=0.0)


def bert_batch(n: int = 32, length: int = 12, vocabulary_size: int = 64, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocabulary_size, size=(n, length)).astype("int32")
    lengths = rng.integers(3, length + 1, size=n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    ids = ids * mask
    labels = (ids[:, 0] % 3).astype("int32")
    return {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}, labels
