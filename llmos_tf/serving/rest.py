"""REST front end: TF Serving's ``/v1/models/...`` API and the Prometheus endpoint.

Routes (as in TF Serving)::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    {"instances": ...} or {"inputs": ...}
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   {"examples": [{"text": ...}]}
    GET  /monitoring/prometheus/metrics                          (path from --monitoring_config_file)

Errors are ``{"error": "..."}`` with 400/401/404/413/429/501/504/500. Built on the
standard library's ``ThreadingHTTPServer``: one thread per connection, keep-alive
on, which is plenty next to a TensorFlow model call.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from llmos_tf.errors import LlmosError
from llmos_tf.serving import json_codec
from llmos_tf.serving.auth import check_bearer
from llmos_tf.serving.core import PredictionCore
from llmos_tf.serving.errors import ServingError, invalid_argument
from llmos_tf.serving.grpc_service import build_metadata_response, build_status_response

log = logging.getLogger("llmos_tf.serving")

ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>predict|classify|regress)|/(?P<meta>metadata))?$"
)


class RestOptions:
    def __init__(self, token: str | None, max_request_bytes: int, timeout_ms: int, metrics_path: str | None) -> None:
        self.token = token
        self.max_request_bytes = max_request_bytes
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        self.metrics_path = metrics_path


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class RestServer(ThreadingHTTPServer):
    """Owns the handler's collaborators and counts in-flight requests for graceful drain."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # listen backlog; the default 5 drops connections under load

    def __init__(self, address: tuple[str, int], core: PredictionCore, options: RestOptions) -> None:
        self.core = core
        self.options = options
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="llmos-rest")
        self.inflight = 0
        self.draining = False
        self._cond = threading.Condition()
        super().__init__(address, RestHandler)

    def enter(self) -> bool:
        with self._cond:
            if self.draining:
                return False
            self.inflight += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self.inflight -= 1
            self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Stop accepting, wait for in-flight requests (bounded), close."""
        with self._cond:
            self.draining = True
        self.shutdown()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.inflight > 0 and time.monotonic() < deadline:
                self._cond.wait(timeout=0.1)
            done = self.inflight == 0
        self.server_close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        return done


class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RestServer
    server_version = "llmos-serve"
    timeout = 60  # idle keep-alive connections close after this

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default, like TF Serving
        log.debug("%s - %s", self.address_string(), format % args)

    # -- plumbing ----------------------------------------------------------
    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body, indent=None).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="llmos-serve"')
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def _dispatch(self, method: str) -> None:
        if not self.server.enter():
            self.close_connection = True
            self._error(503, "server is shutting down")
            return
        try:
            self._route(method)
        except HttpError as err:
            self._error(err.status, err.message)
        except ServingError as err:
            self._error(err.http_status, err.message)
        except LlmosError as err:
            self._error(400, str(err))
        except Exception as err:
            log.exception("REST %s %s failed", method, self.path)
            self._error(500, f"{type(err).__name__}: {err}")
        finally:
            self.server.leave()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        limit = self.server.options.max_request_bytes
        if limit and length > limit:
            self.close_connection = True
            raise HttpError(413, f"request body is {length} bytes; the limit is {limit} (--max_request_bytes)")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            raise HttpError(400, "empty request body; send JSON like {\"instances\": [\"some text\"]}")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise HttpError(400, f"malformed JSON in request body: {err}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        return body

    def _run(self, fn, *args, **kwargs):
        """Run a model call with --rest_api_timeout_in_ms (504 when exceeded)."""
        timeout = self.server.options.timeout
        future = self.server.executor.submit(fn, *args, timeout=timeout, **kwargs)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise HttpError(504, f"request timed out after {timeout * 1000:.0f} ms (--rest_api_timeout_in_ms)") from None

    # -- routes ------------------------------------------------------------
    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        options = self.server.options
        if not check_bearer(self.headers.get("Authorization"), options.token):
            if method == "POST":
                self.close_connection = True
            raise HttpError(401, "missing or wrong bearer token: send header 'Authorization: Bearer <token>'")
        if options.metrics_path and path == options.metrics_path and method == "GET":
            self._send(200, self.server.core.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            return
        match = ROUTE.match(path)
        if not match:
            raise HttpError(404, f"Malformed request: {method} {path}")
        name, label, verb, meta = match["name"], match["label"], match["verb"], match["meta"]
        version = int(match["version"]) if match["version"] else None
        registry = self.server.core.registry
        if method == "GET" and not verb:
            if meta:
                with self.server.core.measured(name, "GetModelMetadata", "REST") as info:
                    with registry.acquire(name, version, label) as servable:
                        info["version"] = servable.version
                        self._send(200, metadata_json(build_metadata_response(servable)))
                return
            spec = model_pb2.ModelSpec(name=name)
            if version is not None:
                spec.version.value = version
            elif label:
                spec.version_label = label
            response = build_status_response(registry, spec)
            self._send(200, json_format.MessageToDict(response, always_print_fields_with_no_presence=True, preserving_proto_field_name=True))
            return
        if method != "POST" or not verb:
            raise HttpError(405 if verb or meta else 404, f"Malformed request: {method} {path}")
        body = self._body()
        signature = body.get("signature_name", "")
        if not isinstance(signature, str):
            raise invalid_argument('"signature_name" must be a string')
        if verb == "predict":
            self._predict(name, version, label, signature, body)
        elif verb == "classify":
            self._classify(name, version, label, signature, body)
        else:
            raise HttpError(501, "regress is not implemented by llmos serve; use :predict")

    def _predict(self, name: str, version: int | None, label: str | None, signature: str, body: dict) -> None:
        row_format = "instances" in body

        def build(servable, sig):
            return json_codec.request_inputs(body, servable, sig)

        result = self._run(self.server.core.predict, name, build, version=version, label=label, signature=signature, entrypoint="REST")
        if row_format:
            rows = len(body["instances"])
            self._send(200, {"predictions": json_codec.predictions(result.outputs, rows)})
        else:
            self._send(200, {"outputs": json_codec.columnar(result.outputs)})

    def _classify(self, name: str, version: int | None, label: str | None, signature: str, body: dict) -> None:
        examples = body.get("examples")
        if not isinstance(examples, list) or not examples or not all(isinstance(e, dict) for e in examples):
            raise invalid_argument('"examples" must be a non-empty list of objects like {"text": "..."}')
        context = body.get("context") or {}
        protos = []
        for example in examples:
            merged = dict(context)
            merged.update(example)
            protos.append(json_codec.example_from_json(merged))
        texts = [p.features.feature["text"].bytes_list.value[0] if "text" in p.features.feature and p.features.feature["text"].bytes_list.value else None for p in protos]
        _, rows = self._run(
            self.server.core.classify, name, [p.SerializeToString() for p in protos], texts,
            version=version, label=label, signature=signature, entrypoint="REST",
        )
        self._send(200, {"results": [[[c, s] for c, s in row] for row in rows]})


def metadata_json(response) -> dict[str, Any]:
    """TF Serving's REST metadata shape: ``{"model_spec": ..., "metadata": {"signature_def": {"signature_def": ...}}}``."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return {
        "model_spec": json_format.MessageToDict(response.model_spec, always_print_fields_with_no_presence=True, preserving_proto_field_name=True),
        "metadata": {"signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)},
    }
