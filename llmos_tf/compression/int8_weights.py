"""Int8 weights inside a SavedModel: smaller versions that the stock ``tensorflow_model_server`` serves.

TFLite's post-training quantization keeps its int8 weights inside ``model.tflite``,
which TF Serving can only use through ``--prefer_tflite_model`` and which cannot
hold a tokenizer. :class:`QuantizedModel` puts the same kind of weights into the
SavedModel itself: every large kernel (``Dense``, ``EinsumDense``, LSTM/GRU
kernels, ``Embedding`` tables; at least :data:`MIN_ELEMENTS` values) becomes an
int8 variable with a float32 scale per output channel (per row for embedding
tables), and the serving graph dequantizes it with plain ``Cast`` and ``Mul``
right before use. Embedding tables are dequantized only for the gathered rows,
so the 30k-row WordPiece table costs nothing per call. Quantization is symmetric,
so pruning's zeros stay exact zeros and gzip sees them. Nothing but core
TensorFlow ops is involved: ``tf.saved_model.load`` (and TF Serving) needs no
llmos code.

Why not TensorFlow's own SavedModel quantizer
(``tensorflow.compiler.mlir.quantization.tensorflow.python.quantize_model``)?
Measured on an ``llmos export`` MiniLM classifier it left the attention einsums
float and ran 2.4x slower than float at batch 32; here every kernel is int8 on
disk and the float ops run at float speed.

Example::

    quantized = QuantizedModel(model)                 # a tf.Module; ``model`` is not tracked
    probs = quantized({"token_ids": ids}, training=False)
    quantized.summary()                               # int8 / float16 / float32 bytes
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.models import fused_lstm

MIN_ELEMENTS = 1024  # TFLite's dynamic-range threshold: smaller tensors (biases, norms) stay float
WEIGHT_DTYPES = ("int8", "float16", "float32")
EMBEDDING_BITS = (8, 4)
INT4_MIN_ROWS = 4096  # 4-bit goes to vocabulary tables only; position tables stay int8
INT4_GROUP = 64  # 4-bit tables: one float16 scale per 64 values of a row (as in GPTQ/AWQ-style group quantization)


@dataclass(frozen=True)
class _Target:
    """One weight to store compactly: ``layer.<attr>`` read as a tensor (matrix) or by rows (embedding)."""

    layer: Any
    attr: str
    variable: tf.Variable
    reduce_axes: tuple[int, ...]  # axes a scale is shared over (the kernel's input axes); rows: the last axis
    rows: bool  # an Embedding table: gather int8 rows, then dequantize just those


@dataclass(frozen=True)
class _FusedLSTM:
    """A ``Bidirectional(LSTM)`` traced with :mod:`llmos_tf.models.fused_lstm` (held here so it is not tracked)."""

    layer: Any


def _einsum_input_axes(equation: str, rank: int) -> tuple[int, ...]:
    """Axes of an EinsumDense kernel that are contracted (its input axes), from ``ab,bc->ac``-style equations."""
    match = re.match(r"^([a-zA-Z.]+),([a-zA-Z.]+)->([a-zA-Z.]+)$", equation.replace(" ", ""))
    if not match:
        return tuple(range(rank - 1))
    kernel, output = match.group(2), match.group(3)
    return tuple(i for i, letter in enumerate(kernel) if letter not in output)


def _targets(model: tf_keras.Model, min_elements: int) -> list[_Target]:
    found: list[_Target] = []
    seen: set[int] = set()

    def add(layer, attr: str, reduce_axes: tuple[int, ...], rows: bool = False) -> None:
        variable = getattr(layer, attr, None)
        if not isinstance(variable, tf.Variable) or id(variable) in seen:
            return
        if int(np.prod(variable.shape)) < min_elements or not variable.dtype.is_floating:
            return
        seen.add(id(variable))
        found.append(_Target(layer, attr, variable, reduce_axes, rows))

    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, tf_keras.layers.Embedding):
            add(layer, "embeddings", (1,), rows=True)
        elif isinstance(layer, tf_keras.layers.EinsumDense):
            add(layer, "kernel", _einsum_input_axes(layer.equation, len(layer.kernel.shape)) if hasattr(layer, "kernel") else (0,))
        elif isinstance(layer, tf_keras.layers.Dense):
            add(layer, "kernel", (0,))
        elif isinstance(layer, (tf_keras.layers.LSTMCell, tf_keras.layers.GRUCell, tf_keras.layers.SimpleRNNCell)):
            add(layer, "kernel", (0,))
            add(layer, "recurrent_kernel", (0,))
    return found


def quantize_symmetric(weights: np.ndarray, reduce_axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """int8 values and float32 scales (``weights ≈ q * scale``), one scale per slice outside ``reduce_axes``.

    Symmetric (no zero point): 0.0 maps to 0 exactly, so pruned weights stay zeros."""
    weights = np.asarray(weights, np.float32)
    peak = np.max(np.abs(weights), axis=reduce_axes, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(weights / scale), -127, 127).astype(np.int8)
    return q, scale


def quantize_int4_rows(table: np.ndarray, group: int = INT4_GROUP) -> tuple[np.ndarray, np.ndarray]:
    """A ``[rows, dim]`` table as packed 4-bit values (two per byte, ``[rows, dim/2]`` uint8) and float16
    scales per ``group`` values of a row (``[rows, dim/group]``). Levels -7..7 (stored +8): 0.0 stays 0."""
    table = np.asarray(table, np.float32)
    rows, dim = table.shape
    if dim % group or group % 2:
        raise ValueError(f"4-bit tables need a width divisible by {group}; got {dim}")
    grouped = table.reshape(rows, dim // group, group)
    peak = np.max(np.abs(grouped), axis=-1, keepdims=True)
    scale = np.where(peak > 0, peak / 7.0, 1.0).astype(np.float16)
    q = (np.clip(np.rint(grouped / scale.astype(np.float32)), -7, 7).astype(np.int16) + 8).reshape(rows, dim)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    return packed, scale.reshape(rows, dim // group)


def dequantize_int4_rows(packed: tf.Tensor, scale: tf.Tensor, group: int = INT4_GROUP) -> tf.Tensor:
    """Inverse of :func:`quantize_int4_rows` on gathered rows (any leading shape), with core TF ops only."""
    values = tf.cast(packed, tf.int32)
    low, high = tf.bitwise.bitwise_and(values, 15), tf.bitwise.right_shift(values, 4)
    shape = tf.shape(values)
    dim = packed.shape[-1] * 2
    q = tf.reshape(tf.stack([low, high], axis=-1), tf.concat([shape[:-1], [dim]], 0)) - 8
    scales = tf.repeat(tf.cast(scale, tf.float32), group, axis=-1)
    return tf.cast(q, tf.float32) * scales


class QuantizedModel(tf.Module):
    """A tf_keras model whose large weights are stored int8 (or float16) and dequantized in the graph.

    ``__call__`` has the wrapped model's signature (``inputs, training=False``). The
    Keras model itself is *not* tracked: saving this module writes the compact
    weights and the small float ones, never the float copies of the big ones.
    Use it where a SavedModel needs the model (e.g. as ``model`` of a serving module).
    ``weight_dtype="float32"`` quantizes nothing: the SavedModel then holds the float weights
    without the Keras object graph, whose traced layer functions made a BiLSTM's
    ``saved_model.pb`` 5.8 MB (420 functions).
    """

    def __init__(self, model: tf_keras.Model, weight_dtype: str = "int8", min_elements: int = MIN_ELEMENTS,
                 embedding_bits: int = 8, name: str | None = None, fused_lstm_dtype: str | None = "float32"):
        super().__init__(name=name or f"{weight_dtype}_{model.name}")
        if weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weight_dtype: expected one of {', '.join(WEIGHT_DTYPES)}, got {weight_dtype!r}")
        if embedding_bits not in EMBEDDING_BITS or (embedding_bits == 4 and weight_dtype != "int8"):
            raise ValueError(f"embedding_bits: 8, or 4 with int8 weights; got {embedding_bits}")
        if fused_lstm_dtype is not None and fused_lstm_dtype not in fused_lstm.COMPUTE_DTYPES:
            raise ValueError(f"fused_lstm_dtype: expected None or one of {', '.join(fused_lstm.COMPUTE_DTYPES)}, got {fused_lstm_dtype!r}")
        self.weight_dtype = weight_dtype
        self.embedding_bits = embedding_bits
        self.fused_lstm_dtype = fused_lstm_dtype
        # Bidirectional LSTMs trace as one loop over both directions (same outputs, fewer and larger matmuls)
        self._fused = [_FusedLSTM(layer) for layer in model._flatten_layers(include_self=False)
                       if fused_lstm_dtype is not None and fused_lstm.supports(layer)]
        self._keras_call = model.__call__  # a bound method: not tracked, so the float copies are not saved
        self._model_name = model.name
        self._targets = _targets(model, min_elements) if weight_dtype != "float32" else []
        compact, scales = [], []
        for target in self._targets:
            value = target.variable.numpy()
            base = target.variable.name.split(":")[0]
            if target.rows and embedding_bits == 4 and value.shape[0] >= INT4_MIN_ROWS and value.shape[-1] % INT4_GROUP == 0:
                q, scale = quantize_int4_rows(value)
                compact.append(tf.Variable(q, trainable=False, name=f"{base}_int4"))
                scales.append(tf.Variable(scale, trainable=False, name=f"{base}_int4_scale"))
            elif weight_dtype == "int8":
                q, scale = quantize_symmetric(value, target.reduce_axes)
                compact.append(tf.Variable(q, trainable=False, name=f"{base}_int8"))
                scales.append(tf.Variable(scale, trainable=False, name=f"{base}_scale"))
            else:
                compact.append(tf.Variable(value.astype(np.float16), trainable=False, name=f"{base}_float16"))
                scales.append(None)
        self.compact_weights = compact
        self.scales = [s for s in scales if s is not None]
        self._scale_of = scales
        replaced = {id(t.variable) for t in self._targets}
        # everything else the graph reads (biases, LayerNorm, small kernels) stays float32 and is saved as is
        self.float_weights = [w for w in model.weights if id(w) not in replaced]

    # -- the graph ------------------------------------------------------------
    def _dequantize(self, index: int, ids: tf.Tensor | None = None) -> tf.Tensor:
        values = self.compact_weights[index]
        scale = self._scale_of[index]
        if ids is not None:
            values = tf.gather(values, ids)
            scale = tf.gather(scale, ids) if scale is not None else None
        if values.dtype == tf.uint8:  # packed 4-bit rows
            return dequantize_int4_rows(values, scale)
        out = tf.cast(values, tf.float32)
        return out * scale if scale is not None else out

    @contextlib.contextmanager
    def _dequantized(self) -> Iterator[None]:
        """While tracing: the model's layers read dequantized tensors instead of their float variables."""
        restore: list[tuple[Any, str, Any, bool]] = []
        try:
            for index, target in enumerate(self._targets):
                layer = target.layer
                if target.rows:
                    had_own = "call" in vars(layer)
                    restore.append((layer, "call", vars(layer).get("call"), had_own))
                    object.__setattr__(layer, "call", self._embedding_call(index, layer))
                else:
                    restore.append((layer, target.attr, target.variable, True))
                    # object.__setattr__: a plain attribute swap, invisible to Keras' weight tracking
                    object.__setattr__(layer, target.attr, self._dequantize(index))
            for fused in self._fused:
                layer = fused.layer
                restore.append((layer, "call", vars(layer).get("call"), "call" in vars(layer)))
                object.__setattr__(layer, "call", fused_lstm.fused_call(layer, self.fused_lstm_dtype))
            yield
        finally:
            for layer, attr, value, had_own in reversed(restore):
                if had_own:
                    object.__setattr__(layer, attr, value)
                else:
                    object.__delattr__(layer, attr)

    def _embedding_call(self, index: int, layer):
        dtype = layer.compute_dtype

        @tf.autograph.experimental.do_not_convert
        def call(inputs, *args, **kwargs):
            ids = tf.cast(inputs, tf.int32)
            return tf.cast(self._dequantize(index, ids), dtype)

        return call

    def __call__(self, inputs, training: bool = False):
        with self._dequantized():
            return self._keras_call(inputs, training=False)

    # -- facts ----------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Bytes by storage type and the quantized weights' names (for the model card)."""
        compact = sum(int(np.prod(v.shape)) * v.dtype.size for v in self.compact_weights)
        scales = sum(int(np.prod(v.shape)) * v.dtype.size for v in self.scales)
        floats = sum(int(np.prod(v.shape)) * v.dtype.size for v in self.float_weights)
        return {
            "weight_dtype": self.weight_dtype,
            "fused_lstm": {"layers": [f.layer.name for f in self._fused], "compute_dtype": self.fused_lstm_dtype} if self._fused else None,
            "quantized_weights": [t.variable.name for t in self._targets],
            "scheme": ("symmetric, per output channel (per row for embedding tables)" if self.weight_dtype == "int8" else "float16 storage")
            + (f"; embedding tables 4-bit, a float16 scale per {INT4_GROUP} values" if self.embedding_bits == 4 else ""),
            f"{self.weight_dtype}_bytes": compact,
            "scale_bytes": scales,
            "float32_bytes": floats,
        }
