"""Python clients for ``llmos serve`` and ``tensorflow_model_server`` (official stubs, no private format).

Example::

    from llmos_tf.serving import Client
    client = Client("127.0.0.1:8500")
    out = client.predict("sst2", ["a wonderful film"])      # {"probabilities": ..., "label": ..., "class_id": ...}
    client.status("sst2")                                     # [{"version": 2, "state": "AVAILABLE", ...}]

``RestClient`` does the same over the REST API with the standard library only.
RPC failures are raised as :class:`~llmos_tf.serving.errors.ServingError` with the
server's status code and message.
"""
from __future__ import annotations

import json
import pathlib
import urllib.error
import urllib.request
from typing import Any, Sequence

import grpc
import numpy as np
from google.protobuf import json_format, text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from llmos_tf._tf import tf
from llmos_tf.serving.errors import ServingError


def _texts(texts: str | Sequence[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def _spec(spec, model: str, version: int | None, label: str | None, signature: str | None = None) -> None:
    spec.name = model
    if version is not None and label:
        raise ValueError("give version or label, not both")
    if version is not None:
        spec.version.value = int(version)
    elif label:
        spec.version_label = label
    if signature:
        spec.signature_name = signature


class Client:
    """gRPC client: PredictionService + ModelService."""

    def __init__(self, target: str = "127.0.0.1:8500", timeout: float = 30.0, token: str | None = None, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.max_send_message_length", max_message_bytes)]
        )
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise ServingError(err.code(), f"{self.target}: {err.details()}") from None

    def predict(
        self, model: str, texts: str | Sequence[str], version: int | None = None, label: str | None = None,
        signature: str = "serving_default", inputs: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Outputs of one Predict call as numpy arrays (strings as bytes)."""
        request = predict_pb2.PredictRequest()
        _spec(request.model_spec, model, version, label, signature)
        feeds = inputs if inputs is not None else {"text": _texts(texts)}
        for name, value in feeds.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self.prediction.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def classify(self, model: str, texts: str | Sequence[str], version: int | None = None, label: str | None = None, signature: str = "") -> list[list[tuple[str, float]]]:
        request = classification_pb2.ClassificationRequest()
        _spec(request.model_spec, model, version, label, signature)
        for text in _texts(texts):
            example = request.input.example_list.examples.add()
            example.features.feature["text"].bytes_list.value.append(text.encode("utf-8"))
        response = self._call(self.prediction.Classify, request)
        return [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """``{"model_spec": ..., "signature_def": {name: SignatureDef as dict}}``."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _spec(request.model_spec, model, version, label)
        response = self._call(self.prediction.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, preserving_proto_field_name=True),
            "signature_def": json_format.MessageToDict(signatures, preserving_proto_field_name=True).get("signature_def", {}),
        }

    def status(self, model: str, version: int | None = None, label: str | None = None) -> list[dict[str, Any]]:
        request = get_model_status_pb2.GetModelStatusRequest()
        _spec(request.model_spec, model, version, label)
        response = self._call(self.models.GetModelStatus, request)
        return [
            {
                "version": s.version,
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                "error_code": s.status.error_code,
                "error_message": s.status.error_message,
            }
            for s in response.model_version_status
        ]

    def reload_config(self, config: str | pathlib.Path | model_server_config_pb2.ModelServerConfig) -> None:
        """Send a ModelServerConfig (proto, text proto, or path to one); returns when the server has applied it."""
        if isinstance(config, model_server_config_pb2.ModelServerConfig):
            proto = config
        else:
            text = pathlib.Path(config).read_text() if isinstance(config, pathlib.Path) or (isinstance(config, str) and pathlib.Path(config).is_file()) else str(config)
            proto = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
        self._call(self.models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=proto))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RestClient:
    """TF Serving REST API over ``urllib`` (JSON in, JSON out)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8501", timeout: float = 30.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON or text); errors are returned, not raised."""
        data = json.dumps(body).encode() if body is not None and not isinstance(body, (bytes, str)) else (body.encode() if isinstance(body, str) else body)
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    @staticmethod
    def model_path(model: str, version: int | None = None, label: str | None = None) -> str:
        path = f"/v1/models/{model}"
        if version is not None:
            path += f"/versions/{version}"
        elif label:
            path += f"/labels/{label}"
        return path

    def predict(self, model: str, texts: str | Sequence[str], version: int | None = None, label: str | None = None) -> list:
        status, body = self.request("POST", self.model_path(model, version, label) + ":predict", {"instances": _texts(texts)})
        if status != 200:
            raise ServingError(grpc.StatusCode.UNKNOWN, f"HTTP {status}: {body}")
        return body["predictions"]
