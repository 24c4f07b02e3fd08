"""``llmos serve`` / ``python -m llmos_tf.serving``: tensorflow_model_server's flags, our server.

Flag names and defaults follow ``tensorflow_model_server`` so that a command
line moves between the two unchanged. One deliberate difference:
``--rest_api_port`` defaults to 8501 (TF Serving: 0 = off), because the REST API
is how most people try a model first; pass ``--rest_api_port 0`` to turn it off.
Once every model is loaded the server prints one JSON line to stdout,
``{"event": "ready", "grpc_port": ..., "rest_port": ..., "models": {...}}``,
which scripts and tests can wait for. SIGTERM or Ctrl-C drains in-flight
requests and exits 0.
"""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import signal
import sys
import threading

DEFAULT_BASE_PATH = "saved_models"  # llmos_tf.serving.server.DEFAULT_BASE_PATH (that module imports TensorFlow)


def _bool(value: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``tensorflow_model_server``'s flags (with its defaults) to ``parser``."""
    g = parser.add_argument_group("listening")
    g.add_argument("--port", type=int, default=8500, help="gRPC port for PredictionService and ModelService (default 8500)")
    g.add_argument("--rest_api_port", type=int, default=8501, help="REST API port; 0 turns the REST API off (default 8501; TF Serving's default is 0)")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for every interface (default 127.0.0.1: local only)")
    g.add_argument("--rest_api_timeout_in_ms", type=int, default=30000, help="REST requests slower than this get HTTP 504 (default 30000; 0 = no limit)")
    g = parser.add_argument_group("models")
    g.add_argument("--model_name", help="serve one model under this name; --model_base_path is then its folder of versions (default: not set, every model folder under --model_base_path is served under its own name)")
    g.add_argument(
        "--model_base_path",
        help="folder of versions (<path>/<version>/saved_model.pb) with --model_name; otherwise a folder of models "
        "(<path>/<model>/<version>/...), each served under its folder name (default: saved_models)",
    )
    g.add_argument("--model_config_file", help="ModelServerConfig text proto listing models, version policies and version labels (instead of --model_name/--model_base_path)")
    g.add_argument(
        "--file_system_poll_wait_seconds", type=float, default=1.0,
        help="how often to look for new or removed versions (default 1); a new version is loaded and warmed up before the old one is unloaded; 0 = never",
    )
    g.add_argument(
        "--prefer_tflite_model", type=_bool, nargs="?", const=True, default=False, metavar="BOOL",
        help="serve <version>/model.tflite when a version has one (quantized variants from `llmos compress`), with the "
        "version's own tokenizer in front: same signature, same APIs (default false)",
    )
    g.add_argument("--enable_model_warmup", type=_bool, default=True, metavar="BOOL", help="replay assets.extra/tf_serving_warmup_requests before a version serves (default true)")
    g = parser.add_argument_group("performance")
    g.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False, metavar="BOOL", help="merge concurrent requests into one model call (default false)")
    g.add_argument(
        "--batching_parameters_file",
        help="BatchingParameters text proto, e.g. 'max_batch_size { value: 32 } batch_timeout_micros { value: 2000 } "
        "num_batch_threads { value: 2 } max_enqueued_batches { value: 100 }'",
    )
    g.add_argument("--grpc_max_threads", type=int, default=32, help="gRPC worker threads (default 32)")
    g.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0, metavar="N",
                   help="threads one TensorFlow op may use (default 0: TensorFlow picks, one per core). With batching, "
                        "1 and num_batch_threads = cores runs batches side by side instead of splitting small ops across "
                        "cores: the distilled BiLSTM used half the CPU per call that way")
    g.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0, metavar="N",
                   help="threads running independent TensorFlow ops of one call in parallel (default 0: TensorFlow picks)")
    g = parser.add_argument_group("monitoring and safety")
    g.add_argument(
        "--monitoring_config_file",
        help="MonitoringConfig text proto 'prometheus_config { enable: true path: \"/monitoring/prometheus/metrics\" }'; "
        "without it metrics are on at /monitoring/prometheus/metrics on the REST port",
    )
    g.add_argument("--auth_token_file", help="file with one bearer token; clients must send 'authorization: Bearer <token>' (gRPC metadata / HTTP header)")
    g.add_argument("--max_request_bytes", type=int, default=16 * 1024 * 1024, help="largest request accepted, in bytes (default 16 MiB); larger: RESOURCE_EXHAUSTED / HTTP 413")
    g.add_argument("--max_instances_per_request", type=int, default=4096, help="most texts in one request (default 4096; 0 = no limit); more: INVALID_ARGUMENT / HTTP 400")


