"""``ModelServer``: the registry plus gRPC and REST front ends, started and drained as one.

Used by ``llmos serve`` and in-process by tests and notebooks::

    server = ModelServer(ServerOptions(model_base_path="saved_models", port=0, rest_api_port=0))
    server.start()                      # loads (and warms up) every model first
    print(server.grpc_port, server.rest_port)
    ...
    server.stop()                       # stop accepting, finish in-flight requests

Stopping is graceful, as Kubernetes expects on SIGTERM: listeners close first,
queued batches run at once, in-flight requests finish (bounded by ``grace``).
"""
from __future__ import annotations

import logging
import pathlib
import re
import threading
from dataclasses import dataclass

from llmos_tf.errors import ConfigError
from llmos_tf.serving import model_config
from llmos_tf.serving.auth import read_token
from llmos_tf.serving.batching import BatchingParameters, BatchScheduler
from llmos_tf.serving.core import PredictionCore
from llmos_tf.serving.grpc_aio import AioGrpcListener
from llmos_tf.serving.metrics import Metrics
from llmos_tf.serving.registry import ModelRegistry
from llmos_tf.serving.rest import RestOptions, RestServer
from llmos_tf.serving.warmup import warm_up

log = logging.getLogger("llmos_tf.serving")
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
DEFAULT_BASE_PATH = "saved_models"


@dataclass
class ServerOptions:
    """``tensorflow_model_server``'s flags that apply, with its defaults (except ``rest_api_port``)."""

    port: int = 8500  # 0 = any free port (read it from .grpc_port)
    rest_api_port: int | None = 8501  # None = no REST API; 0 = any free port (.rest_port)
    host: str = "127.0.0.1"
    rest_api_timeout_in_ms: int = 30000
    model_name: str | None = None
    model_base_path: str | None = None
    model_config_file: str | None = None
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    monitoring_config_file: str | None = None
    enable_model_warmup: bool = True
    auth_token_file: str | None = None
    max_request_bytes: int = 16 * 1024 * 1024
    max_instances_per_request: int = 4096
    grpc_max_threads: int = 32
    prefer_tflite_model: bool = False
    tensorflow_intra_op_parallelism: int = 0  # 0 = TensorFlow's default (one thread per core)
    tensorflow_inter_op_parallelism: int = 0


def read_monitoring_config(path: str | None) -> str | None:
    """Metrics path from a MonitoringConfig text proto; ``None`` = disabled. No file: enabled at the default path."""
    if not path:
        return DEFAULT_METRICS_PATH
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"--monitoring_config_file: {file} does not exist")
    text = re.sub(r"#[^\n]*", "", file.read_text(encoding="utf-8"))
    block = re.search(r"prometheus_config\s*:?\s*\{([^}]*)\}", text)
    if block is None:
        raise ConfigError(f"{file}: expected 'prometheus_config {{ enable: true path: \"{DEFAULT_METRICS_PATH}\" }}'")
    enable = re.search(r"enable\s*:\s*(true|false|1|0)", block.group(1))
    if not enable or enable.group(1) in ("false", "0"):
        return None
    custom = re.search(r"path\s*:\s*\"([^\"]*)\"", block.group(1))
    metrics_path = custom.group(1) if custom and custom.group(1) else DEFAULT_METRICS_PATH
    if not metrics_path.startswith("/"):
        raise ConfigError(f"{file}: prometheus_config.path must start with '/', got {metrics_path!r}")
    return metrics_path


def set_tf_threads(intra_op: int, inter_op: int) -> None:
    """TF Serving's ``--tensorflow_intra_op_parallelism`` / ``--tensorflow_inter_op_parallelism`` (0 = leave as is).

    TensorFlow fixes its thread pools when its runtime starts, so this works in a fresh server process
    (``llmos serve``); in a process that already ran TensorFlow ops it is refused with the reason."""
    from llmos_tf._tf import tf

    for value, current, setter, flag in (
        (intra_op, tf.config.threading.get_intra_op_parallelism_threads, tf.config.threading.set_intra_op_parallelism_threads, "intra"),
        (inter_op, tf.config.threading.get_inter_op_parallelism_threads, tf.config.threading.set_inter_op_parallelism_threads, "inter"),
    ):
        if value < 0:
            raise ConfigError(f"--tensorflow_{flag}_op_parallelism: expected 0 or a positive number of threads, got {value}")
        if value and value != current():
            try:
                setter(value)
            except RuntimeError:
                raise ConfigError(f"--tensorflow_{flag}_op_parallelism {value}: TensorFlow already started in this process with "
                                  f"{current() or 'its default'} threads; set it when the server process starts") from None


