"""Server-side batching: concurrent requests for one model version run as one call.

The scheduler mirrors TF Serving's shared batch scheduler and reads its
``--batching_parameters_file`` text format::

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 2000 }
    num_batch_threads { value: 4 }
    max_enqueued_batches { value: 100 }

One queue per (model, version, signature). A queue is processed when it holds
``max_batch_size`` rows or its oldest request has waited ``batch_timeout_micros``;
``num_batch_threads`` workers run batches. Inputs are concatenated along the
batch dimension, the model is called once, and the outputs are split back by
row counts. Outputs are padded to the batch, exactly like TF Serving: a tagger's
``tags`` may be wider than the request alone would give (more "" padding).
More than ``max_enqueued_batches * max_batch_size`` queued rows -> RESOURCE_EXHAUSTED.
A request larger than ``max_batch_size`` runs alone, unsplit.

Example::

    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, batch_timeout_micros=1000))
    outputs = scheduler.submit(("m", 1, "serving_default"), servable.run_fn, {"text": texts}, rows=len(texts))
"""
from __future__ import annotations

import pathlib
import re
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable, Mapping

import grpc
import numpy as np

from llmos_tf.errors import ConfigError
from llmos_tf.serving.errors import ServingError, resource_exhausted
from llmos_tf.serving.metrics import Metrics

Key = tuple[str, int, str]
RunFn = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's defaults (``tensorflow_model_server --enable_batching`` without a file)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100

    @classmethod
    def parse(cls, text: str, source: str = "batching parameters") -> "BatchingParameters":
        """Parse the BatchingParameters text proto (``field { value: N }``); other known fields are accepted and ignored."""
        try:
            from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2  # not shipped by tensorflow-serving-api
            from google.protobuf import text_format

            proto = text_format.Parse(text, session_bundle_config_pb2.BatchingParameters())
            values = {f.name: getattr(proto, f.name).value for f, _ in proto.ListFields() if hasattr(getattr(proto, f.name), "value")}
        except ImportError:
            values = _parse_wrapped_fields(text, source)
        known = {k: int(v) for k, v in values.items() if k in cls.__dataclass_fields__}
        params = cls(**known)
        for name in cls.__dataclass_fields__:
            if getattr(params, name) < (0 if name == "batch_timeout_micros" else 1):
                raise ConfigError(f"{source}: {name} must be positive, got {getattr(params, name)}")
        return params

    @classmethod
    def read(cls, path: str | pathlib.Path) -> "BatchingParameters":
        path = pathlib.Path(path)
        if not path.is_file():
            raise ConfigError(f"--batching_parameters_file: {path} does not exist")
        return cls.parse(path.read_text(encoding="utf-8"), str(path))


_IGNORED = {"allowed_batch_sizes", "pad_variable_length_inputs", "thread_pool_name", "enable_large_batch_splitting",
            "max_execution_batch_size", "batch_timeout_micros_for_low_priority", "num_batch_threads_for_low_priority"}
_FIELD_RE = re.compile(r"([a-z_]+)\s*:?\s*\{\s*value\s*:\s*(-?\d+|true|false|\"[^\"]*\")\s*\}|([a-z_]+)\s*:\s*(-?\d+|true|false|\"[^\"]*\")")


def _parse_wrapped_fields(text: str, source: str) -> dict[str, int]:
    stripped = re.sub(r"#[^\n]*", "", text)
    values: dict[str, int] = {}
    consumed = _FIELD_RE.sub("", stripped)
    if consumed.strip():
        raise ConfigError(f"{source}: cannot parse {consumed.strip()[:60]!r}; expected lines like 'max_batch_size {{ value: 32 }}'")
    for match in _FIELD_RE.finditer(stripped):
        name = match.group(1) or match.group(3)
        value = match.group(2) or match.group(4)
        if name in BatchingParameters.__dataclass_fields__:
            values[name] = int(value)
        elif name not in _IGNORED:
            valid = ", ".join(sorted(BatchingParameters.__dataclass_fields__))
            raise ConfigError(f"{source}: unknown field {name!r}; valid fields: {valid}")
    return values


@dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: Future
    enqueued: float


class _Queue:
    def __init__(self, run: RunFn) -> None:
        self.run = run
        self.tasks: deque[_Task] = deque()
        self.rows = 0


