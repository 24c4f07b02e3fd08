"""The gRPC listener: an asyncio (``grpc.aio``) server on its own thread, serving the servicers of ``grpc_service``.

Why asyncio: profiled under 32 concurrent single-sentence Predicts, the thread-per-RPC
``grpc.server`` spent more server CPU in grpc's Python loop (``_serve``, the hand-off to a pool
thread, the response path) than in TensorFlow. Here one event loop receives every RPC; a
batched Predict is validated on the loop, queued with :meth:`BatchScheduler.submit_nowait` and
*awaited*, so no thread sits blocked per request, and the answer is built on the loop too.

Everything else (unbatched Predict, Classify, metadata, model status, config reload) runs the
unchanged synchronous servicer methods on a thread pool of ``grpc_max_threads`` threads, so
both paths give the same answers, status codes and messages. The bearer token (``--auth_token_file``)
is checked before any of them runs.

Example::

    listener = AioGrpcListener(core, "127.0.0.1:0", max_threads=32)
    port = listener.start()
    ...
    listener.stop(grace=30.0)        # no new RPCs; in-flight ones finish (bounded by grace)
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent import futures
from typing import Any, Callable

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from llmos_tf.errors import ConfigError, LlmosError
from llmos_tf.serving.auth import check_bearer
from llmos_tf.serving.core import PredictionCore
from llmos_tf.serving.errors import ServingError
from llmos_tf.serving.grpc_service import (
    ModelServicer,
    PredictionServicer,
    model_spec_fields,
    predict_response,
    tensor_inputs,
)

log = logging.getLogger("llmos_tf.serving")
UNAUTHENTICATED_MESSAGE = "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'"


class _Abort(Exception):
    """Raised by :class:`_ThreadContext.abort` on a pool thread; the event loop turns it into the RPC's status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _ThreadContext:
    """The part of a ``ServicerContext`` the synchronous servicers use, safe to call from a pool thread."""

    def __init__(self, remaining: float | None) -> None:
        self._deadline = None if remaining is None else time.monotonic() + remaining

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Abort(code, details)

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())


def _remaining(context) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e8 else None


class AioGrpcListener:
    """PredictionService + ModelService on a ``grpc.aio`` server whose event loop runs on a daemon thread."""

    def __init__(self, core: PredictionCore, address: str, *, max_threads: int = 32, token: str | None = None,
                 max_request_bytes: int = -1) -> None:
        self.core, self.address, self.token, self.max_request_bytes = core, address, token, max_request_bytes
        self.pool = futures.ThreadPoolExecutor(max_workers=max(1, max_threads), thread_name_prefix="llmos-grpc")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llmos-grpc-loop", daemon=True)
        self._server: grpc.aio.Server | None = None

    def start(self, timeout: float = 30.0) -> int:
        """Listen; the bound port. ConfigError when the address cannot be bound."""
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout)
        except (RuntimeError, ConfigError):
            self._shutdown_loop()
            raise ConfigError(f"--port: cannot listen on {self.address} (in use?)") from None

    async def _start(self) -> int:
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", self.max_request_bytes),
                                                ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self._async_servicer(PredictionServicer(self.core)), self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self._async_servicer(ModelServicer(self.core)), self._server)
        port = self._server.add_insecure_port(self.address)
        if port == 0:
            raise ConfigError(f"cannot listen on {self.address}")
        await self._server.start()
        return port

    def stop(self, grace: float) -> futures.Future:
        """Stop accepting RPCs; the returned future is done when in-flight RPCs have finished (or ``grace`` ran out)."""
        if self._server is None:
            done: futures.Future = futures.Future()
            done.set_result(None)
            return done
        return asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)

    def close(self, timeout: float = 5.0) -> None:
        """After :meth:`stop` completed: end the event loop and the thread pool."""
        self._shutdown_loop(timeout)
        self.pool.shutdown(wait=False)

    def _shutdown_loop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    # -- the servicers ---------------------------------------------------------------------------
    def _async_servicer(self, servicer: Any) -> Any:
        """An object with an ``async`` method per RPC of ``servicer`` (what ``add_*_to_server`` registers on an aio server)."""
        base = type(servicer).__mro__[1]  # the generated *Servicer class: its methods are the RPC names
        methods = {name: self._threaded(getattr(servicer, name)) for name in vars(base) if not name.startswith("_")}
        if isinstance(servicer, PredictionServicer):
            methods["Predict"] = self._predict(methods["Predict"])
        return type(f"Async{type(servicer).__name__}", (base,), methods)()

    async def _authorize(self, context) -> None:
        if self.token is not None:
            metadata = dict(context.invocation_metadata() or ())
            if not check_bearer(metadata.get("authorization"), self.token):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

    def _threaded(self, method: Callable) -> Callable:
        """The synchronous servicer method, run on the pool; its ``context.abort`` becomes the RPC's status."""
        listener = self

        async def rpc(_self, request, context):
            await listener._authorize(context)
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(listener.pool, method, request, _ThreadContext(_remaining(context)))
            except _Abort as err:
                await context.abort(err.code, err.message)

        return rpc

    def _predict(self, threaded: Callable) -> Callable:
        """Predict on the event loop when batching is on (awaiting the batch), else the threaded servicer."""
        listener, core = self, self.core

        async def predict(_self, request, context):
            if core.scheduler is None:
                return await threaded(_self, request, context)
            await listener._authorize(context)
            try:
                name, version, label, signature = model_spec_fields(request.model_spec)
                inputs = tensor_inputs(request.inputs)
                result = await core.predict_async(name, inputs, version=version, label=label, signature=signature,
                                                  timeout=_remaining(context), executor=listener.pool)
                return predict_response(request, result, name, signature)
            except ServingError as err:
                status, message = err.code, err.message
            except LlmosError as err:
                status, message = grpc.StatusCode.INVALID_ARGUMENT, str(err)
            except Exception as err:  # keep serving; report the failure to this client only
                log.exception("Predict failed")
                status, message = grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}"
            await context.abort(status, message)

        return predict
