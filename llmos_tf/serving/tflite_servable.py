"""A version served from its ``model.tflite`` (``--prefer_tflite_model``), same API as a SavedModel.

TF Serving's ``--prefer_tflite_model`` loads ``<version>/model.tflite`` instead
of the SavedModel. A TFLite file cannot hold a tokenizer's string ops, so an
llmos version carries the two halves of its signature in the SavedModel
(``preprocess``: text → token ids, ``postprocess``: probabilities → labels or
tags, no weights needed) and the model itself in ``model.tflite``. This
servable chains them: a client sees the same ``serving_default`` (``text`` in,
``probabilities``/``label``/``class_id`` or ``tags``/``token_count`` out) as
from the float SavedModel, over the same gRPC and REST APIs.

TFLite interpreters are not thread-safe: calls go through a lock (the batching
scheduler already merges concurrent requests into one call).
"""
from __future__ import annotations

import os
import pathlib
import threading
from typing import Mapping

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2

from llmos_tf._tf import tf
from llmos_tf.serving.servable import Servable, read_signature_defs, register_text_ops

from llmos_tf.export.signatures import POSTPROCESS, PREPROCESS  # noqa: E402  (the names exports write)
from llmos_tf.export.writer import TFLITE_FILE  # noqa: E402

PREDICT_METHOD = "tensorflow/serving/predict"


def served_signature(defs) -> meta_graph_pb2.SignatureDef:
    """``serving_default`` as a client sees it: preprocess's inputs, postprocess's outputs."""
    sig = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for key, info in defs[PREPROCESS].inputs.items():
        sig.inputs[key].CopyFrom(info)
    for key, info in defs[POSTPROCESS].outputs.items():
        sig.outputs[key].CopyFrom(info)
    return sig


class TFLiteServable(Servable):
    """preprocess (TensorFlow) → ``model.tflite`` (TFLite interpreter) → postprocess (TensorFlow)."""

    @classmethod
    def load(cls, name: str, version: int, path: str | pathlib.Path, threads: int | None = None) -> "TFLiteServable":
        from llmos_tf.compression.tflite import TFLiteRunner, make_interpreter

        path = pathlib.Path(path)
        tflite = path / TFLITE_FILE
        if not tflite.is_file():
            raise FileNotFoundError(f"{tflite}: no TFLite model in this version")
        defs = read_signature_defs(path)
        missing = [k for k in (PREPROCESS, POSTPROCESS) if k not in defs]
        if missing:
            raise ValueError(f"{path}: has {TFLITE_FILE} but no {' or '.join(missing)} signature to put the tokenizer in front "
                             "of it; export it with `llmos compress` (or serve the SavedModel without --prefer_tflite_model)")
        register_text_ops()
        module = tf.saved_model.load(str(path), tags=["serve"])
        servable = cls(name, version, path, module, {"serving_default": served_signature(defs)})
        # TFLite runs on one thread unless told otherwise; batches are already serialized by the lock below
        servable.runner = TFLiteRunner(make_interpreter(path=str(tflite), threads=threads or os.cpu_count() or 1))
        servable._post_inputs = list(defs[POSTPROCESS].inputs)
        servable._lock = threading.Lock()
        return servable

    # the fixed cost of one interpreter call (resize + invoke), in padded tokens (see length_groups)
    CALL_COST_TOKENS = 24

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Tokenize the whole batch once, run the interpreter on groups of similar length (each trimmed to its
        own longest row), then postprocess the whole batch: the answers equal one padded call's."""
        from llmos_tf.serving.length_groups import length_groups

        pre = self.module.signatures[PREPROCESS](text=tf.constant(inputs["text"], dtype=tf.string))
        model_inputs = {k: pre[k].numpy() for k in self.runner.input_names}
        ids = model_inputs.get("token_ids", next(iter(model_inputs.values())))
        lengths = np.maximum((ids != 0).sum(axis=1), 1)
        groups = [list(range(len(ids)))] if self.runner.static_shape else length_groups(lengths, self.CALL_COST_TOKENS)
        parts = []
        with self._lock:
            for rows in groups:
                width = int(lengths[rows].max()) if self.runner.static_shape is None else ids.shape[1]
                parts.append((rows, self.runner({k: v[rows, :width] for k, v in model_inputs.items()})))
        first = parts[0][1]
        probabilities = np.zeros((len(ids),) + (ids.shape[1:] if first.ndim == 3 else ()) + first.shape[-1:], np.float32)
        for rows, out in parts:
            if out.ndim == 3:  # a tagger: [rows, width, tags] back into the batch's full width
                width = min(out.shape[1], probabilities.shape[1])  # a static-shape (LSTM) model pads beyond it
                probabilities[rows, :width] = out[:, :width]
            else:
                probabilities[rows] = out
        feeds = {k: (tf.constant(probabilities) if k == "probabilities" else pre[k]) for k in self._post_inputs}
        outputs = self.module.signatures[POSTPROCESS](**feeds)
        return {k: v.numpy() for k, v in outputs.items()}
