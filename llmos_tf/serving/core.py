"""The request path both front ends share: resolve, validate, limit, batch, run, measure.

gRPC and REST only translate their wire formats into ``dict[str, np.ndarray]``
and back; everything that decides an answer lives here once, so the two APIs
cannot drift apart (same errors, same metrics, same batching).
"""
from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.serving.batching import BatchScheduler, deadline_exceeded
from llmos_tf.serving.errors import ServingError, failed_precondition, invalid_argument
from llmos_tf.serving.metrics import Metrics
from llmos_tf.serving.registry import ModelRegistry
from llmos_tf.serving.servable import Servable

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classify"


# lines of a TensorFlow runtime error that say where, not what (graph mode: the reason comes after them)
_TF_ERROR_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[{{")


def tf_error_summary(err: Exception, limit: int = 500) -> str:
    """The line of a TensorFlow error that says what went wrong -- e.g. a ``tf.debugging.assert_*`` message
    from inside a SavedModel (``assertion failed: [search: k must be at least 1] ...``) -- not the
    ``Graph execution error:`` header that graph-mode errors start with."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_TF_ERROR_NOISE) and not line.startswith("File ")]
    return (useful or lines or [type(err).__name__])[0][:limit]


@dataclass
class Result:
    model: str
    version: int
    outputs: dict[str, np.ndarray]


class PredictionCore:
    """Runs Predict and Classify requests against the registry."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, scheduler: BatchScheduler | None = None, max_instances: int = 0) -> None:
        self.registry = registry
        self.metrics = metrics
        self.scheduler = scheduler
        self.max_instances = max_instances

    @contextmanager
    def measured(self, model: str, api: str, entrypoint: str) -> Iterator[dict]:
        """Count and time one request under TF Serving's metric names, whatever its outcome."""
        info = {"version": ""}
        started = time.monotonic()
        status = "OK"
        try:
            yield info
        except ServingError as err:
            status = err.code.name
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            labels = {"model_name": model, "version": str(info["version"]), "API": api, "entrypoint": entrypoint, "status": status}
            self.metrics.request_count.inc(**labels)
            self.metrics.request_latency.observe((time.monotonic() - started) * 1e6, **labels)

    def predict(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray] | Callable[[Servable, str], Mapping[str, np.ndarray]],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        entrypoint: str = "GRPC",
        timeout: float | None = None,
    ) -> Result:
        with self.measured(model, "predict", entrypoint) as info:
            with self.registry.acquire(model, version, label) as servable:
                info["version"] = servable.version
                signature = signature or DEFAULT_SIGNATURE
                if callable(inputs):  # REST: JSON becomes arrays only once the signature's dtypes are known
                    servable.check_signature(signature)
                    inputs = inputs(servable, signature)
                outputs = self.run(servable, signature, inputs, api="predict", timeout=timeout)
                return Result(model, servable.version, outputs)

    def run(self, servable: Servable, signature: str, inputs: Mapping[str, np.ndarray], api: str, timeout: float | None = None) -> dict[str, np.ndarray]:
        rows = self._admit(servable, signature, inputs)
        started = time.monotonic()
        call = functools.partial(servable.run, signature)
        try:
            if self.scheduler is not None:
                return self.scheduler.submit((servable.name, servable.version, signature), call, inputs, rows, timeout=timeout)
            return call(inputs)
        except ServingError:
            raise
        except Exception as err:  # TensorFlow rejected the inputs at run time
            raise _runtime_error(err, servable, signature) from None
        finally:
            self._observe_runtime(servable, api, started)

    async def predict_async(self, model: str, inputs: Mapping[str, np.ndarray], *, version: int | None = None, label: str | None = None,
                            signature: str = "", timeout: float | None = None, executor: Executor | None = None) -> Result:
        """:meth:`predict` for the asyncio gRPC front end: same checks, errors and metrics, but a batched
        request waits as an awaited future (no thread blocked per request); unbatched calls run on ``executor``."""
        loop = asyncio.get_running_loop()
        if self.scheduler is None:
            call = functools.partial(self.predict, model, inputs, version=version, label=label, signature=signature, timeout=timeout)
            return await loop.run_in_executor(executor, call)
        with self.measured(model, "predict", "GRPC") as info:
            with self.registry.acquire(model, version, label) as servable:
                info["version"] = servable.version
                signature = signature or DEFAULT_SIGNATURE
                rows = self._admit(servable, signature, inputs)
                started = time.monotonic()
                key = (servable.name, servable.version, signature)
                call = functools.partial(servable.run, signature)
                try:
                    future = self.scheduler.submit_nowait(key, call, inputs, rows)
                    if future is None:  # draining
                        outputs = await loop.run_in_executor(executor, call, inputs)
                    else:
                        try:
                            outputs = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
                        except asyncio.TimeoutError:
                            raise deadline_exceeded(key, timeout) from None
                except ServingError:
                    raise
                except Exception as err:
                    raise _runtime_error(err, servable, signature) from None
                finally:
                    self._observe_runtime(servable, "predict", started)
                return Result(model, servable.version, outputs)

    def _admit(self, servable: Servable, signature: str, inputs: Mapping[str, np.ndarray]) -> int:
        """Validate the inputs against the signature and the instance limit; the batch size."""
        rows = servable.validate(signature, inputs)
        if self.max_instances and rows > self.max_instances:
            raise invalid_argument(f"request has {rows} instances; this server accepts at most {self.max_instances} (--max_instances_per_request)")
        return rows

    def _observe_runtime(self, servable: Servable, api: str, started: float) -> None:
        self.metrics.runtime_latency.observe(
            (time.monotonic() - started) * 1e6, model_name=servable.name, version=str(servable.version), API=api, runtime="TF"
        )

    def classify(
        self,
        model: str,
        examples: Sequence[bytes],
        texts: Sequence[bytes | None],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        entrypoint: str = "GRPC",
        timeout: float | None = None,
    ) -> tuple[int, list[list[tuple[str, float]]]]:
        """TF Serving's Classify: a ``classify`` signature on serialized tf.Examples, or the
        classifier contract (``text`` -> ``probabilities`` + ``assets/labels.txt``) on each
        Example's ``text`` feature."""
        with self.measured(model, "classify", entrypoint) as info:
            if not examples:
                raise invalid_argument("Classify request has no examples")
            with self.registry.acquire(model, version, label) as servable:
                info["version"] = servable.version
                name = signature or DEFAULT_SIGNATURE
                if not _is_example_classifier(servable, name) and not signature and _is_example_classifier(servable, CLASSIFY_SIGNATURE):
                    name = CLASSIFY_SIGNATURE
                servable.check_signature(name)
                if _is_example_classifier(servable, name):
                    (input_name,) = servable.inputs[name]
                    out = self.run(servable, name, {input_name: np.array(list(examples), dtype=object)}, api="classify", timeout=timeout)
                    scores = np.asarray(out.get("scores"))
                    classes = out.get("classes")
                    if classes is None:
                        classes = np.array([[str(i).encode() for i in range(scores.shape[1])]] * scores.shape[0], dtype=object)
                    return servable.version, [
                        [(c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c), float(s)) for c, s in zip(cr, sr)]
                        for cr, sr in zip(classes, scores)
                    ]
                if "text" in servable.inputs[name] and "probabilities" in servable.outputs[name]:
                    if any(t is None for t in texts):
                        raise invalid_argument("every Example needs a bytes feature 'text' for this model's Classify")
                    out = self.run(servable, name, {"text": np.array(list(texts), dtype=object)}, api="classify", timeout=timeout)
                    probs = np.asarray(out["probabilities"])
                    names = servable.labels_for(name) or [str(i) for i in range(probs.shape[1])]
                    return servable.version, [[(names[i], float(p)) for i, p in enumerate(row)] for row in probs]
                raise failed_precondition(
                    f"signature {name!r} of {model} is not a classification signature (needs input 'inputs' -> outputs "
                    f"'classes'/'scores', or input 'text' -> output 'probabilities')"
                )


def _runtime_error(err: Exception, servable: Servable, signature: str) -> Exception:
    """INVALID_ARGUMENT for inputs TensorFlow rejected at run time; other errors unchanged."""
    if isinstance(err, (tf.errors.InvalidArgumentError, ValueError, TypeError)):
        return invalid_argument(f"{servable.name} version {servable.version}: {tf_error_summary(err)}; expected inputs: {servable.expected(signature)}")
    return err


def _is_example_classifier(servable: Servable, name: str) -> bool:
    inputs, outputs = servable.inputs.get(name), servable.outputs.get(name)
    return bool(inputs) and len(inputs) == 1 and bool(outputs) and "scores" in outputs and set(outputs) <= {"classes", "scores"}
