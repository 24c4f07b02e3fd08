"""``llmos doctor``: what this machine has, what ``--strategy auto`` would pick, and what would break on a TPU."""
from __future__ import annotations

import os
import platform
from typing import Any

from llmos_tf._tf import tf, tf_keras


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


def tpu_findings(cfg) -> list[str]:
    """Problems a run config would hit on a TPU (empty list = ready)."""
    from llmos_tf.models import registry

    findings = []
    if not cfg.data.tpu_mode:
        findings.append("data.tpu_mode is false: batches have dynamic shapes; set data.tpu_mode=true (pads to data.max_length, drop_remainder=True)")
    if cfg.data.tpu_mode and cfg.data.bucketing:
        findings.append("data.bucketing is ignored in TPU mode (fixed max_length padding is used)")
    arch = registry.get(cfg.architecture)
    model = arch.build(registry.model_config(cfg.model), registry.BuildContext(num_labels=2, vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(59)], max_length=cfg.data.max_length))
    for layer in model.submodules:
        for weight in getattr(layer, "weights", []):
            if weight.dtype == tf.string:
                findings.append(f"layer {layer.name} holds a string weight: string ops must stay in tf.data on the host")
    inputs = model.inputs if isinstance(model.inputs, list) else [model.inputs]
    for spec in inputs:
        if spec.dtype == tf.string:
            findings.append(f"model input {spec.name} is a string: tokenize in tf.data instead")
    return findings
