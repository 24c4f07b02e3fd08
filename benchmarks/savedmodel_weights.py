"""Int8 weights inside a SavedModel against the float SavedModel: size, speed and agreement, in one run.

Exports one run three ways (float32, int8, int8 with 4-bit vocabulary tables), loads each with plain
``tf.saved_model.load`` (what the stock ``tensorflow_model_server`` does) and calls
``serving_default`` on batches of 32 real sentences, the three engines taking turns batch by batch so
a noisy machine slows them alike. Prints one table with ratios against float::

    .venv/bin/python benchmarks/savedmodel_weights.py --run runs/sst2_bert --data ../shared/data/sst2/dev.tsv

(``scripts/rebuild_reference_versions.py --work_dir DIR`` leaves recovered runs of the committed
versions in DIR, e.g. ``DIR/sst2_bert_3``.)
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

FORMATS = (("float32", 8), ("int8", 8), ("int8", 4))


def folder_mb(path: pathlib.Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished classifier run folder")
    parser.add_argument("--data", required=True, help="sentences: a TSV/CSV with a sentence/text column, or .txt")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the data (default 2)")
    args = parser.parse_args(argv)

    from benchmarks.serving import read_sentences
    from llmos_tf._tf import tf
    from llmos_tf.compression.run_data import load_trained
    from llmos_tf.export.writer import export_model
    import tensorflow_text  # noqa: F401

    sentences = read_sentences(args.data, args.limit)
    run = load_trained(args.run)
    base = pathlib.Path(tempfile.mkdtemp(prefix="llmos-weights-"))
    engines = {}
    for weights, bits in FORMATS:
        name = f"{weights}" + (" + 4-bit tables" if bits == 4 else "")
        path = export_model(run, run.model, base, f"m_{weights}_{bits}", weights=weights, embedding_bits=bits)
        engines[name] = (path, tf.saved_model.load(str(path)).signatures["serving_default"])
    groups = [sentences[i:i + args.batch_size] for i in range(0, len(sentences), args.batch_size)]
    seconds = {k: 0.0 for k in engines}
    labels = {k: [] for k in engines}
    for _, fn in engines.values():
        fn(text=tf.constant(groups[0]))
    for round_ in range(args.rounds):
        for group in groups:
            for name, (_, fn) in engines.items():
                started = time.perf_counter()
                out = fn(text=tf.constant(group))
                seconds[name] += time.perf_counter() - started
                if round_ == 0:
                    labels[name] += out["class_id"].numpy().tolist()
    reference = "float32"
    print(f"\n{len(sentences)} sentences from {args.data}, batches of {args.batch_size} in file order, {args.rounds} rounds; run {args.run}")
    print("| SavedModel weights | MB on disk | sentences/s | time vs float | agreement with float |")
    print("|---|---:|---:|---:|---:|")
    for name, (path, _) in engines.items():
        rate = args.rounds * len(sentences) / seconds[name]
        agree = float(np.mean(np.asarray(labels[name]) == np.asarray(labels[reference])))
        print(f"| {name} | {folder_mb(path):.1f} | {rate:.1f} | {seconds[name] / seconds[reference]:.2f}x | {agree:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