def resolve_models(options: ServerOptions) -> tuple[list[model_config.ModelConfig], pathlib.Path | None]:
    """(explicit models, root to discover models under)."""
    if options.model_config_file:
        if options.model_base_path or options.model_name:
            raise ConfigError("give either --model_config_file or --model_name/--model_base_path, not both")
        return model_config.read_config_file(options.model_config_file), None
    base = pathlib.Path(options.model_base_path or DEFAULT_BASE_PATH)
    if not base.is_dir():
        raise ConfigError(f"--model_base_path: {base} is not a folder (expected <base>/<model>/<version>/saved_model.pb)")
    single = model_config.single_model(options.model_name, base)
    if single is not None:
        return single, None
    return [], base


class ModelServer:
    """Registry + batching + metrics + gRPC + REST, with ``start``/``stop``."""

    def __init__(self, options: ServerOptions | None = None, **overrides) -> None:
        self.options = options or ServerOptions()
        for key, value in overrides.items():
            if not hasattr(self.options, key):
                raise ConfigError(f"ModelServer: unknown option {key!r}")
            setattr(self.options, key, value)
        opts = self.options
        self.metrics = Metrics()
        self.metrics_path = read_monitoring_config(opts.monitoring_config_file)
        self.token = read_token(opts.auth_token_file)
        models, root = resolve_models(opts)
        set_tf_threads(opts.tensorflow_intra_op_parallelism, opts.tensorflow_inter_op_parallelism)
        self.scheduler = None
        if opts.enable_batching:
            params = BatchingParameters.read(opts.batching_parameters_file) if opts.batching_parameters_file else BatchingParameters()
            self.scheduler = BatchScheduler(params, self.metrics)
        elif opts.batching_parameters_file:
            raise ConfigError("--batching_parameters_file needs --enable_batching")

        def on_load(name: str, version: int, ok: bool) -> None:
            self.metrics.load_attempt_count.inc(model_name=name, version=str(version), status="OK" if ok else "ERROR")

        self.registry = ModelRegistry(models, discover_root=root, warmup=warm_up if opts.enable_model_warmup else None, on_load=on_load,
                                      prefer_tflite_model=opts.prefer_tflite_model)
        self.core = PredictionCore(self.registry, self.metrics, self.scheduler, opts.max_instances_per_request)
        self.grpc_server: AioGrpcListener | None = None
        self.rest_server: RestServer | None = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._stopped = threading.Event()

    def start(self) -> "ModelServer":
        opts = self.options
        self.registry.sync(strict_labels=True)
        self.registry.start_polling(opts.file_system_poll_wait_seconds)
        limit = opts.max_request_bytes if opts.max_request_bytes > 0 else -1
        self.grpc_server = AioGrpcListener(self.core, f"{opts.host}:{opts.port}", max_threads=opts.grpc_max_threads,
                                           token=self.token, max_request_bytes=limit)
        self.grpc_port = self.grpc_server.start()
        if opts.rest_api_port is not None:  # None = off (the CLI maps --rest_api_port 0 to None); 0 = any free port
            rest_options = RestOptions(self.token, opts.max_request_bytes, opts.rest_api_timeout_in_ms, self.metrics_path)
            try:
                self.rest_server = RestServer((opts.host, opts.rest_api_port), self.core, rest_options)
            except OSError as err:
                self.grpc_server.stop(0).result(5)
                self.grpc_server.close()
                raise ConfigError(f"--rest_api_port: cannot listen on {opts.host}:{opts.rest_api_port}: {err}") from None
            self.rest_port = self.rest_server.server_address[1]
            threading.Thread(target=self.rest_server.serve_forever, kwargs={"poll_interval": 0.2}, name="llmos-rest", daemon=True).start()
        log.info("serving gRPC on %s:%s, REST on %s", opts.host, self.grpc_port, self.rest_port or "off")
        return self

    def stop(self, grace: float = 30.0) -> None:
        """Graceful drain: close listeners, run queued batches now, let in-flight requests finish."""
        if self._stopped.is_set():
            return
        grpc_done = self.grpc_server.stop(grace) if self.grpc_server else None
        if self.scheduler is not None:
            self.scheduler.close(timeout=grace)
        if self.rest_server is not None:
            self.rest_server.drain(timeout=grace)
        if grpc_done is not None:
            try:
                grpc_done.result(grace + 1.0)
            except Exception:  # grace ran out: the listener is closed below anyway
                log.warning("gRPC drain did not finish within %.1fs", grace)
            self.grpc_server.close()
        self.registry.stop()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def describe(self) -> dict:
        models = {}
        for name in self.registry.model_names():
            models[name] = {
                "versions": {str(r.version): _state_name(r.state) for r in self.registry.status(name)},
                "labels": self.registry.labels(name),
            }
        return {"grpc_port": self.grpc_port, "rest_port": self.rest_port, "host": self.options.host, "models": models}

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _state_name(state: int) -> str:
    from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

    return ModelVersionStatus.State.Name(state)
