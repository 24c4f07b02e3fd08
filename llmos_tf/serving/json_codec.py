"""TF Serving's REST JSON <-> numpy, following its documented request/response formats.

* row format ``{"instances": [...]}`` -> ``{"predictions": [...]}``: instances are
  bare values when the signature has one input (``["a film", "a play"]``) or
  objects naming inputs (``[{"text": "a film"}]``); predictions are bare values
  for a single output, else one object per row.
* columnar format ``{"inputs": ...}`` -> ``{"outputs": ...}``: a bare value for a
  single input, or an object of named inputs; outputs likewise.
* binary strings travel as ``{"b64": "..."}``; string outputs that are not UTF-8
  come back that way, the others as plain JSON strings.
"""
from __future__ import annotations

import base64
from typing import Any, Mapping

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.serving.errors import invalid_argument
from llmos_tf.serving.servable import Servable, TensorSpecInfo


def _to_bytes(value: Any, name: str) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid_argument(f"input {name!r}: an object in a string tensor must be {{\"b64\": \"<base64>\"}}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as err:
            raise invalid_argument(f"input {name!r}: bad base64 in b64 value: {err}") from None
    if isinstance(value, list):
        return [_to_bytes(v, name) for v in value]
    raise invalid_argument(f"input {name!r} is a string tensor; got JSON {type(value).__name__} {value!r:.40}")


def to_array(value: Any, spec: TensorSpecInfo) -> np.ndarray:
    """A JSON value -> ndarray of the signature input's dtype (INVALID_ARGUMENT when it cannot be)."""
    try:
        if spec.dtype == tf.string:
            converted = _to_bytes(value, spec.name)
            array = np.empty(0, dtype=object) if converted == [] else np.array(converted, dtype=object)
            if array.dtype != object or any(isinstance(x, list) for x in array.reshape(-1)):
                raise ValueError("ragged lists")
            return array
        return np.array(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError) as err:
        raise invalid_argument(f"input {spec.name!r} cannot be read as a {spec.dtype.name} tensor: {err}") from None


def request_inputs(body: Mapping[str, Any], servable: Servable, signature: str) -> dict[str, np.ndarray]:
    """Parse a predict body's ``instances`` or ``inputs`` against the signature's inputs."""
    specs = servable.inputs[signature]
    expected = servable.expected(signature)
    if ("instances" in body) == ("inputs" in body):
        raise invalid_argument(f'request body needs exactly one of "instances" (row format) or "inputs" (columnar format); signature expects {expected}')
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid_argument(f'"instances" must be a non-empty list; signature expects {expected}')
        if all(isinstance(i, dict) and "b64" not in i for i in instances):
            names = set(instances[0])
            if any(set(i) != names for i in instances):
                raise invalid_argument("every instance must name the same inputs")
            columns = {n: [i[n] for i in instances] for n in names}
        elif any(isinstance(i, dict) and "b64" not in i for i in instances):
            raise invalid_argument("instances mix objects and bare values")
        else:
            if len(specs) != 1:
                raise invalid_argument(f"bare instances need a signature with one input; this one expects {expected}")
            columns = {next(iter(specs)): instances}
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and "b64" not in inputs:
            columns = dict(inputs)
        else:
            if len(specs) != 1:
                raise invalid_argument(f'a bare "inputs" value needs a signature with one input; this one expects {expected}')
            columns = {next(iter(specs)): inputs}
    unknown = sorted(set(columns) - set(specs))
    if unknown:
        raise invalid_argument(f"unknown input(s) {', '.join(unknown)}; signature {signature!r} expects {expected}")
    return {name: to_array(value, specs[name]) for name, value in columns.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def to_json(array: np.ndarray) -> Any:
    array = np.asarray(array)
    if array.dtype in (np.float32, np.float16):  # shortest repr of the float32 value (0.81, not 0.8100000023841858), as TF Serving prints
        return _jsonable(np.vectorize(lambda x: float(str(x)), otypes=[object])(array).tolist() if array.size else array.tolist())
    return _jsonable(array.tolist())


def predictions(outputs: Mapping[str, np.ndarray], rows: int) -> list:
    """Row format response value."""
    if len(outputs) == 1:
        return to_json(next(iter(outputs.values())))
    converted = {k: to_json(v) for k, v in outputs.items()}
    return [{k: (v[i] if isinstance(v, list) and len(v) == rows else v) for k, v in converted.items()} for i in range(rows)]


def columnar(outputs: Mapping[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        return to_json(next(iter(outputs.values())))
    return {k: to_json(v) for k, v in outputs.items()}


def example_from_json(obj: Mapping[str, Any]) -> "tf.train.Example":
    """A REST classify example (``{"text": "..."}``) -> tf.train.Example."""
    example = tf.train.Example()
    for key, value in obj.items():
        values = value if isinstance(value, list) else [value]
        feature = example.features.feature[key]
        if all(isinstance(v, (str, dict)) for v in values):
            feature.bytes_list.value.extend(_to_bytes(values, key))
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            feature.int64_list.value.extend(values)
        elif all(isinstance(v, (int, float)) for v in values):
            feature.float_list.value.extend(float(v) for v in values)
        else:
            raise invalid_argument(f"example feature {key!r}: values must all be strings, ints or floats")
    return example
