"""Prometheus metrics under TF Serving's names, written in the text exposition format.

TF Serving exports ``:tensorflow:serving:request_count``, ``request_latency``,
``runtime_latency`` and the batching session's ``queuing_latency`` /
``processed_batch_size`` at ``/monitoring/prometheus/metrics``; dashboards built
for it work unchanged against ``llmos serve``. The format is small enough to
write by hand (no ``prometheus_client`` dependency). Latencies are in
microseconds, as in TF Serving.

Example::

    m = Metrics()
    m.request_count.inc(model_name="sst2", version="1", API="predict", entrypoint="GRPC", status="OK")
    text = m.render()
"""
from __future__ import annotations

import bisect
import threading
from typing import Sequence

# TF Serving: ExponentialBuckets(scale=10us, growth=1.8, count=33)
LATENCY_BUCKETS_US = tuple(10.0 * 1.8**i for i in range(33))
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(13))


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}" if pairs else ""


def _num(x: float) -> str:
    return repr(float(x)) if x != int(x) else str(int(x))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]):
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(str(labels.get(n, "")) for n in self.label_names)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, value in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(list(zip(self.label_names, key)))} {_num(value)}")
        return lines


class Histogram:
    """Cumulative buckets, ``_sum`` and ``_count`` per label set."""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str], buckets: Sequence[float]):
        self.name, self.help, self.label_names = name, help_text, tuple(label_names)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(str(labels.get(n, "")) for n in self.label_names)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.setdefault(key, [[0] * (len(self.buckets) + 1), 0.0, 0])
            series[0][index] += 1
            series[1] += value
            series[2] += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, (counts, total, count) in sorted(self._series.items()):
                pairs = list(zip(self.label_names, key))
                running = 0
                for bound, c in zip(self.buckets + (float("inf"),), counts):
                    running += c
                    le = "+Inf" if bound == float("inf") else _num(bound)
                    lines.append(f"{self.name}_bucket{_labels(pairs + [('le', le)])} {running}")
                lines.append(f"{self.name}_sum{_labels(pairs)} {_num(total)}")
                lines.append(f"{self.name}_count{_labels(pairs)} {count}")
        return lines


class Metrics:
    """The server's metric families; one instance per :class:`ModelServer`."""

    def __init__(self) -> None:
        request = ("model_name", "version", "API", "entrypoint", "status")
        per_model = ("model_name", "version", "signature")
        self.request_count = Counter(":tensorflow:serving:request_count", "The total number of requests.", request)
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency", "Distribution of wall time (in microseconds) for serving requests.", request, LATENCY_BUCKETS_US
        )
        self.runtime_latency = Histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for the model runtime (TensorFlow) call.",
            ("model_name", "version", "API", "runtime"),
            LATENCY_BUCKETS_US,
        )
        self.queuing_latency = Histogram(
            ":tensorflow:serving:batching_session:queuing_latency",
            "Distribution of wall time (in microseconds) a request spent in the batching queue.",
            per_model,
            LATENCY_BUCKETS_US,
        )
        self.processed_batch_size = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Distribution of the number of rows in each batch the model ran.",
            per_model,
            BATCH_SIZE_BUCKETS,
        )
        self.load_attempt_count = Counter(
            ":tensorflow:core:load_attempt_count", "The number of times a model version load was attempted.", ("model_name", "version", "status")
        )

    def families(self) -> list:
        return [self.request_count, self.request_latency, self.runtime_latency, self.queuing_latency, self.processed_batch_size, self.load_attempt_count]

    def render(self) -> str:
        lines: list[str] = []
        for family in self.families():
            lines += family.render()
        return "\n".join(lines) + "\n"
