"""MirroredStrategy over 2 logical CPU devices matches the default strategy for the same global batch."""
import json
import subprocess
import sys
import textwrap

import pytest

from llmos_tf.errors import ConfigError
from llmos_tf.training.distribute import describe_choice, resolve_strategy

SCRIPT = textwrap.dedent(
    """
    import json, pathlib, sys
    import yaml
    import llmos_tf
    from llmos_tf._tf import tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from llmos_tf.config import config_from_dict
    from llmos_tf.training.trainer import train
    from tests.conftest import make_sentiment_rows, tiny_config_text, write_csv
    root = pathlib.Path(sys.argv[1])
    data = write_csv(root / "train.csv", make_sentiment_rows(240, seed=1))
    out = {}
    for strategy, per_replica in (("default", 16), ("mirrored", 8)):
        cfg = config_from_dict(
            yaml.safe_load(tiny_config_text(data, root / strategy, name=strategy, epochs=2)),
            ["model.dropout=0.0", f"training.batch_size={per_replica}", "data.bucketing=false"],
        )
        result = train(cfg, strategy=strategy, verbose=0)
        out[strategy] = {"replicas": result.info["replicas"], "loss": result.history["loss"], "val_accuracy": result.metrics["validation"]["accuracy"]}
    print("RESULT " + json.dumps(out))
    """
)


def test_mirrored_two_logical_cpus_matches_default(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=400, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["default"]["replicas"] == 1 and out["mirrored"]["replicas"] == 2
    # same global batch (16 = 2 x 8), same seed, no dropout: the same losses up to float reduction order
    for a, b in zip(out["default"]["loss"], out["mirrored"]["loss"]):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a))
    assert out["default"]["val_accuracy"] == out["mirrored"]["val_accuracy"]


def test_strategy_names_are_checked():
    assert describe_choice("auto") in ("default", "mirrored")
    with pytest.raises(ConfigError, match="valid: auto"):
        resolve_strategy("hogwild")
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        import os

        old = os.environ.pop("TF_CONFIG", None)
        try:
            resolve_strategy("multi_worker")
        finally:
            if old is not None:
                os.environ["TF_CONFIG"] = old