class BatchScheduler:
    """Merges concurrent requests per model version and signature into batches."""

    def __init__(self, params: BatchingParameters, metrics: Metrics | None = None) -> None:
        self.params = params
        self.metrics = metrics
        self._queues: dict[Key, _Queue] = {}
        self._cond = threading.Condition()
        self._closing = False
        self._workers = [threading.Thread(target=self._work, name=f"llmos-batch-{i}", daemon=True) for i in range(params.num_batch_threads)]
        for worker in self._workers:
            worker.start()

    def submit(self, key: Key, run: RunFn, inputs: Mapping[str, np.ndarray], rows: int, timeout: float | None = None) -> dict[str, np.ndarray]:
        """Enqueue one request and block until its slice of the batch result is ready."""
        future = self.submit_nowait(key, run, inputs, rows)
        if future is None:  # draining: workers may be gone; a request that got this far still gets its answer
            return run(inputs)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()  # still queued: it is dropped, not run
            raise deadline_exceeded(key, timeout) from None

    def submit_nowait(self, key: Key, run: RunFn, inputs: Mapping[str, np.ndarray], rows: int) -> Future | None:
        """Enqueue one request without waiting: a future of its slice of the batch result, or ``None`` when
        the scheduler is draining (the caller runs the request itself). The asyncio gRPC front end awaits
        the future, so no thread sits blocked per request. A future cancelled while queued is dropped."""
        task = _Task(inputs, rows, Future(), time.monotonic())
        limit = self.params.max_enqueued_batches * self.params.max_batch_size
        with self._cond:
            if self._closing:
                return None
            self._enqueue(key, run, task, rows, limit)
        return task.future

    def _enqueue(self, key: Key, run: RunFn, task: "_Task", rows: int, limit: int) -> "_Queue":
        """Add a task to its queue (caller holds the lock); RESOURCE_EXHAUSTED when the queue is full."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(run)
        queue.run = run
        if queue.rows + rows > limit and queue.rows > 0:
            raise resource_exhausted(
                f"The batch scheduling queue for {key[0]} version {key[1]} is full ({queue.rows} rows queued, limit "
                f"max_enqueued_batches*max_batch_size = {limit}); retry later"
            )
        queue.tasks.append(task)
        queue.rows += rows
        self._cond.notify_all()
        return queue

    def _ready(self, now: float) -> tuple[Key | None, float]:
        """The key of a queue ready to run, else how long until one might be."""
        timeout = self.params.batch_timeout_micros / 1e6
        wait = 3600.0
        for key, queue in self._queues.items():
            if not queue.tasks:
                continue
            due = queue.tasks[0].enqueued + timeout
            if queue.rows >= self.params.max_batch_size or due <= now or self._closing:
                return key, 0.0
            wait = min(wait, due - now)
        return None, wait

    def _take(self, key: Key) -> tuple[_Queue, list[_Task]]:
        queue = self._queues[key]
        batch = [queue.tasks.popleft()]
        rows = batch[0].rows
        while queue.tasks and rows + queue.tasks[0].rows <= self.params.max_batch_size:
            task = queue.tasks.popleft()
            rows += task.rows
            batch.append(task)
        queue.rows -= rows
        # a request whose client gave up (its future cancelled) is not run; the others can no longer be cancelled
        return queue, [task for task in batch if task.future.set_running_or_notify_cancel()]

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    key, wait = self._ready(time.monotonic())
                    if key is not None:
                        queue, batch = self._take(key)
                        break
                    if self._closing:
                        return
                    self._cond.wait(timeout=wait)
            if batch:
                self._run(key, queue.run, batch)

    def _run(self, key: Key, run: RunFn, batch: list[_Task]) -> None:
        started = time.monotonic()
        labels = {"model_name": key[0], "version": str(key[1]), "signature": key[2]}
        total = sum(t.rows for t in batch)
        if self.metrics is not None:
            for task in batch:
                self.metrics.queuing_latency.observe((started - task.enqueued) * 1e6, **labels)
            self.metrics.processed_batch_size.observe(total, **labels)
        try:
            if len(batch) == 1:
                merged = batch[0].inputs
            else:
                merged = {name: np.concatenate([t.inputs[name] for t in batch], axis=0) for name in batch[0].inputs}
            outputs = run(merged)
        except BaseException as err:  # every waiting request gets the error
            for task in batch:
                task.future.set_exception(err)
            return
        offset = 0
        for task in batch:
            part = {}
            for name, value in outputs.items():
                part[name] = value[offset : offset + task.rows] if np.ndim(value) and np.shape(value)[0] == total else value
            offset += task.rows
            task.future.set_result(part)

    def close(self, timeout: float = 30.0) -> None:
        """Run what is queued now (no more waiting for timeouts), then stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))


def deadline_exceeded(key: Key, timeout: float | None) -> ServingError:
    """DEADLINE_EXCEEDED for a request that waited its whole deadline in a batching queue."""
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, f"request to {key[0]} timed out after {timeout or 0:.3f}s in the batching queue")
