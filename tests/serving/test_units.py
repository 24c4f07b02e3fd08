"""In-process tests of the serving modules' own rules (no server process)."""
from __future__ import annotations

import argparse
import shutil
import threading
import time

import grpc
import numpy as np
import pytest

from llmos_tf.errors import ConfigError
from llmos_tf.serving.batching import BatchingParameters, BatchScheduler
from llmos_tf.serving.cli import add_serve_arguments, options_from_args
from llmos_tf.serving.errors import ServingError
from llmos_tf.serving.metrics import Metrics
from llmos_tf.serving.model_config import ModelConfig, VersionPolicy, parse_text
from llmos_tf.serving.registry import ModelRegistry, State
from tests.serving import fixtures as fx


def test_batching_parameters_file_format():
    params = BatchingParameters.parse("# tuned\nmax_batch_size { value: 8 }\nbatch_timeout_micros { value: 500 }\nnum_batch_threads { value: 3 }\npad_variable_length_inputs: true\n")
    assert params == BatchingParameters(max_batch_size=8, batch_timeout_micros=500, num_batch_threads=3, max_enqueued_batches=100)
    with pytest.raises(ConfigError, match="unknown field 'max_batch'"):
        BatchingParameters.parse("max_batch { value: 8 }")
    with pytest.raises(ConfigError, match="must be positive"):
        BatchingParameters.parse("max_batch_size { value: 0 }")


def test_scheduler_merges_splits_and_rejects_when_full():
    calls: list[int] = []
    release = threading.Event()

    def run(inputs):
        calls.append(len(inputs["x"]))
        release.wait(5)
        return {"y": inputs["x"] * 2, "scalar": np.array(7)}

    scheduler = BatchScheduler(BatchingParameters(max_batch_size=4, batch_timeout_micros=200_000, num_batch_threads=1, max_enqueued_batches=1))
    key = ("m", 1, "serving_default")
    results: dict[int, dict] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, scheduler.submit(key, run, {"x": np.array([i, i])}, 2))) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    release.set()
    for t in threads:
        t.join(5)
    assert calls == [4]  # two requests, one model call
    assert results[0]["y"].tolist() == [0, 0] and results[1]["y"].tolist() == [2, 2]
    release.clear()
    blocker = threading.Thread(target=lambda: scheduler.submit(key, run, {"x": np.arange(4)}, 4))
    blocker.start()  # a full batch runs at once and blocks the only worker
    time.sleep(0.2)
    filler = threading.Thread(target=lambda: scheduler.submit(key, run, {"x": np.arange(4)}, 4))
    filler.start()
    time.sleep(0.2)
    with pytest.raises(ServingError) as info:
        scheduler.submit(key, run, {"x": np.arange(2)}, 2)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    release.set()
    blocker.join(5)
    filler.join(5)
    scheduler.close()


def test_model_config_text_proto():
    models = parse_text(
        'model_config_list { config { name: "a" base_path: "/m/a" model_version_policy { all {} } }'
        ' config { name: "b" base_path: "/m/b" model_version_policy { latest { num_versions: 2 } } version_labels { key: "stable" value: 4 } } }'
    )
    assert models[0].policy.kind == "all" and models[1].policy.num_versions == 2 and models[1].labels == {"stable": 4}
    assert VersionPolicy("latest", 2).select([1, 5, 3]) == {3, 5}
    assert VersionPolicy("specific", versions=(1, 9)).select([1, 2]) == {1}
    with pytest.raises(ConfigError, match="listed twice"):
        parse_text('model_config_list { config { name: "a" base_path: "x" } config { name: "a" base_path: "y" } }')
    with pytest.raises(ConfigError, match="version label"):
        parse_text('model_config_list { config { name: "a" base_path: "x" version_labels { key: "no-dash" value: 1 } } }')
    with pytest.raises(ConfigError, match="ModelServerConfig"):
        parse_text("model_config_list { nonsense: 1 }")


def test_metrics_exposition_format():
    metrics = Metrics()
    metrics.request_count.inc(model_name="m", version="1", API="predict", entrypoint="GRPC", status="OK")
    metrics.processed_batch_size.observe(3, model_name="m", version="1", signature="serving_default")
    text = metrics.render()
    assert ':tensorflow:serving:request_count{model_name="m",version="1",API="predict",entrypoint="GRPC",status="OK"} 1' in text
    assert "# TYPE :tensorflow:serving:batching_session:processed_batch_size histogram" in text
    assert ':tensorflow:serving:batching_session:processed_batch_size_bucket{model_name="m",version="1",signature="serving_default",le="2"} 0' in text
    assert ':tensorflow:serving:batching_session:processed_batch_size_bucket{model_name="m",version="1",signature="serving_default",le="4"} 1' in text


def test_registry_keeps_the_only_version_and_waits_for_leases(tmp_path):
    model = tmp_path / "clf"
    fx.add_version(model, "classifier", 1)
    registry = ModelRegistry([ModelConfig("clf", model)])
    registry.sync()
    shutil.rmtree(model / "1")  # its folder vanished: still the only version, so it keeps serving
    registry.sync()
    assert registry.status("clf")[0].state == State.AVAILABLE
    lease = registry.acquire("clf")
    fx.add_version(model, "classifier", 2)
    syncing = threading.Thread(target=registry.sync)
    syncing.start()
    assert registry.wait_until(lambda: registry.status("clf", 1)[0].state == State.UNLOADING, 30)
    with registry.acquire("clf") as servable:  # new requests already go to version 2
        assert servable.version == 2
    assert lease.servable.run("serving_default", {"text": np.array([b"good"], dtype=object)})["class_id"].tolist() == [1]
    lease.release()
    syncing.join(30)
    assert registry.status("clf", 1)[0].state == State.END


def test_cli_flags_and_defaults():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([])
    assert (args.port, args.rest_api_port, args.host, args.file_system_poll_wait_seconds) == (8500, 8501, "127.0.0.1", 1.0)
    assert args.enable_model_warmup is True and args.enable_batching is False
    options = options_from_args(parser.parse_args(["--rest_api_port", "0", "--enable_batching", "--enable_model_warmup", "false"]))
    assert options.rest_api_port is None and options.enable_batching is True and options.enable_model_warmup is False


def test_in_process_server_and_llmos_cli(tmp_path, capsys):
    from llmos_tf.cli import build_parser
    from llmos_tf.serving import Client, ModelServer

    fx.add_version(tmp_path / "clf", "classifier", 1)
    with ModelServer(model_base_path=str(tmp_path), port=0, rest_api_port=None, file_system_poll_wait_seconds=0) as server:
        assert server.rest_port is None
        assert Client(f"127.0.0.1:{server.grpc_port}").predict("clf", "good")["label"].tolist() == [b"positive"]
    args = build_parser().parse_args(["serve", "--model_base_path", str(tmp_path), "--port", "0"])
    assert args.func.__name__ == "run_serve"
    with pytest.raises(ConfigError, match="not a folder"):
        ModelServer(model_base_path=str(tmp_path / "missing"))
