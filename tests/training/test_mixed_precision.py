"""``--mixed_precision``: bfloat16/float16 compute while training, float32 probabilities out, the global policy restored.

Both policies train on this CPU-only machine (TF 2.21 has CPU kernels for both;
float16 warns that only GPUs run it fast), so both are tested.
"""
import numpy as np
import pytest

from llmos_tf._tf import tf_keras
from llmos_tf.cli import main
from llmos_tf.config import config_from_dict
from llmos_tf.errors import ConfigError
from llmos_tf.training.precision import check_policy, loss_scaled, precision_policy
from tests.conftest import tiny_config_text


@pytest.mark.parametrize("policy,compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_training_saves_a_float32_output_model(tmp_path, tiny_data, policy, compute):
    from llmos_tf.tasks.classification import TrainedRun

    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_config_text(tiny_data["train"], tmp_path / "runs", name=compute, epochs=3))
    assert main(["train", str(config), "--mixed_precision", policy, "--strategy", "default"]) == 0
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # only the training used the policy

    run = TrainedRun.load(tmp_path / "runs" / compute)
    assert run.config.training.mixed_precision == policy
    assert run.model.get_layer("bilstm_1").compute_dtype == compute
    assert run.model.get_layer("embedding").variable_dtype == "float32"  # weights stay float32
    probs = run.predict_proba(["the film was wonderful and lovely", "the plot was awful and boring"])
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    assert probs.argmax(axis=1).tolist() == [run.labels.names.index("positive"), run.labels.names.index("negative")]
    assert run.info["metrics"]["validation"]["accuracy"] >= 0.9


def test_float16_wraps_the_optimizer_in_loss_scaling():
    opt = loss_scaled(tf_keras.optimizers.Adam(1e-3), "mixed_float16")
    assert isinstance(opt, tf_keras.mixed_precision.LossScaleOptimizer)
    assert not isinstance(loss_scaled(tf_keras.optimizers.Adam(1e-3), "mixed_bfloat16"), tf_keras.mixed_precision.LossScaleOptimizer)
    with precision_policy("mixed_float16"):
        layer = tf_keras.layers.Dense(2)
        out = tf_keras.layers.Dense(2, dtype="float32")
    assert layer.compute_dtype == "float16" and out.compute_dtype == "float32"
    assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_unknown_policy_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="training.mixed_precision: unknown policy 'float8'; valid: float32, mixed_float16, mixed_bfloat16"):
        config_from_dict({"data": {"train": "x.csv"}}, ["training.mixed_precision=float8"])
    with pytest.raises(ConfigError, match="valid: float32"):
        check_policy("half")
    assert check_policy(None) == "float32"
