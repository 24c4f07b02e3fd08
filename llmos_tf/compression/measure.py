"""What a compressed variant costs and gains, measured the way users see it.

Size is the bytes a server must load (the version folder, or the ``model.tflite``
file alone for a TFLite variant) and the same bytes gzipped: pruning zeros do not
shrink a float file, but they compress, which is what a download or a registry
pays. Speed is measured through the string-in serving function (tokenizer
included), at batch 1 (median latency, what one interactive request sees) and
batch 32 (throughput, what a batching server sees).

Example::

    size = file_sizes(pathlib.Path("saved_models/sst2/2/model.tflite"))
    speed = measure_speed(lambda texts: servable_predict(texts), ["a fine film"] * 64)
    speed.p50_ms_batch1, speed.throughput_batch32
"""
from __future__ import annotations

import gzip
import pathlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class SizeFigures:
    raw_bytes: int
    gzip_bytes: int


@dataclass(frozen=True)
class SpeedFigures:
    p50_ms_batch1: float
    throughput_batch32: float  # examples per second


def _files(path: pathlib.Path, exclude: Iterable[str] = ()) -> list[pathlib.Path]:
    if path.is_file():
        return [path]
    skip = set(exclude)
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name not in skip and not (set(p.relative_to(path).parts) & skip))


def file_sizes(path: str | pathlib.Path, exclude: Iterable[str] = ()) -> SizeFigures:
    """Raw and gzip-compressed (level 6, per file) size of a file or a folder's files."""
    raw = zipped = 0
    for f in _files(pathlib.Path(path), exclude):
        data = f.read_bytes()
        raw += len(data)
        zipped += len(gzip.compress(data, compresslevel=6, mtime=0))
    return SizeFigures(raw, zipped)


def measure_speed(predict: Callable[[Sequence[str]], object], texts: Sequence[str], *, batch1_calls: int = 40,
                  batch32_calls: int = 6, warmup: int = 2) -> SpeedFigures:
    """Median latency of single-text calls and examples/s of 32-text calls.

    ``texts`` are cycled; the first ``warmup`` calls of each size are discarded
    (graph tracing, interpreter allocation).
    """
    if not texts:
        raise ValueError("measure_speed needs at least one text")
    pool = list(texts)

    def take(i: int, n: int) -> list[str]:
        return [pool[(i * n + k) % len(pool)] for k in range(n)]

    for i in range(warmup):
        predict(take(i, 1))
        predict(take(i, 32))
    latencies = []
    for i in range(batch1_calls):
        batch = take(i, 1)
        start = time.perf_counter()
        predict(batch)
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(batch32_calls):
        predict(take(i, 32))
    elapsed = time.perf_counter() - start
    return SpeedFigures(
        p50_ms_batch1=float(np.median(latencies) * 1000.0),
        throughput_batch32=float(32 * batch32_calls / elapsed) if elapsed > 0 else float("inf"),
    )
