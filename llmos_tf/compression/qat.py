"""Quantization-aware training with ``tfmot.quantization.keras`` (optionally sparsity-preserving).

Only layers that TF-MOT's default 8-bit registry has a ``QuantizeConfig`` for are
annotated (``quantize_annotate_layer``); everything else stays float and is
named with the reason in the result, because forcing a config onto a layer
TFLite would not quantize the same way makes the fake-quant training lie. With
tf_keras 2.21 / TF-MOT 0.8 that registry covers ``Dense`` (and passes
``Dropout`` through); ``Embedding``, ``LSTM``/``Bidirectional`` cells,
``MultiHeadAttention``, ``LayerNormalization`` and our custom BERT blocks are
commented out or absent there, so they train in float and TFLite's converter
quantizes their weights post-training. After pruning, ``preserve_sparsity``
applies TF-MOT's ``Default8BitPrunePreserveQuantizeScheme``
(``tfmot.experimental.combine``) so fine-tuning does not refill the zeros.

Example::

    result = quantization_aware_train(run, epochs=1)
    result.quantized_layers    # ["classifier"]
    result.float_layers[0]     # {"layer": "bilstm_1", "reason": "..."}
"""
from __future__ import annotations

from dataclasses import dataclass, field

from llmos_tf._tf import tf_keras

import tensorflow_model_optimization as tfmot  # noqa: E402  (after llmos_tf._tf picked tf_keras)

quantize = tfmot.quantization.keras


@dataclass
class FloatLayer:
    layer: str
    reason: str


@dataclass
class QatResult:
    model: tf_keras.Model
    quantized_layers: list[str]
    float_layers: list[FloatLayer]
    history: dict = field(default_factory=dict)


def _registry():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry import (
        Default8BitQuantizeRegistry,
    )

    return Default8BitQuantizeRegistry()


def annotate(model: tf_keras.Model) -> tuple[tf_keras.Model, list[str], list[FloatLayer]]:
    """Clone ``model`` with every registry-supported top-level layer annotated for quantization."""
    registry = _registry()
    quantized: list[str] = []
    floats: list[FloatLayer] = []

    def mark(layer):
        if isinstance(layer, tf_keras.Model):
            floats.append(FloatLayer(layer.name, f"nested model ({len(layer.layers)} layers): quantize_apply only rewrites top-level "
                                                 "layers, and its BERT blocks/attention/LayerNorm have no 8-bit QuantizeConfig"))
            return layer
        if not layer.weights:
            return layer
        if registry.supports(layer):
            quantized.append(layer.name)
            return quantize.quantize_annotate_layer(layer)
        floats.append(FloatLayer(layer.name, f"{type(layer).__name__} has no QuantizeConfig in TF-MOT's default 8-bit registry "
                                             "(weights still become int8 in the TFLite conversion)"))
        return layer

    annotated = tf_keras.models.clone_model(model, clone_function=mark)
    annotated.set_weights(model.get_weights())
    return annotated, quantized, floats


def quantization_aware_train(run, *, model: tf_keras.Model | None = None, epochs: int = 1, steps_per_epoch: int | None = None,
                             preserve_sparsity: bool = False, learning_rate: float | None = None, verbose: int = 0) -> QatResult:
    """Annotate, ``quantize_apply`` and fine-tune ``model`` (default: the run's) on the run's training data."""
    from llmos_tf.compression.run_data import fine_tune_data
    from llmos_tf.errors import ConfigError

    base = model if model is not None else run.model
    annotated, quantized, floats = annotate(base)
    if not quantized:
        raise ConfigError("quantization-aware training: no layer of this model is supported by TF-MOT's 8-bit registry: "
                          + "; ".join(f"{f.layer}: {f.reason}" for f in floats))
    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme() if preserve_sparsity else None
    with quantize.quantize_scope():
        qat_model = quantize.quantize_apply(annotated, scheme) if scheme is not None else quantize.quantize_apply(annotated)
    data = fine_tune_data(run, steps_per_epoch=steps_per_epoch)
    lr = learning_rate or float(run.config.training.learning_rate) * (0.2 if run.config.architecture == "bert" else 0.1)
    qat_model.compile(optimizer=tf_keras.optimizers.Adam(lr, clipnorm=1.0), loss=data.loss, metrics=data.metrics)
    history = qat_model.fit(data.dataset, epochs=epochs, steps_per_epoch=data.steps_per_epoch, verbose=verbose)
    return QatResult(qat_model, quantized, floats, {k: [float(x) for x in v] for k, v in history.history.items()})
