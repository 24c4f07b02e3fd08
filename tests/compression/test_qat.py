"""Quantization-aware training trains; sparsity-preserving QAT keeps the pruned zeros."""
from __future__ import annotations

import math

import numpy as np


def test_qat_trains_and_names_float_layers(tiny_run):
    from llmos_tf.compression.qat import quantization_aware_train

    result = quantization_aware_train(tiny_run, epochs=2, steps_per_epoch=6)
    losses = result.history["loss"]
    assert len(losses) == 2 and all(math.isfinite(l) for l in losses)
    assert result.quantized_layers == ["classifier"]
    reasons = {f.layer: f.reason for f in result.float_layers}
    assert "bilstm_1" in reasons and "QuantizeConfig" in reasons["bilstm_1"]
    assert any("quant" in l.name for l in result.model.layers)


def test_pruning_preserving_qat_keeps_zeros(tiny_run, pruned):
    from llmos_tf.compression.qat import quantization_aware_train

    before = pruned.model.get_layer("classifier").kernel.numpy()
    result = quantization_aware_train(tiny_run, model=pruned.model, epochs=1, steps_per_epoch=6, preserve_sparsity=True)
    wrapper = next(l for l in result.model.layers if l.name.endswith("classifier"))
    after = next(w for w in wrapper.trainable_weights if w.name.endswith("kernel:0")).numpy()
    assert np.all(after[before == 0] == 0), "PQAT refilled pruned weights"
    assert not np.allclose(after[before != 0], before[before != 0]), "the kept weights did not train"
