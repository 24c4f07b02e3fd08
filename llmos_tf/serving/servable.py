"""One loaded model version: its signatures, input checks and the model call.

A :class:`Servable` is what TF Serving calls a servable: a SavedModel version
loaded with ``tf.saved_model.load``. Its SignatureDefs are read from
``saved_model.pb`` itself (not rebuilt from Python objects) so that
GetModelMetadata returns exactly what ``saved_model_cli show`` prints and what
``tensorflow_model_server`` would return. Requests are checked against those
SignatureDefs before TensorFlow sees them, so a wrong input name, dtype or
shape comes back as INVALID_ARGUMENT naming what the signature expects,
instead of an opaque TensorFlow stack trace.
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from llmos_tf._tf import tf


def register_text_ops() -> None:
    """Register tensorflow-text's kernels (NormalizeUTF8, WordpieceTokenizeWithOffsets, ...).

    Exports carry their tokenizer as tensorflow-text ops; a process must import
    the library before loading such a SavedModel, as tensorflow_model_server links it.
    """
    import tensorflow_text  # noqa: F401
from llmos_tf.serving.errors import failed_precondition, invalid_argument

# inputs with this name carry user text: they must be valid UTF-8
TEXT_INPUT = "text"


@dataclass(frozen=True)
class TensorSpecInfo:
    """Name, dtype and shape (``None`` = any size) of one signature input or output."""

    name: str
    dtype: tf.DType
    shape: tuple[int | None, ...] | None  # None = unknown rank

    def describe(self) -> str:
        shape = "?" if self.shape is None else "[" + ", ".join("None" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name}: {self.dtype.name} {shape}"


def _spec(name: str, info) -> TensorSpecInfo:
    shape = None if info.tensor_shape.unknown_rank else tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    return TensorSpecInfo(name, tf.dtypes.as_dtype(info.dtype), shape)


def read_signature_defs(path: pathlib.Path):
    """SignatureDef map of the serving MetaGraph in ``saved_model.pb`` (raises on a corrupt file)."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise FileNotFoundError(f"{pb}: no saved_model.pb (a SavedModel version folder needs one)")
    model = saved_model_pb2.SavedModel()
    model.ParseFromString(pb.read_bytes())
    if not model.meta_graphs:
        raise ValueError(f"{pb}: SavedModel has no MetaGraph")
    for meta_graph in model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    return model.meta_graphs[0].signature_def


