"""gRPC front end: ``tensorflow.serving.PredictionService`` and ``ModelService``.

Uses the official generated servicers from ``tensorflow-serving-api``, so any
TF Serving client (the Python stubs, Java/Go clients, ``grpcurl`` with the
protos) talks to ``llmos serve`` unchanged. Tensors travel as TensorProto (read and
built directly for strings and plain numbers, else via ``tf.make_ndarray`` / ``tf.make_tensor_proto``).
``llmos_tf.serving.grpc_aio`` serves these servicers from an asyncio gRPC server. Every failure is a canonical
gRPC status (NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...) with a
message that says what was expected.
"""
from __future__ import annotations

import functools
import logging
import pathlib
from typing import Callable

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from llmos_tf._tf import tf
from llmos_tf.errors import LlmosError
from llmos_tf.serving import model_config
from llmos_tf.serving.core import DEFAULT_SIGNATURE, PredictionCore
from llmos_tf.serving.errors import ServingError, invalid_argument
from llmos_tf.serving.registry import ModelRegistry

log = logging.getLogger("llmos_tf.serving")


def _handle_errors(method: Callable) -> Callable:
    """Turn ServingError / user errors / crashes into gRPC status codes."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as err:
            context.abort(err.code, err.message)
        except LlmosError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except Exception as err:  # keep serving; report the failure to this client only
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")

    return wrapper


def model_spec_fields(spec) -> tuple[str, int | None, str | None, str]:
    """(name, version, label, signature) from a ``ModelSpec``."""
    if not spec.name:
        raise invalid_argument("model_spec.name is required")
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return spec.name, version, label, spec.signature_name


def _timeout(context) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e8 else None


def tensor_inputs(inputs) -> dict[str, np.ndarray]:
    arrays = {}
    for name, proto in inputs.items():
        try:
            arrays[name] = to_ndarray(proto)
        except Exception as err:
            raise invalid_argument(f"input {name!r} is not a valid TensorProto: {err}") from None
    return arrays


# TensorProto <-> NumPy for the common cases without tf.make_ndarray / tf.make_tensor_proto, which cost
# about 0.1 ms each (they were a visible share of a single-sentence Predict); the answers are identical.
_FAST_DTYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.int64): types_pb2.DT_INT64, np.dtype(np.int32): types_pb2.DT_INT32}


def to_ndarray(proto) -> np.ndarray:
    """``tf.make_ndarray(proto)``; strings given one value per element are read from ``string_val`` directly."""
    if proto.dtype == types_pb2.DT_STRING and not proto.tensor_shape.unknown_rank:
        shape = [d.size for d in proto.tensor_shape.dim]
        values = proto.string_val
        if all(d >= 0 for d in shape) and len(values) == int(np.prod(shape)):
            array = np.empty(len(values), dtype=object)
            array[:] = list(values)
            return array.reshape(shape)
    return tf.make_ndarray(proto)


def to_tensor_proto(value) -> tensor_pb2.TensorProto:
    """``tf.make_tensor_proto(value)`` for float32 / int64 / int32 arrays and arrays of bytes, built directly."""
    array = np.asarray(value)
    dtype = _FAST_DTYPES.get(array.dtype)
    if dtype is None and not (array.dtype.kind == "O" and all(isinstance(v, bytes) for v in array.flat)):
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype if dtype is not None else types_pb2.DT_STRING)
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape)
    if dtype is None:
        proto.string_val.extend(array.reshape(-1).tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


def predict_response(request, result, name: str, signature: str) -> predict_pb2.PredictResponse:
    """The PredictResponse for ``result``, restricted to ``request.output_filter``."""
    wanted = list(request.output_filter) or list(result.outputs)
    unknown = [k for k in wanted if k not in result.outputs]
    if unknown:
        raise invalid_argument(f"output_filter names unknown outputs {unknown}; outputs: {sorted(result.outputs)}")
    response = predict_pb2.PredictResponse()
    response.model_spec.name = name
    response.model_spec.version.value = result.version
    response.model_spec.signature_name = signature or DEFAULT_SIGNATURE
    for key in wanted:
        response.outputs[key].CopyFrom(to_tensor_proto(result.outputs[key]))
    return response


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify and GetModelMetadata; Regress and MultiInference are UNIMPLEMENTED."""

    def __init__(self, core: PredictionCore) -> None:
        self.core = core

    @_handle_errors
    def Predict(self, request, context):
        name, version, label, signature = model_spec_fields(request.model_spec)
        inputs = tensor_inputs(request.inputs)
        result = self.core.predict(name, inputs, version=version, label=label, signature=signature, timeout=_timeout(context))
        return predict_response(request, result, name, signature)

    @_handle_errors
    def Classify(self, request, context):
        name, version, label, signature = model_spec_fields(request.model_spec)
        kind = request.input.WhichOneof("kind")
        if kind is None:
            raise invalid_argument("Classify request has no input (example_list or example_list_with_context)")
        examples = list(request.input.example_list.examples if kind == "example_list" else request.input.example_list_with_context.examples)
        if kind == "example_list_with_context":
            context_example = request.input.example_list_with_context.context
            merged = []
            for ex in examples:
                combined = tf.train.Example()
                combined.CopyFrom(context_example)
                combined.MergeFrom(ex)
                merged.append(combined)
            examples = merged
        texts = []
        for ex in examples:
            feature = ex.features.feature.get("text")
            texts.append(feature.bytes_list.value[0] if feature is not None and feature.bytes_list.value else None)
        served_version, rows = self.core.classify(
            name, [ex.SerializeToString() for ex in examples], texts, version=version, label=label, signature=signature, timeout=_timeout(context)
        )
        response = classification_pb2.ClassificationResponse()
        response.model_spec.name = name
        response.model_spec.version.value = served_version
        response.model_spec.signature_name = signature or DEFAULT_SIGNATURE
        for row in rows:
            classifications = response.result.classifications.add()
            for class_label, score in row:
                classifications.classes.add(label=class_label, score=score)
        return response

    @_handle_errors
    def GetModelMetadata(self, request, context):
        name, version, label, _ = model_spec_fields(request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise invalid_argument(f"metadata_field must be ['signature_def'] (the only metadata TF Serving exports), got {fields}")
        with self.core.measured(name, "GetModelMetadata", "GRPC") as info:
            with self.core.registry.acquire(name, version, label) as servable:
                info["version"] = servable.version
                return build_metadata_response(servable)

    @_handle_errors
    def Regress(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Regress is not implemented by llmos serve; use Predict")

    @_handle_errors
    def MultiInference(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not implemented by llmos serve; use Predict")


def build_metadata_response(servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
        if not key.startswith("__"):
            signature_map.signature_def[key].CopyFrom(value)
    response.metadata["signature_def"].Pack(signature_map)
    return response


def build_status_response(registry: ModelRegistry, spec) -> get_model_status_pb2.GetModelStatusResponse:
    name, version, label, _ = model_spec_fields(spec)
    response = get_model_status_pb2.GetModelStatusResponse()
    for record in registry.status(name, version, label):
        status = response.model_version_status.add(version=record.version, state=record.state)
        status.status.error_code = record.error_code
        status.status.error_message = record.error_message
    return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, core: PredictionCore) -> None:
        self.core = core

    @_handle_errors
    def GetModelStatus(self, request, context):
        return build_status_response(self.core.registry, request.model_spec)

    @_handle_errors
    def HandleReloadConfigRequest(self, request, context):
        if request.config.WhichOneof("config") != "model_config_list":
            raise invalid_argument("ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported")
        models = model_config.from_proto(request.config, pathlib.Path.cwd())
        self.core.registry.reload_config(models)
        return model_management_pb2.ReloadConfigResponse()


def add_services(server: grpc.Server, core: PredictionCore) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(core), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
