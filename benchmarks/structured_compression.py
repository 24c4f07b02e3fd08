"""Structured compression against the dense model: each step's accuracy, size, parameters, FLOPs and speed.

Reads the report of one ``llmos compress`` run (its ``report.json`` and the
version folders it staged) and measures every variant's SavedModel again,
*interleaved*: each round times dense, then each variant, so a neighbour's load
on a shared machine hits all of them alike; the medians over ``--rounds`` are
printed next to the report's accuracy, gzipped SavedModel size, parameters and
FLOPs per sentence, with ratios to the dense model. Batch-32 throughput is given per wall-clock
second and per CPU second of this process (all its threads): on a machine other jobs load, the
second is the steadier measure of what a variant costs::

    llmos compress --run runs/sst2_bert --no-prune --trim_vocabulary --keep_layers 0,2,4 --distill_alpha 0.3 \\
        --steps_per_epoch 600 --quantize dynamic --report_dir /tmp/sst2_structured
    python benchmarks/structured_compression.py --report_dir /tmp/sst2_structured --rounds 5
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

import llmos_tf  # noqa: F401


def _throughput(predict, texts, calls: int) -> tuple[float, float]:
    """(examples per wall-clock second, examples per CPU second of this process, all threads)."""
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        predict([texts[(i * 32 + k) % len(texts)] for k in range(32)])
    return 32 * calls / (time.perf_counter() - start), 32 * calls / max(time.process_time() - cpu, 1e-9)


def _latency_ms(predict, texts, calls: int) -> float:
    times = []
    for i in range(calls):
        start = time.perf_counter()
        predict([texts[i % len(texts)]])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report_dir", required=True, help="the --report_dir of an `llmos compress` run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=8, help="batch-32 calls per variant and round")
    parser.add_argument("--variants", nargs="*", help="default: every row of the report")
    args = parser.parse_args()

    from llmos_tf.compression.pipeline import _serving_function, validation_set
    from llmos_tf.compression.run_data import load_trained

    report = json.loads((pathlib.Path(args.report_dir) / "report.json").read_text())
    rows = [r for r in report["variants"] if not args.variants or r["variant"] in args.variants or r["variant"] == "dense"]
    texts = validation_set(load_trained(report["run"])).texts
    predict = {r["variant"]: _serving_function(pathlib.Path(r["staged_path"]), tflite=False) for r in rows}
    for name, fn in predict.items():  # warm-up: tracing, first allocations
        fn(texts[:32])
        fn(texts[:1])
    throughput = {name: [] for name in predict}
    per_cpu = {name: [] for name in predict}
    latency = {name: [] for name in predict}
    for _ in range(args.rounds):
        for name, fn in predict.items():
            wall, cpu = _throughput(fn, texts, args.calls)
            throughput[name].append(wall)
            per_cpu[name].append(cpu)
            latency[name].append(_latency_ms(fn, texts, 20))
    dense = next(r for r in rows if r["variant"] == "dense")
    tput = {k: float(np.median(v)) for k, v in throughput.items()}
    p50 = {k: float(np.median(v)) for k, v in latency.items()}
    cpu_tput = {k: float(np.median(v)) for k, v in per_cpu.items()}
    print(f"run {report['run']}; validation mean length {report.get('mean_tokens') or 0:.1f} tokens; "
          f"{args.rounds} interleaved rounds of {args.calls} batch-32 calls")
    header = (f"{'variant':<26}{'accuracy':>9}{'Δ':>8}{'gzip MB':>9}{'gzip ×':>8}{'params M':>9}{'MFLOPs':>8}"
              f"{'p50 ms':>8}{'ex/s b32':>9}{'b32 ×':>7}{'ex/CPU-s':>9}{'CPU ×':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        name = r["variant"]
        print(f"{name:<26}{r['metric']:>9.4f}{r['metric'] - dense['metric']:>+8.4f}{r['gzip_bytes'] / 1e6:>9.2f}"
              f"{dense['gzip_bytes'] / r['gzip_bytes']:>8.1f}{(r.get('parameters') or 0) / 1e6:>9.2f}{(r.get('flops') or 0) / 1e6:>8.0f}"
              f"{p50[name]:>8.1f}{tput[name]:>9.0f}{tput[name] / tput['dense']:>7.2f}"
              f"{cpu_tput[name]:>9.0f}{cpu_tput[name] / cpu_tput['dense']:>7.2f}")


if __name__ == "__main__":
    main()
