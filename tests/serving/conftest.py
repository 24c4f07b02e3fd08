"""Serving test fixtures: model base paths and server processes (always killed)."""
from __future__ import annotations

import pathlib

import grpc
import pytest

from tests.serving import fixtures as fx


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory):
    """Start ``python -m llmos_tf.serving`` processes; every one is killed when the module ends."""
    started: list[fx.ServerProcess] = []

    def start(args: list[str], rest: bool = True, wait: bool = True) -> fx.ServerProcess:
        log_dir = tmp_path_factory.mktemp("server")
        server = fx.ServerProcess(args, log_dir, rest=rest)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.kill()


def stubs(target: str):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
