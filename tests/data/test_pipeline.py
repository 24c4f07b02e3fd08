import numpy as np
import pytest

from llmos_tf._tf import tf
from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
from llmos_tf.text.wordpiece import learn_vocabulary, make_tokenizer
from tests.conftest import make_sentiment_rows


@pytest.fixture(scope="module")
def corpus():
    rows = make_sentiment_rows(100, seed=3)
    texts = [t for t, _ in rows]
    labels = np.array([0 if l == "negative" else 1 for _, l in rows], np.int32)
    tokenizer = make_tokenizer(learn_vocabulary(texts, 100))
    return texts, labels, tokenizer


def test_bucketed_batches_group_lengths_and_count_matches(corpus):
    texts, labels, tok = corpus
    plan = BatchingPlan(batch_size=8, max_length=12, bucket_boundaries=(6, 9))
    ds = make_dataset(texts, labels, tok, plan, training=True, seed=0)
    batches = list(ds)
    assert sum(int(y.shape[0]) for _, y in batches) == len(texts)
    assert len(batches) == count_batches(token_lengths(texts, tok, 12), plan, training=True)
    for x, _ in batches:
        assert x.shape[1] <= 12
        lengths = tf.reduce_sum(tf.cast(x != 0, tf.int32), axis=1).numpy()
        # every sequence in a bucketed batch falls in one bucket: [..6), [6..9), [9..]
        buckets = set(np.searchsorted([6, 9], lengths, side="right"))
        assert len(buckets) == 1


def test_fixed_tpu_mode_has_static_shapes(corpus):
    texts, labels, tok = corpus
    plan = BatchingPlan(batch_size=16, max_length=12, tpu_mode=True)
    ds = make_dataset(texts, labels, tok, plan, training=True, seed=0)
    x_spec, y_spec = ds.element_spec
    assert x_spec.shape.as_list() == [16, 12] and y_spec.shape.as_list() == [16]
    assert sum(1 for _ in ds) == len(texts) // 16 == count_batches(token_lengths(texts, tok, 12), plan, training=True)


def test_evaluation_keeps_order_and_truncates(corpus):
    texts, labels, tok = corpus
    plan = BatchingPlan(batch_size=7, max_length=5, bucketing=False)
    ds = make_dataset(texts, labels, tok, plan, training=False)
    ys = np.concatenate([y.numpy() for _, y in ds])
    assert (ys == labels).all()
    assert max(x.shape[1] for x, _ in ds) <= 5


def test_shuffle_is_seeded(corpus):
    texts, labels, tok = corpus
    plan = BatchingPlan(batch_size=8, max_length=12, bucketing=False)
    first = [y.numpy().tolist() for _, y in make_dataset(texts, labels, tok, plan, training=True, seed=5)]
    again = [y.numpy().tolist() for _, y in make_dataset(texts, labels, tok, plan, training=True, seed=5)]
    other = [y.numpy().tolist() for _, y in make_dataset(texts, labels, tok, plan, training=True, seed=6)]
    assert first == again and first != other


def test_vocabulary_reserves_pad_zero(corpus):
    texts, _, _ = corpus
    vocab = learn_vocabulary(texts, 80)
    assert vocab[0] == "[PAD]" and "[UNK]" in vocab
    out = make_tokenizer(vocab)(tf.constant(["the film was zzzqqq"]))
    ids = (out.to_list() if hasattr(out, "to_list") else out)[0]  # keras-hub returns lists in eager mode
    assert 0 not in ids and vocab.index("[UNK]") in ids
