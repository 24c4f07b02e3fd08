"""Serving throughput and latency: in-process call, gRPC and REST, batching off and on.

Runs against any classifier SavedModel folder in TF Serving layout (``<base>/<name>/<version>``)::

    .venv/bin/python benchmarks/serving.py --model_base_path saved_models --model sst2
    .venv/bin/python benchmarks/serving.py --concurrency 1 8 32 --requests 400 --texts_per_request 1

For each mode (in-process / gRPC / REST) x batching (off / on) x concurrency it
prints requests/s and p50/p99 latency in milliseconds. The server runs in this
process on free ports (so "gRPC" and "REST" include the full network stack on
localhost, but share the CPU with the load generator).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

SENTENCES = ["a wonderful, moving film", "dull and far too long", "the cast is great but the plot is thin", "hello"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_load(call, concurrency: int, requests: int) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0

    def one(i: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            call(i)
        except Exception:
            errors += 1
            return
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="saved_models", help="folder of models (<base>/<name>/<version>) (default saved_models)")
    parser.add_argument("--model", help="model name under the base path (default: the first one found)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=300, help="requests per cell (default 300)")
    parser.add_argument("--texts_per_request", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["in-process", "grpc", "rest"], choices=["in-process", "grpc", "rest"])
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--batch_timeout_micros", type=int, default=2000)
    parser.add_argument("--num_batch_threads", type=int, default=2)
    args = parser.parse_args(argv)

    from llmos_tf.serving import Client, ModelServer, RestClient
    from llmos_tf.serving.model_config import discover_models

    base = pathlib.Path(args.model_base_path)
    models = [m.name for m in discover_models(base)]
    if not models:
        print(f"no models under {base} (expected {base}/<name>/<version>/saved_model.pb)", file=sys.stderr)
        return 2
    model = args.model or models[0]
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.texts_per_request)]
    rows = []
    for batching in (False, True):
        params_file = None
        if batching:
            params_file = pathlib.Path(tempfile.mkdtemp()) / "batching.config"
            params_file.write_text(
                f"max_batch_size {{ value: {args.max_batch_size} }} batch_timeout_micros {{ value: {args.batch_timeout_micros} }} "
                f"num_batch_threads {{ value: {args.num_batch_threads} }} max_enqueued_batches {{ value: 1000 }}"
            )
        server = ModelServer(
            model_base_path=str(base), port=0, rest_api_port=0, file_system_poll_wait_seconds=0,
            enable_batching=batching, batching_parameters_file=str(params_file) if params_file else None,
            max_instances_per_request=0, grpc_max_threads=max(args.concurrency) + 4,
        ).start()
        try:
            grpc_client = Client(f"127.0.0.1:{server.grpc_port}", timeout=60)
            rest_client = RestClient(f"http://127.0.0.1:{server.rest_port}", timeout=60)
            batch = {"text": np.array([t.encode() for t in texts], dtype=object)}
            calls = {
                "in-process": lambda i: server.core.predict(model, batch, entrypoint="BENCH"),
                "grpc": lambda i: grpc_client.predict(model, texts),
                "rest": lambda i: rest_client.predict(model, texts),
            }
            for mode in args.modes:
                calls[mode](0)  # warm-up
                for concurrency in args.concurrency:
                    rps, p50, p99, errors = run_load(calls[mode], concurrency, args.requests)
                    rows.append((mode, "on" if batching else "off", concurrency, rps, p50, p99, errors))
                    print(f"  {mode:10s} batching={'on' if batching else 'off':3s} c={concurrency:<3d} {rps:8.1f} req/s", file=sys.stderr)
            grpc_client.close()
        finally:
            server.stop()

    header = f"{'mode':10s} {'batching':8s} {'conc':>4s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}"
    print(f"\nmodel {model} from {base}, {args.requests} requests per row, {args.texts_per_request} text(s) per request")
    print(header)
    print("-" * len(header))
    for mode, batching, concurrency, rps, p50, p99, errors in rows:
        print(f"{mode:10s} {batching:8s} {concurrency:4d} {rps:9.1f} {p50:8.2f} {p99:8.2f} {errors:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
