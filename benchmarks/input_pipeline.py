"""Is the input pipeline the bottleneck?  And what does length bucketing save?

Measures, on one data file (default: SST-2 train):

1. examples/s of the tf.data pipeline alone (tokenize → cache → shuffle → bucket → prefetch),
   first pass (tokenizing) and cached pass;
2. examples/s of the BiLSTM training step on the same batches;
3. padded positions with length bucketing vs per-batch padding vs fixed padding to max_length,
   counted on the batches the pipeline yields (one training pass each).

    python benchmarks/input_pipeline.py --data ../shared/data/sst2/train.tsv --limit 20000

Prints a table; ratios are computed inside one run because the machine is shared.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import llmos_tf  # noqa: F401
from llmos_tf._tf import tf, tf_keras
from llmos_tf.data.pipeline import BatchingPlan, count_batches, make_dataset, token_lengths
from llmos_tf.data.readers import read_labelled_table
from llmos_tf.data.labels import LabelMap
from llmos_tf.models.bilstm import BiLSTMConfig, build_bilstm_classifier
from llmos_tf.text.wordpiece import learn_vocabulary, make_tokenizer


def padding_stats(texts, y, tokenizer, plan: BatchingPlan) -> dict[str, float]:
    """Real tokens vs padded positions of one training pass, counted on the batches the project's
    tf.data pipeline really yields for ``plan`` (shuffled, bucketed or padded, TPU mode dropping the
    last partial batch): measured, not simulated."""
    real = padded = 0
    for ids, _ in make_dataset(texts, y, tokenizer, plan, training=True, seed=0, cache=False):
        real += int(tf.math.count_nonzero(ids))  # [PAD] is id 0
        padded += int(tf.size(ids))
    return {"real_tokens": real, "padded_positions": padded, "efficiency": real / max(padded, 1)}


def time_pipeline(ds: tf.data.Dataset) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for _, y in ds:
        n += int(y.shape[0])
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/sst2/train.tsv")
    parser.add_argument("--limit", type=int, default=20000, help="examples used (0 = all)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--train_batches", type=int, default=60, help="training steps timed")
    args = parser.parse_args()

    frame = read_labelled_table(args.data)
    if args.limit:
        frame = frame.iloc[: args.limit]
    texts = frame["text"].tolist()
    labels = LabelMap.from_labels(frame["label"].tolist())
    y = labels.encode(frame["label"].tolist())
    vocab = learn_vocabulary(texts, 12000)
    tokenizer = make_tokenizer(vocab)
    lengths = token_lengths(texts, tokenizer, args.max_length)

    bucketed = BatchingPlan(args.batch_size, args.max_length, bucketing=True, bucket_boundaries=(8, 16, 24, 32, 48))
    ds = make_dataset(texts, y, tokenizer, bucketed, training=True, seed=0)
    first_s, n = time_pipeline(ds)
    cached_s, _ = time_pipeline(ds)

    model = build_bilstm_classifier(BiLSTMConfig(), vocabulary_size=len(vocab), num_labels=len(labels))
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    batches = list(ds.take(args.train_batches + 5))
    model.train_on_batch(*batches[0])  # trace
    for b in batches[1:5]:
        model.train_on_batch(*b)
    start, seen = time.perf_counter(), 0
    for x, t in batches[5:]:
        model.train_on_batch(x, t)
        seen += int(t.shape[0])
    train_rate = seen / (time.perf_counter() - start)

    rows = [
        ("pipeline, first pass (tokenizing)", n / first_s),
        ("pipeline, cached pass", n / cached_s),
        ("BiLSTM training step", train_rate),
    ]
    print(f"\n{args.data}: {n} examples, batch {args.batch_size}, max_length {args.max_length}, "
          f"mean tokens {lengths.mean():.1f}, {count_batches(lengths, bucketed, training=True)} bucketed batches\n")
    print(f"{'stage':40s} {'examples/s':>12s} {'x training':>11s}")
    for name, rate in rows:
        print(f"{name:40s} {rate:12.0f} {rate / train_rate:10.1f}x")

    print(f"\n{'batching (measured on the pipeline)':36s} {'real tokens':>12s} {'padded positions':>17s} {'efficiency':>11s}")
    stats = {}
    for name, plan in [
        ("bucket_by_sequence_length", bucketed),
        ("pad per batch", BatchingPlan(args.batch_size, args.max_length, bucketing=False)),
        ("fixed max_length (TPU)", BatchingPlan(args.batch_size, args.max_length, tpu_mode=True)),
    ]:
        s = stats[name] = padding_stats(texts, y, tokenizer, plan)
        print(f"{name:36s} {s['real_tokens']:12d} {s['padded_positions']:17d} {s['efficiency']:10.1%}")
    fixed = stats["fixed max_length (TPU)"]["padded_positions"]
    buck = stats["bucket_by_sequence_length"]["padded_positions"]
    print(f"\nbucketing pads {buck / fixed:.1%} of the positions fixed padding does ({1 - buck / fixed:.1%} saved)")

if __name__ == "__main__":
    main()
