"""BERT fine-tuning throughput with and without length bucketing.

Builds the ``bert`` classifier of a config (default: minilm-l6 on SST-2), tokenizes the
training texts in tf.data exactly as ``llmos train`` does, and times the same number
of training steps with (a) ``bucket_by_sequence_length`` and (b) fixed padding to
``max_length`` (TPU mode). Prints examples/s and the ratio, measured in one run::

    python benchmarks/finetune_throughput.py --data ../shared/data/sst2/train.tsv --steps 30
"""
from __future__ import annotations

import argparse
import time

import llmos_tf  # noqa: F401
from llmos_tf._tf import tf_keras
from llmos_tf.config import TextConfig
from llmos_tf.data.labels import LabelMap
from llmos_tf.data.pipeline import BatchingPlan, make_dataset
from llmos_tf.data.readers import read_labelled_table
from llmos_tf.models import registry


def time_steps(model, dataset, steps: int, warmup: int = 3) -> float:
    batches = list(dataset.take(steps + warmup))
    for x, y in batches[:warmup]:
        model.train_on_batch(x, y)
    seen, started = 0, time.perf_counter()
    for x, y in batches[warmup:]:
        model.train_on_batch(x, y)
        seen += int(y.shape[0])
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/sst2/train.tsv")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    frame = read_labelled_table(args.data).iloc[: args.limit]
    texts = frame["text"].tolist()
    labels = LabelMap.from_labels(frame["label"].tolist())
    y = labels.encode(frame["label"].tolist())
    arch = registry.get("bert")
    cfg = registry.model_config({"architecture": "bert", "encoder": args.encoder})
    vocab = arch.vocabulary(cfg, texts, TextConfig())
    tokenizer = arch.tokenizer(cfg, vocab, TextConfig(), args.max_length)
    model = arch.build(cfg, registry.BuildContext(num_labels=len(labels), vocabulary=vocab, max_length=args.max_length))
    model.compile(optimizer=tf_keras.optimizers.AdamW(5e-5), loss="sparse_categorical_crossentropy")

    rows = []
    for name, plan in [
        ("bucket_by_sequence_length", BatchingPlan(args.batch_size, args.max_length, bucketing=True, bucket_boundaries=(8, 12, 16, 24, 32, 48))),
        ("fixed max_length padding", BatchingPlan(args.batch_size, args.max_length, tpu_mode=True)),
    ]:
        ds = make_dataset(texts, y, tokenizer, plan, training=True, seed=0, features=arch.features)
        rows.append((name, time_steps(model, ds, args.steps)))
    print(f"\n{args.encoder} fine-tuning on {args.data} ({len(texts)} texts), batch {args.batch_size}, max_length {args.max_length}, {args.steps} timed steps\n")
    print(f"{'batching':28s} {'examples/s':>11s} {'ratio':>7s}")
    for name, rate in rows:
        print(f"{name:28s} {rate:11.1f} {rate / rows[1][1]:6.2f}x")


if __name__ == "__main__":
    main()
