"""``llmos doctor``: what this machine has, what ``--strategy auto`` would pick, and what would break on a TPU.

TPU readiness is checked on the model the config builds, traced the way a TPU
run feeds it (static ``[batch_size, max_length]`` inputs):

* config: ``data.tpu_mode`` must be on (fixed shapes, ``drop_remainder``);
* string ops or string inputs in the model graph (tokenization belongs in
  tf.data on the host; TPUs have no string type);
* dynamic shapes: graph tensors whose shape is still unknown although the
  input shape is fully static (``tf.where``, ``tf.unique``, boolean masks ...);
* unsupported ops: the model is compiled with XLA (what TPUs run), so ops
  without an XLA kernel (``py_function``, hash tables, text ops) are reported
  by XLA itself rather than by a hand-kept list.
"""
from __future__ import annotations

import os
import platform
from typing import Any

from llmos_tf._tf import tf, tf_keras

# placeholder texts: TPU findings depend on the architecture, not on the learnt words
# (a checkpoint-based model still gets its checkpoint's vocabulary from the architecture)
_TEXTS = [f"placeholder text number {i}" for i in range(64)]


def machine_report() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "cpus": os.cpu_count(),
        "devices": [f"{d.device_type}:{d.name}" for d in tf.config.list_logical_devices()],
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "tf_config": bool(os.environ.get("TF_CONFIG")),
    }


def example_inputs(model: tf_keras.Model, batch_size: int, length: int):
    """Zeros shaped like one TPU-mode batch, as a tensor or a dict matching ``model.input``."""
    spec = model.input
    if isinstance(spec, dict):
        return {name: tf.zeros([batch_size, length], t.dtype) for name, t in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [tf.zeros([batch_size, length], t.dtype) for t in spec]
    return tf.zeros([batch_size, length], spec.dtype)


def graph_findings(model: tf_keras.Model, batch_size: int, length: int) -> list[str]:
    """String ops, dynamic shapes and XLA-uncompilable ops in ``model``'s inference graph."""
    findings: list[str] = []
    inputs = example_inputs(model, batch_size, length)
    for spec in tf.nest.flatten(model.inputs):
        if spec.dtype == tf.string:
            findings.append(f"model input {spec.name} is a string: tokenize in tf.data on the host instead")
    if findings:
        return findings  # nothing below can be traced with numeric inputs
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(inputs).graph
    string_ops: dict[str, str] = {}
    dynamic: dict[str, str] = {}
    for op in graph.get_operations():
        for out in op.outputs:
            if out.dtype == tf.string:
                string_ops.setdefault(op.type, op.name)
            elif out.dtype not in (tf.variant, tf.resource) and (out.shape.rank is None or None in out.shape.as_list()):
                dynamic.setdefault(op.type, op.name)
    for op_type, name in sorted(string_ops.items()):
        findings.append(f"string op {op_type} ({name}) in the model graph: string ops must stay in tf.data on the host")
    for op_type, name in sorted(dynamic.items()):
        findings.append(f"dynamic shape: {op_type} ({name}) has an unknown output shape for a static input")
    try:
        tf.function(lambda x: model(x, training=False), jit_compile=True).experimental_get_compiler_ir(inputs)(stage="hlo")
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, ValueError) as err:
        message = " ".join(str(err).split())
        findings.append(f"XLA (the TPU compiler) cannot compile the model: {message[:400]}")
    return findings


def tpu_findings(cfg) -> list[str]:
    """Problems a run config would hit on a TPU (empty list = ready)."""
    from llmos_tf.models import registry

    findings = []
    if not cfg.data.tpu_mode:
        findings.append("data.tpu_mode is false: batches have dynamic shapes; set data.tpu_mode=true (pads to data.max_length, drop_remainder=True)")
    if cfg.data.tpu_mode and cfg.data.bucketing:
        findings.append("data.bucketing is ignored in TPU mode (fixed max_length padding is used)")
    arch = registry.get(cfg.architecture)
    model_cfg = registry.model_config(cfg.model)
    length = arch.max_length(model_cfg, cfg.data.max_length)
    vocabulary = arch.vocabulary(model_cfg, _TEXTS, cfg.text)
    model = arch.build(model_cfg, registry.BuildContext(num_labels=2, vocabulary=vocabulary, max_length=cfg.data.max_length))
    for layer in model.submodules:
        for weight in getattr(layer, "weights", []):
            if weight.dtype == tf.string:
                findings.append(f"layer {layer.name} holds a string weight: string ops must stay in tf.data on the host")
    return findings + graph_findings(model, cfg.training.batch_size, length)
