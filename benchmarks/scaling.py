"""Training examples/s on 1 device (the default strategy) vs 2 devices (MirroredStrategy).

On a machine without GPUs the two "devices" are logical CPU devices carved out
of the one physical CPU (``tf.config.set_logical_device_configuration``): the
replicas share the same cores and thread pools, so this measures the cost of
tf.distribute's replication (split batch, all-reduce of the gradients) rather
than a speed-up. With 2 GPUs, pass ``--devices gpu`` to measure the real thing.

Both runs use the same global batch (``--global_batch``; mirrored = 2 replicas x
half of it), the same model (the BiLSTM of ``configs/sample_bilstm.yaml`` by
default) and the same fixed-shape batches, and time ``model.fit`` over
``--steps`` steps after 10 untimed ones (tracing, iterator start-up)::

    python benchmarks/scaling.py --data data/sample/sentiment_train.csv --steps 100

Prints a table with examples/s and the ratio to the 1-device run.
"""
from __future__ import annotations

import argparse
import pathlib
import random
import time

import llmos_tf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from llmos_tf._tf import tf, tf_keras


def _configure_devices(kind: str) -> list[str]:
    """Two replicas' device names; for CPUs, split the physical CPU into 2 logical devices (before TF starts)."""
    if kind == "gpu":
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < 2:
            raise SystemExit(f"--devices gpu: {len(gpus)} GPU(s) visible, need 2")
        return [d.name for d in gpus[:2]]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return [d.name for d in tf.config.list_logical_devices("CPU")[:2]]


def _texts(path: str | None, limit: int) -> tuple[list[str], list[str]]:
    """``limit`` labelled texts: the first of ``path``, or (no ``--data``) freshly generated sample texts.
    A named file that does not exist is an error, never a silent switch to other data."""
    from llmos_tf.data.readers import read_labelled_table

    if path is not None:
        if not pathlib.Path(path).is_file():
            raise SystemExit(f"--data {path}: no such file")
        frame = read_labelled_table(path).iloc[:limit]
        return frame["text"].tolist(), frame["label"].tolist()
    from llmos_tf.data.sample import sentiment_rows  # the project's own generated sample data

    rows = sentiment_rows(random.Random(0), limit)
    return [t for t, _ in rows], [label for _, label in rows]


class _StepClock(tf_keras.callbacks.Callback):
    """Wall time from the start of batch ``skip`` to the end of training: steady state only
    (tracing and the distributed iterator's start-up happen in the skipped batches)."""

    def __init__(self, skip: int):
        super().__init__()
        self.skip, self.started, self.seconds = skip, 0.0, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.skip:
            self.started = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.started


def measure(strategy: tf.distribute.Strategy, build, dataset: tf.data.Dataset, steps: int, global_batch: int, skip: int = 10) -> float:
    """Steady-state examples/s of ``model.fit`` over ``steps`` steps (the first ``skip`` are not timed)."""
    with strategy.scope():
        model = build()
        model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    clock = _StepClock(skip)
    model.fit(dataset, epochs=1, steps_per_epoch=steps + skip, verbose=0, callbacks=[clock])
    return steps * global_batch / clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/sample_bilstm.yaml", help="run config whose model is timed")
    parser.add_argument("--data", default=None, help="labelled texts (default: --limit texts generated like the project's sample data)")
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--global_batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="alternate default/mirrored this many times; the best rate is kept")
    parser.add_argument("--devices", choices=("cpu", "gpu"), default="cpu")
    args = parser.parse_args()

    devices = _configure_devices(args.devices)
    from llmos_tf.config import load_config
    from llmos_tf.data.labels import LabelMap
    from llmos_tf.data.pipeline import BatchingPlan, make_dataset
    from llmos_tf.models import registry
    from llmos_tf.training.distribute import with_data_sharding

    cfg = load_config(args.config)
    arch = registry.get(cfg.architecture)
    model_cfg = registry.model_config(cfg.model)
    texts, raw_labels = _texts(args.data, args.limit)
    labels = LabelMap.from_labels(raw_labels)
    y = labels.encode(raw_labels)
    vocab = arch.vocabulary(model_cfg, texts, cfg.text)
    max_length = arch.max_length(model_cfg, cfg.data.max_length)
    tokenizer = arch.tokenizer(model_cfg, vocab, cfg.text, max_length)
    plan = BatchingPlan(args.global_batch, max_length, tpu_mode=True)  # fixed shapes: no retracing in the timed steps
    dataset = with_data_sharding(make_dataset(texts, y, tokenizer, plan, training=True, seed=0, repeat=True, features=arch.features))

    def build():
        tf_keras.utils.set_random_seed(0)
        return arch.build(model_cfg, registry.BuildContext(num_labels=len(labels), vocabulary=vocab, max_length=max_length))

    strategies = {
        "default (1 device)": tf.distribute.get_strategy(),
        f"mirrored (2 devices: {', '.join(d.split('/')[-1] for d in devices)})": tf.distribute.MirroredStrategy(devices),
    }
    best: dict[str, float] = {}
    for _ in range(max(1, args.repeats)):  # alternate, so load from other processes hits both alike
        for name, strategy in strategies.items():
            best[name] = max(best.get(name, 0.0), measure(strategy, build, dataset, args.steps, args.global_batch))

    base = next(iter(best.values()))
    source = args.data or "generated sample texts"
    print(f"\n{cfg.architecture} ({args.config}), {len(texts)} texts from {source}, global batch {args.global_batch}, "
          f"max_length {max_length}, {args.steps} timed steps, best of {args.repeats}\n")
    print(f"{'strategy':50s} {'examples/s':>11s} {'ratio':>7s}")
    for name, rate in best.items():
        print(f"{name:50s} {rate:11.1f} {rate / base:6.2f}x")


if __name__ == "__main__":
    main()
