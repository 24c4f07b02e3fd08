"""MirroredStrategy over 2 logical CPU devices matches the default strategy for the same global batch (BiLSTM and tiny BERT)."""
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
    TINY_BERT = {"architecture": "bert", "encoder": None, "num_layers": 1, "hidden_dim": 16, "num_heads": 2,
                 "intermediate_dim": 32, "max_sequence_length": 32, "dropout": 0.0}
    out = {}
    for arch in ("bilstm", "bert"):
        for strategy, per_replica in (("default", 16), ("mirrored", 8)):
            values = yaml.safe_load(tiny_config_text(data, root / arch / strategy, name=strategy, epochs=2))
            if arch == "bert":
                values["model"] = TINY_BERT
            cfg = config_from_dict(values, ["model.dropout=0.0", f"training.batch_size={per_replica}", "data.bucketing=false"])
            result = train(cfg, strategy=strategy, verbose=0)
            out[f"{arch}/{strategy}"] = {"replicas": result.info["replicas"], "loss": result.history["loss"], "val_accuracy": result.metrics["validation"]["accuracy"]}
    print("RESULT " + json.dumps(out))
    """
)


def test_mirrored_two_logical_cpus_matches_default(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    # same global batch (16 = 2 x 8), same seed, no dropout: the same losses up to float reduction order,
    # which attention + LayerNorm + Adam(lr=0.01) amplify over BERT's second epoch (measured: 0.26 % apart)
    tolerance = {"bilstm": 1e-4, "bert": 1e-2}
    for arch in ("bilstm", "bert"):
        default, mirrored = out[f"{arch}/default"], out[f"{arch}/mirrored"]
        assert default["replicas"] == 1 and mirrored["replicas"] == 2
        assert len(default["loss"]) == len(mirrored["loss"]) == 2
        assert abs(default["loss"][0] - mirrored["loss"][0]) <= 1e-4 * max(1.0, default["loss"][0]), (arch, default["loss"], mirrored["loss"])
        for a, b in zip(default["loss"], mirrored["loss"]):
            assert abs(a - b) <= tolerance[arch] * max(1.0, abs(a)), (arch, default["loss"], mirrored["loss"])
        assert default["val_accuracy"] == mirrored["val_accuracy"], arch


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


TFMOT_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import llmos_tf
    from llmos_tf._tf import tf, tf_keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tensorflow_model_optimization as tfmot
    from llmos_tf.training.distribute import check_compression_strategy
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one instance for both techniques
    x = np.random.RandomState(0).randn(256, 8).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    out = {}
    for what in ("prune", "qat"):
        check_compression_strategy(strategy, what)
        tf_keras.utils.set_random_seed(0)
        with strategy.scope():
            inputs = tf_keras.Input((8,))
            model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, activation="softmax")(tf_keras.layers.Dense(16, activation="relu")(inputs)))
            callbacks = []
            if what == "prune":
                model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1))
                callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
            else:
                model = tfmot.quantization.keras.quantize_model(model)
            model.compile(tf_keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(ds, epochs=4, verbose=0, callbacks=callbacks)
        out[what] = {"accuracy": history.history["accuracy"][-1]}
        if what == "prune":
            kernel = tfmot.sparsity.keras.strip_pruning(model).layers[1].kernel.numpy()
            out[what]["sparsity"] = float((kernel == 0).mean())
    print("RESULT " + json.dumps(out))
    """
)


def test_tfmot_pruning_and_qat_train_under_mirrored_strategy(tmp_path):
    done = subprocess.run([sys.executable, "-c", TFMOT_SCRIPT], capture_output=True, text=True, timeout=300, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads([l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1][len("RESULT "):])
    assert out["prune"]["sparsity"] == 0.5 and out["prune"]["accuracy"] > 0.9
    assert out["qat"]["accuracy"] > 0.9


def test_compression_strategy_check_fails_up_front_on_tpu():
    from llmos_tf._tf import tf
    from llmos_tf.training.distribute import check_compression_strategy, strategy_kind

    assert strategy_kind(tf.distribute.get_strategy()) == "default"
    for what in ("prune", "qat", "distill", "ptq"):
        check_compression_strategy("default", what)
        check_compression_strategy("mirrored", what)
        check_compression_strategy("multi_worker", what)
    check_compression_strategy("tpu", "distill")
    with pytest.raises(ConfigError, match="--strategy tpu: TF-MOT pruning cannot run under this strategy"):
        check_compression_strategy("tpu", "prune")
    with pytest.raises(ConfigError, match="quantization-aware training"):
        check_compression_strategy("tpu", "qat")
    with pytest.raises(ConfigError, match="valid: prune, qat, distill, ptq"):
        check_compression_strategy("default", "cluster")


def test_multi_worker_is_refused_for_runs_without_chief_only_writes(tmp_path):
    from llmos_tf.config import config_from_dict
    from llmos_tf.errors import RunError
    from llmos_tf.training.trainer import train

    cfg = config_from_dict({"task": "ner", "output_dir": str(tmp_path), "data": {"train": str(tmp_path / "train.conll")}})
    with pytest.raises(RunError, match="multi-worker training is implemented for classification runs"):
        train(cfg, strategy="multi_worker")
    assert not any(tmp_path.iterdir())  # refused before any folder was written


def test_tf_config_errors_name_the_field(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG: not valid JSON"):
        resolve_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ConfigError, match=r"TF_CONFIG.task: worker:3 is not in cluster \['worker'\]"):
        resolve_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"task": {"type": "worker", "index": 0}}))
    with pytest.raises(ConfigError, match="TF_CONFIG.cluster"):
        resolve_strategy("auto")
