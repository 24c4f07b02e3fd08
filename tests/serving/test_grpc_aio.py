"""The asyncio gRPC path's own pieces: direct TensorProto conversion, non-blocking batching, TF thread flags."""
from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import pytest

from llmos_tf._tf import tf
from llmos_tf.errors import ConfigError
from llmos_tf.serving.batching import BatchingParameters, BatchScheduler
from llmos_tf.serving.cli import add_serve_arguments, check_serve_flags
from llmos_tf.serving.grpc_service import to_ndarray, to_tensor_proto
from llmos_tf.serving.server import set_tf_threads

ARRAYS = [
    np.array([[0.25, -1.5, 3.0], [1e-8, 0.0, 7.0]], np.float32),
    np.array([3, -2, 2**40], np.int64),
    np.array([1, 2], np.int32),
    np.array([b"great film", b"", "ünïcode".encode()], dtype=object),
    np.array([[b"B-PER", b""], [b"O", b"I-LOC"]], dtype=object),
    np.zeros((0, 2), np.float32),
    np.array([1.5, 2.5]),  # float64: not a fast dtype, tf.make_tensor_proto builds it
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_tensor_protos_equal_tensorflows(array):
    proto = to_tensor_proto(array)
    assert proto == tf.make_tensor_proto(array)  # byte for byte what clients got before
    back = to_ndarray(proto)
    expected = tf.make_ndarray(proto)
    assert back.dtype == expected.dtype and back.shape == expected.shape and (back == expected).all()


def test_string_input_broadcast_from_one_value_falls_back_to_tensorflow():
    proto = tf.make_tensor_proto([b"x"])
    proto.tensor_shape.dim[0].size = 3  # one value for three elements: TensorFlow's own rule applies
    assert to_ndarray(proto).tolist() == tf.make_ndarray(proto).tolist() == [b"x", b"x", b"x"]


def test_submit_nowait_runs_batches_and_drops_cancelled_requests():
    started, release, calls = threading.Event(), threading.Event(), []

    def run(inputs):
        calls.append(inputs["x"].tolist())
        started.set()
        release.wait(5)
        return {"y": inputs["x"] + 1}

    scheduler = BatchScheduler(BatchingParameters(max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1))
    key = ("m", 1, "serving_default")
    first = scheduler.submit_nowait(key, run, {"x": np.array([10, 11])}, 2)  # a full batch: runs at once, holds the worker
    assert started.wait(5)
    dropped = scheduler.submit_nowait(key, run, {"x": np.array([20])}, 1)
    kept = scheduler.submit_nowait(key, run, {"x": np.array([30])}, 1)
    assert dropped.cancel()  # still queued: a client that gave up
    release.set()
    assert first.result(5)["y"].tolist() == [11, 12]
    assert kept.result(5)["y"].tolist() == [31]
    assert calls == [[10, 11], [30]]  # the cancelled request never reached the model
    scheduler.close()
    assert scheduler.submit_nowait(key, run, {"x": np.array([1])}, 1) is None  # draining: the caller runs it itself


def test_tensorflow_thread_flags_are_checked():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--model_base_path", ".", "--tensorflow_intra_op_parallelism", "-1"])
    with pytest.raises(ConfigError, match="--tensorflow_intra_op_parallelism: expected 0"):
        check_serve_flags(args)
    tf.constant(1.0) + 1.0  # TensorFlow's runtime is up in this process: its pools are fixed
    current = tf.config.threading.get_intra_op_parallelism_threads()
    set_tf_threads(current, 0)  # asking for what it has is fine
    with pytest.raises(ConfigError, match=r"--tensorflow_intra_op_parallelism \d+: TensorFlow already started"):
        set_tf_threads(current + 3, 0)


def test_batched_predict_over_grpc_aio_answers_and_reports_errors(server_factory, tmp_path):
    import grpc

    from llmos_tf.serving.client import Client
    from llmos_tf.serving.errors import ServingError
    from tests.serving import fixtures as fx

    fx.add_version(tmp_path / "clf", "classifier", 1)
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 20000 }\nnum_batch_threads { value: 2 }\n")
    server = server_factory(["--model_base_path", str(tmp_path), "--enable_batching", "--batching_parameters_file", str(params),
                             "--tensorflow_intra_op_parallelism", "1", "--file_system_poll_wait_seconds", "0"])
    client = Client(server.target, timeout=20)
    texts = [f"good {i}" if i % 3 else f"bad {i}" for i in range(12)]
    answers: dict[int, float] = {}
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, float(client.predict("clf", [texts[i]])["probabilities"][0, 1])))
               for i in range(len(texts))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert time.monotonic() - started < 30
    assert answers == pytest.approx({i: fx.expected_positive(t, 1) for i, t in enumerate(texts)}, rel=1e-5)
    from tensorflow_serving.apis import predict_pb2

    from tests.serving.conftest import stubs

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "clf"
    request.inputs["txt"].CopyFrom(tf.make_tensor_proto([b"good"]))
    channel, prediction, _ = stubs(server.target)
    with pytest.raises(grpc.RpcError) as info:  # a wrong input name: INVALID_ARGUMENT from the event-loop path
        prediction.Predict(request, timeout=20)
    channel.close()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "missing: text" in info.value.details()
    with pytest.raises(ServingError) as err:
        client.predict("nope", ["good"])
    assert err.value.code == grpc.StatusCode.NOT_FOUND and "Latest(nope)" in err.value.message
