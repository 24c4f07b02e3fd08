"""Compressed variants against the dense model, measured in one run: accuracy, size, speed, ratios.

Runs ``llmos compress`` on a finished run without publishing (the variants are
staged under ``--report_dir``) and prints the report plus each variant's ratios
to the dense float model: gzipped size, p50 latency at batch 1 and throughput
at batch 32, all through the string-in serving signature, on this machine::

    python benchmarks/compression.py --run runs/sst2_bert --target_sparsity 0.5 --quantize dynamic float16
"""
from __future__ import annotations

import argparse

import llmos_tf  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--target_sparsity", type=float, default=0.8)
    parser.add_argument("--no-prune", dest="prune", action="store_false")
    parser.add_argument("--quantize", nargs="*", default=["dynamic"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps_per_epoch", type=int)
    parser.add_argument("--max_eval_examples", type=int, default=2000)
    parser.add_argument("--report_dir", help="default: <run>/compression_benchmark")
    args = parser.parse_args()

    from llmos_tf.compression.pipeline import compress

    report = compress(args.run, prune=args.prune, target_sparsity=args.target_sparsity, quantize=tuple(args.quantize),
                      epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, publish="none",
                      max_eval_examples=args.max_eval_examples, report_dir=args.report_dir or f"{args.run}/compression_benchmark")
    print(report.to_text())
    dense = report.dense
    print()
    print(f"{'variant':<16}{'metric Δ':>10}{'gzip ×':>9}{'p50 speed-up':>14}{'b32 throughput ×':>18}")
    for row in report.rows:
        print(f"{row.variant:<16}{row.metric - dense.metric:>+10.4f}{dense.gzip_bytes / row.gzip_bytes:>9.1f}"
              f"{dense.p50_ms_batch1 / row.p50_ms_batch1:>14.2f}{row.throughput_batch32 / dense.throughput_batch32:>18.2f}")


if __name__ == "__main__":
    main()