def options_from_args(args: argparse.Namespace):
    from llmos_tf.serving.server import ServerOptions

    return ServerOptions(
        port=args.port,
        rest_api_port=args.rest_api_port or None,
        host=args.host,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        model_config_file=args.model_config_file,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        enable_batching=args.enable_batching,
        batching_parameters_file=args.batching_parameters_file,
        monitoring_config_file=args.monitoring_config_file,
        enable_model_warmup=args.enable_model_warmup,
        auth_token_file=args.auth_token_file,
        max_request_bytes=args.max_request_bytes,
        max_instances_per_request=args.max_instances_per_request,
        grpc_max_threads=args.grpc_max_threads,
        prefer_tflite_model=args.prefer_tflite_model,
        tensorflow_intra_op_parallelism=args.tensorflow_intra_op_parallelism,
        tensorflow_inter_op_parallelism=args.tensorflow_inter_op_parallelism,
    )


def check_serve_flags(args: argparse.Namespace) -> None:
    """The flag mistakes that need no model loaded, found before TensorFlow is imported (which takes
    seconds): conflicting model flags, a missing base path, a missing proto or token file.
    The server checks the same things again when it is built from Python."""
    from llmos_tf.errors import ConfigError

    if args.model_config_file and (args.model_base_path or args.model_name):
        raise ConfigError("give either --model_config_file or --model_name/--model_base_path, not both")
    if not args.model_config_file:
        base = pathlib.Path(args.model_base_path or DEFAULT_BASE_PATH)
        if not base.is_dir():
            where = "--model_base_path" if args.model_base_path else f"--model_base_path (default {DEFAULT_BASE_PATH})"
            raise ConfigError(f"{where}: {base} is not a folder (expected <base>/<model>/<version>/saved_model.pb); "
                              "export a run first: llmos export --run runs/<name> --model_base_path saved_models --name <name>")
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file", "auth_token_file"):
        value = getattr(args, flag)
        if value and not pathlib.Path(value).is_file():
            raise ConfigError(f"--{flag}: {value} does not exist")
    for flag in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
        if getattr(args, flag) < 0:
            raise ConfigError(f"--{flag}: expected 0 (TensorFlow picks) or a positive number of threads, got {getattr(args, flag)}")
    if args.batching_parameters_file and not args.enable_batching:
        raise ConfigError("--batching_parameters_file needs --enable_batching")


def run_serve(args: argparse.Namespace) -> int:
    """Start the server, print the ready line, block until SIGTERM/SIGINT, drain, return 0."""
    check_serve_flags(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from llmos_tf.serving.server import ModelServer

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = ModelServer(options_from_args(args))
    server.start()
    try:
        print(json.dumps({"event": "ready", **server.describe()}), flush=True)
        while not stop.wait(1.0):
            pass
        logging.getLogger("llmos_tf.serving").info("signal received: draining in-flight requests")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps({"event": "stopped"}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmos_tf.serving",
        description="A TF-Serving-compatible model server (gRPC PredictionService/ModelService and REST API).",
        epilog="example:\n  python -m llmos_tf.serving --model_base_path saved_models --port 8500 --rest_api_port 8501",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    from llmos_tf.errors import LlmosError

    try:
        return run_serve(args)
    except LlmosError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
