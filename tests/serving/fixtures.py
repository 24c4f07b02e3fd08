"""Tiny SavedModels in TF Serving layout and a real server process, for the serving tests.

The fixture models obey the serving contract (DESIGN.md) with arithmetic instead
of learning, so every expected answer is computable here:

* classifier: P(positive) = 0.8 if the text contains "good" else 0.2, plus 0.01 * version
  (so answers tell versions apart); also a ``classify`` signature on tf.Examples.
* tagger: one tag per space-separated token: ``ENT<version>`` if it starts upper-case, else ``O``.
"""
from __future__ import annotations

import json
import os
import pathlib
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from llmos_tf._tf import tf

REPO = pathlib.Path(__file__).resolve().parents[2]
LABELS = ["negative", "positive"]
TEXT = tf.TensorSpec([None], tf.string, name="text")


def expected_positive(text: str, version: int) -> float:
    return (0.8 if "good" in text else 0.2) + 0.01 * version


def expected_tags(text: str, version: int) -> list[str]:
    return [f"ENT{version}" if t[:1].isupper() else "O" for t in text.split(" ")]


class FixtureClassifier(tf.Module):
    def __init__(self, version: int):
        super().__init__()
        self.version = tf.Variable(float(version))  # lives in variables/: a folder without it is corrupt
        self.labels = tf.constant(LABELS)

    @tf.function(input_signature=[TEXT])
    def serve(self, text):
        base = tf.where(tf.strings.regex_full_match(text, ".*good.*"), 0.8, 0.2)
        positive = base + 0.01 * self.version
        probabilities = tf.stack([1.0 - positive, positive], axis=1)
        class_id = tf.argmax(probabilities, axis=1, output_type=tf.int64)
        return {"probabilities": probabilities, "label": tf.gather(self.labels, class_id), "class_id": class_id}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        parsed = tf.io.parse_example(inputs, {"text": tf.io.FixedLenFeature([], tf.string)})
        out = self.serve(parsed["text"])
        classes = tf.tile(self.labels[tf.newaxis], [tf.shape(inputs)[0], 1])
        return {"classes": classes, "scores": out["probabilities"]}


class FixtureTagger(tf.Module):
    def __init__(self, version: int):
        super().__init__()
        self.version = tf.Variable(int(version), dtype=tf.int64)

    @tf.function(input_signature=[TEXT])
    def serve(self, text):
        tokens = tf.strings.split(text, sep=" ")
        entity = tf.strings.join(["ENT", tf.strings.as_string(self.version)])
        flat = tf.where(tf.strings.regex_full_match(tokens.flat_values, "[A-Z].*"), entity, "O")
        tags = tokens.with_flat_values(flat).to_tensor(default_value="")
        return {"tags": tags, "token_count": tf.cast(tokens.row_lengths(), tf.int32)}


_TEMPLATES: dict[tuple[str, int], pathlib.Path] = {}
_TEMPLATE_ROOT = pathlib.Path(tempfile.mkdtemp(prefix="llmos-serving-fixtures-"))


def _template(kind: str, version: int) -> pathlib.Path:
    key = (kind, version)
    if key not in _TEMPLATES:
        path = _TEMPLATE_ROOT / f"{kind}-{version}"
        if kind == "classifier":
            module = FixtureClassifier(version)
            signatures = {"serving_default": module.serve, "classify": module.classify}
        else:
            module = FixtureTagger(version)
            signatures = {"serving_default": module.serve}
        tf.saved_model.save(module, str(path), signatures=signatures)
        (path / "assets").mkdir(exist_ok=True)
        if kind == "classifier":
            (path / "assets" / "labels.txt").write_text("\n".join(LABELS) + "\n")
        (path / "assets" / "llmos.json").write_text(json.dumps({"task": kind, "version": version}))
        write_warmup(path, ["warm up", "a good warm up"])
        _TEMPLATES[key] = path
    return _TEMPLATES[key]


def write_warmup(version_dir: pathlib.Path, texts: list[str]) -> None:
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="warmup", signature_name="serving_default"))
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
        writer.write(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())


def add_version(model_dir: pathlib.Path, kind: str, version: int, atomic: bool = True) -> pathlib.Path:
    """Copy a fixture into ``model_dir/version`` the way exports do: write a hidden temp folder, then rename."""
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / str(version)
    if not atomic:
        shutil.copytree(_template(kind, version), final)
        return final
    tmp = model_dir / f".tmp-{version}-{os.getpid()}"
    shutil.copytree(_template(kind, version), tmp)
    os.rename(tmp, final)
    return final


def add_corrupt_version(model_dir: pathlib.Path, version: int, how: str = "garbage") -> pathlib.Path:
    """A version folder that cannot load: garbage saved_model.pb, or a real one without variables/."""
    final = model_dir / str(version)
    if how == "garbage":
        final.mkdir(parents=True)
        (final / "saved_model.pb").write_bytes(b"this is not a protobuf \x00\xff" * 10)
    else:
        add_version(model_dir, "classifier", version)
        shutil.rmtree(final / "variables")
    return final


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m llmos_tf.serving`` on free ports; ``ready`` is the JSON line it prints once loaded."""

    def __init__(self, args: list[str], log_dir: pathlib.Path, rest: bool = True):
        self.grpc_port = free_port()
        self.rest_port = free_port() if rest else None
        self.target = f"127.0.0.1:{self.grpc_port}"
        self.rest_url = f"http://127.0.0.1:{self.rest_port}"
        cmd = [sys.executable, "-m", "llmos_tf.serving", "--port", str(self.grpc_port), "--rest_api_port", str(self.rest_port or 0), *args]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
        self.stderr_path = log_dir / f"server-{self.grpc_port}.log"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, cwd=str(log_dir))
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.ready: dict | None = None

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # EOF

    def wait_event(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line == "":
                raise RuntimeError(f"server exited with {self.proc.wait(5)} before {event!r}:\n{self.log()}")
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == event:
                return message
        raise TimeoutError(f"no {event!r} line from the server within {timeout}s:\n{self.log()}")

    def wait_ready(self, timeout: float = 120) -> dict:
        self.ready = self.wait_event("ready", timeout)
        return self.ready

    def log(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()[-4000:]

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()