class Servable:
    """A loaded version. ``run`` is thread-safe (TensorFlow functions may be called concurrently)."""

    def __init__(self, name: str, version: int, path: pathlib.Path, module: Any, signature_defs) -> None:
        self.name = name
        self.version = int(version)
        self.path = pathlib.Path(path)
        self.module = module
        self.signature_defs = signature_defs
        self.inputs = {k: {n: _spec(n, i) for n, i in s.inputs.items()} for k, s in signature_defs.items() if not k.startswith("__")}
        self.outputs = {k: {n: _spec(n, i) for n, i in s.outputs.items()} for k, s in signature_defs.items() if not k.startswith("__")}
        self.class_names = self._read_labels()
        self.signature_labels = {k: self._read_labels(f"labels_{k}.txt") for k in self.inputs}
        self.card = self._read_card()

    @classmethod
    def load(cls, name: str, version: int, path: str | pathlib.Path) -> "Servable":
        path = pathlib.Path(path)
        signature_defs = read_signature_defs(path)
        register_text_ops()
        module = tf.saved_model.load(str(path), tags=["serve"])
        return cls(name, version, path, module, signature_defs)

    def _read_labels(self, file_name: str = "labels.txt") -> list[str] | None:
        labels = self.path / "assets" / file_name
        if not labels.is_file():
            return None
        return [line.rstrip("\n") for line in labels.read_text(encoding="utf-8").splitlines() if line.strip()]

    def labels_for(self, signature: str) -> list[str] | None:
        """Label names of a signature's ``probabilities``: ``assets/labels_<signature>.txt`` (a head of
        a multitask version) when there is one, else ``assets/labels.txt``."""
        own = self.signature_labels.get(signature)
        return own if own is not None else self.class_names

    def _read_card(self) -> dict[str, Any]:
        card = self.path / "assets" / "llmos.json"
        try:
            return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}
        except ValueError:
            return {}

    @property
    def signature_names(self) -> list[str]:
        return sorted(self.inputs)

    def method_name(self, signature: str) -> str:
        return self.signature_defs[signature].method_name

    def check_signature(self, signature: str) -> None:
        if signature not in self.inputs:
            raise failed_precondition(
                f"Serving signature key {signature!r} not found in model {self.name!r} version {self.version}; "
                f"signatures: {', '.join(self.signature_names)}"
            )

    def expected(self, signature: str) -> str:
        return "; ".join(s.describe() for s in self.inputs[signature].values())

    def validate(self, signature: str, inputs: Mapping[str, np.ndarray]) -> int:
        """Check names, dtypes and shapes; return the batch size (rows)."""
        self.check_signature(signature)
        specs = self.inputs[signature]
        if not inputs:
            raise invalid_argument(f"request has no inputs; signature {signature!r} expects {self.expected(signature)}")
        if set(inputs) != set(specs):
            missing = sorted(set(specs) - set(inputs))
            extra = sorted(set(inputs) - set(specs))
            raise invalid_argument(
                f"input names do not match signature {signature!r}"
                + (f"; unknown: {', '.join(extra)}" if extra else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + f"; expected inputs: {self.expected(signature)}"
            )
        rows = None
        for name, value in inputs.items():
            spec = specs[name]
            got = tf.string if value.dtype.kind in "OSU" else tf.dtypes.as_dtype(value.dtype)
            if got != spec.dtype:
                raise invalid_argument(f"input {name!r} has dtype {got.name}; signature {signature!r} expects {self.expected(signature)}")
            if spec.shape is not None:
                if value.ndim != len(spec.shape) or any(d is not None and d != s for d, s in zip(spec.shape, value.shape)):
                    raise invalid_argument(
                        f"input {name!r} has shape {list(value.shape)}; signature {signature!r} expects {self.expected(signature)}"
                    )
            if value.ndim == 0:
                raise invalid_argument(f"input {name!r} is a scalar; a batch dimension is needed; expected {self.expected(signature)}")
            if rows is not None and value.shape[0] != rows:
                raise invalid_argument(f"inputs have different batch sizes ({rows} and {value.shape[0]})")
            rows = int(value.shape[0])
            if name == TEXT_INPUT and spec.dtype == tf.string:
                _check_utf8(name, value)
        if not rows:
            raise invalid_argument(f"request has an empty batch (0 rows); signature {signature!r} expects {self.expected(signature)}")
        return rows

    # the fixed cost of one signature call, in padded tokens, and of one time step of a recurrent model, in rows
    # (see length_groups); measured on MiniLM (48 tokens) and the distilled BiLSTM (a step costs what 32 rows do)
    CALL_COST_TOKENS = 48
    RECURRENT_STEP_COST_ROWS = 32

    @property
    def recurrent(self) -> bool:
        return (self.card.get("encoder") or {}).get("architecture") == "bilstm"

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the signature on already validated inputs.

        A batch of texts (a ``text``-only signature) runs as groups of similar length, shortest first, each
        padded to its own longest text (word count + 2 stands in for the token count); rows come back in order."""
        text = inputs.get(TEXT_INPUT) if set(inputs) == {TEXT_INPUT} else None
        if text is None or text.ndim != 1 or len(text) < 4:
            return self._call(signature, inputs)
        from llmos_tf.serving.length_groups import length_groups, merge_rows, take_rows

        lengths = [len(t.split()) + 2 if isinstance(t, (bytes, str)) else 1 for t in text]
        groups = length_groups(lengths, self.CALL_COST_TOKENS, step_cost=self.RECURRENT_STEP_COST_ROWS if self.recurrent else 0.0)
        if len(groups) == 1:
            return self._call(signature, inputs)
        return merge_rows([(rows, self._call(signature, take_rows(inputs, rows))) for rows in groups], len(text))

    def _call(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        function = self.module.signatures[signature]
        feeds = {name: tf.constant(value, dtype=self.inputs[signature][name].dtype) for name, value in inputs.items()}
        outputs = function(**feeds)
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def _check_utf8(name: str, value: np.ndarray) -> None:
    for index, item in enumerate(value.reshape(-1)):
        if isinstance(item, bytes):
            try:
                item.decode("utf-8")
            except UnicodeDecodeError as err:
                raise invalid_argument(f"input {name!r} element {index} is not valid UTF-8 text ({err.reason} at byte {err.start})") from None
