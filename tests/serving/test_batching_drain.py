"""Batching merges concurrent requests (seen in Prometheus metrics); SIGTERM drains in-flight requests."""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmos_tf.serving.client import Client, RestClient
from tests.serving import fixtures as fx

TIMEOUT_MICROS = 400_000  # requests wait up to 0.4 s for company: long enough to be "in flight" at SIGTERM


@pytest.fixture(scope="module")
def server(server_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    fx.add_version(root / "clf", "classifier", 1)
    params = root / "batching.config"
    params.write_text(f"max_batch_size {{ value: 64 }}\nbatch_timeout_micros {{ value: {TIMEOUT_MICROS} }}\nnum_batch_threads {{ value: 1 }}\nmax_enqueued_batches {{ value: 4 }}\n")
    monitoring = root / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    return server_factory(
        ["--model_base_path", str(root), "--enable_batching", "--batching_parameters_file", str(params),
         "--monitoring_config_file", str(monitoring), "--file_system_poll_wait_seconds", "0"]
    )


def test_concurrent_requests_are_merged(server):
    client = Client(server.target, timeout=20)
    texts = [f"good {i}" if i % 2 else f"bad {i}" for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda t: client.predict("clf", [t]), texts))
    for text, out in zip(texts, results):  # every request got its own row back
        assert out["probabilities"].shape == (1, 2)
        assert float(out["probabilities"][0, 1]) == pytest.approx(fx.expected_positive(text, 1), rel=1e-5)
    status, metrics = RestClient(server.rest_url).request("GET", "/metrics")
    assert status == 200
    count = int(re.search(r':tensorflow:serving:batching_session:processed_batch_size_count\{model_name="clf",version="1",signature="serving_default"\} (\d+)', metrics).group(1))
    total = float(re.search(r':tensorflow:serving:batching_session:processed_batch_size_sum\{model_name="clf",version="1",signature="serving_default"\} (\S+)', metrics).group(1))
    assert total >= 16 and count < total, (count, total)  # at least one batch held more than one request
    assert ":tensorflow:serving:batching_session:queuing_latency_bucket{" in metrics


def test_sigterm_drains_in_flight_requests(server):
    client = Client(server.target, timeout=30)
    answers: list = []
    errors: list = []

    def ask(i: int) -> None:
        try:
            answers.append(client.predict("clf", [f"good {i}"]))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.15)  # the requests now wait in the batching queue
    assert server.proc.poll() is None
    exit_code = server.terminate(timeout=30)
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(answers) == 6
    assert exit_code == 0, server.log()
    assert server.wait_event("stopped", timeout=5)["event"] == "stopped"
