"""Start ``llmos serve`` on a model base path, query every model over gRPC and REST, stop it.

``make demo`` runs this on ``saved_models/``::

    python -m llmos_tf.serving.demo --model_base_path saved_models

The server is a real separate process (the same one ``llmos serve`` starts) on
free loopback ports; it is sent SIGTERM at the end and drains before exiting.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import signal
import socket
import subprocess
import sys
import time

DEMO_TEXTS = {
    "classifier": ["a warm, funny and beautifully acted film", "I still have not received my new card"],
    "tagger": ["Anna Berg joined Northwind Bank in Oslo"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model_flags(model_base_path: str) -> list[str]:
    """``models.config`` (every version, with its labels) when the base path has one, else discovery."""
    config = pathlib.Path(model_base_path) / "models.config"
    return ["--model_config_file", str(config)] if config.is_file() else ["--model_base_path", model_base_path]


def start_server(model_base_path: str, timeout: float = 180.0) -> tuple[subprocess.Popen, dict]:
    """Launch ``python -m llmos_tf.serving`` and wait for its ``ready`` line."""
    grpc_port, rest_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmos_tf.serving", *_model_flags(model_base_path), "--port", str(grpc_port), "--rest_api_port", str(rest_port),
         "--enable_batching", "--prefer_tflite_model"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"llmos serve exited with status {proc.returncode} before it was ready")
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "ready":
            return proc, event
    proc.kill()
    raise RuntimeError(f"llmos serve was not ready within {timeout:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="saved_models")
    args = parser.parse_args(argv)
    base = pathlib.Path(args.model_base_path)
    models = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []
    if not models:
        print(f"no models under {base}; export one with `llmos export`")
        return 1
    from llmos_tf.serving.client import Client, RestClient

    proc, ready = start_server(str(base))
    print(f"llmos serve is up: gRPC 127.0.0.1:{ready['grpc_port']}, REST http://127.0.0.1:{ready['rest_port']}")
    try:
        grpc_client = Client(f"127.0.0.1:{ready['grpc_port']}")
        rest = RestClient(f"http://127.0.0.1:{ready['rest_port']}")
        for model in models:
            outputs_meta = grpc_client.metadata(model)
            is_tagger = "tags" in json.dumps(outputs_meta)
            texts = DEMO_TEXTS["tagger" if is_tagger else "classifier"]
            out = grpc_client.predict(model, texts)
            print(f"\n[{model}] gRPC Predict (tensorflow.serving.PredictionService):")
            for i, text in enumerate(texts):
                if is_tagger:
                    n = int(out["token_count"][i])
                    print(f"  {text!r} -> {[t.decode() for t in out['tags'][i][:n]]}")
                else:
                    print(f"  {text!r} -> {out['label'][i].decode()} (p={float(out['probabilities'][i].max()):.3f})")
            status, body = rest.request("POST", f"/v1/models/{model}:predict", {"instances": texts[:1]})
            print(f"[{model}] REST POST /v1/models/{model}:predict -> HTTP {status} {json.dumps(body)[:160]}")
        status, metrics = rest.request("GET", "/monitoring/prometheus/metrics")
        count = [l for l in str(metrics).splitlines() if l.startswith(":tensorflow:serving:request_count")]
        print(f"\nPrometheus /monitoring/prometheus/metrics: {len(count)} request_count series")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    print("server drained and stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
