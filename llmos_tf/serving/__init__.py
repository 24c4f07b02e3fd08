"""TF-Serving-compatible serving: gRPC PredictionService/ModelService, the REST API,
a model registry with version policies and labels, batching and Prometheus metrics.

Start a server in Python::

    from llmos_tf.serving import ModelServer, Client
    with ModelServer(model_base_path="saved_models", port=0, rest_api_port=0) as server:
        print(Client(f"127.0.0.1:{server.grpc_port}").predict("sst2", ["a fine film"]))

or from the shell: ``llmos serve --model_base_path saved_models``.
Submodules import TensorFlow; this package imports them lazily.
"""
from __future__ import annotations

__all__ = ["Client", "RestClient", "ModelServer", "ServerOptions"]


def __getattr__(name: str):
    if name in ("Client", "RestClient"):
        from llmos_tf.serving import client

        return getattr(client, name)
    if name in ("ModelServer", "ServerOptions"):
        from llmos_tf.serving import server

        return getattr(server, name)
    raise AttributeError(name)
