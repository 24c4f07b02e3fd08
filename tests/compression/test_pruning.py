"""TF-MOT pruning: every pruned weight reaches its target, wrappers are stripped, zeros survive save/load."""
from __future__ import annotations

import numpy as np
import pytest

from llmos_tf._tf import tf_keras
from tests.compression.conftest import bert_batch, tiny_bert_classifier


def test_each_pruned_bilstm_weight_reaches_target(pruned):
    names = {r.layer for r in pruned.layers}
    # the Bidirectional LSTM (through PrunableBidirectional), the embedding and the head are all pruned
    assert {"embedding", "bilstm_1", "classifier"} <= names, names
    assert any("recurrent_kernel" in r.weight for r in pruned.layers)
    for row in pruned.layers:
        assert abs(row.sparsity - 0.8) <= 0.01, row
    assert abs(pruned.overall_sparsity - 0.8) <= 0.01
    schedule = pruned.schedule
    assert schedule["begin_step"] == 0 and (schedule["end_step"] - schedule["begin_step"]) % schedule["frequency"] == 0


def test_stripped_model_is_plain_and_zeros_survive_save(pruned, tmp_path):
    from llmos_tf.compression.pruning import PrunableBidirectional, PruneLowMagnitude, weight_sparsity

    layers = pruned.model.layers
    assert not any(isinstance(l, (PruneLowMagnitude, PrunableBidirectional)) for l in layers)
    assert any(type(l) is tf_keras.layers.Bidirectional for l in layers)
    path = tmp_path / "pruned.keras"
    pruned.model.save(path)
    import llmos_tf.models.layers  # noqa: F401

    loaded = tf_keras.models.load_model(path, compile=False)
    # weight names gain a prefix on reload; the per-layer zero counts, in order, must not change
    before = [(r.layer, r.zeros) for r in weight_sparsity(pruned.model)]
    after = [(r.layer, r.zeros) for r in weight_sparsity(loaded)]
    assert before == after and sum(z for _, z in after) > 0
    ids = np.array([[5, 6, 7, 0]], np.int32)
    np.testing.assert_allclose(pruned.model(ids).numpy(), loaded(ids).numpy(), atol=1e-6)


def test_pruning_summaries_reach_tensorboard(pruned):
    from tensorboard.backend.event_processing import event_accumulator

    files = list(pruned.log_dir.rglob("events.out.tfevents.*"))
    assert files, "PruningSummaries wrote no event file"
    tags = set()
    for f in files:
        acc = event_accumulator.EventAccumulator(str(f), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["tensors"])
    assert any("sparsity" in t for t in tags), tags


def test_embeddings_can_stay_dense_and_are_reported(tiny_run):
    from llmos_tf.compression.pruning import add_pruning, schedule_for

    _, skipped = add_pruning(tiny_run.model, schedule_for(20, 0.5), prune_embeddings=False)
    reasons = {s.layer: s.reason for s in skipped}
    assert "embedding" in reasons and "no_prune_embeddings" in reasons["embedding"]


def test_bert_attention_and_feed_forward_are_pruned():
    from llmos_tf.compression.pruning import PruneLowMagnitude, add_pruning, schedule_for, sparsity, strip, weight_sparsity

    model = tiny_bert_classifier()
    x, y = bert_batch()
    steps = 12
    pruned, skipped = add_pruning(model, schedule_for(steps, 0.7))
    inner = [l for l in pruned.layers if isinstance(l, tf_keras.Model)][0]
    wrapped = {l.layer.name for l in inner.layers if isinstance(l, PruneLowMagnitude)}
    assert {"embeddings", "transformer_layer_0", "transformer_layer_1"} <= wrapped, wrapped
    pruned.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    pruned.fit(x, y, batch_size=8, epochs=3, callbacks=[sparsity.UpdatePruningStep()], verbose=0)  # 12 steps
    rows = [r for r in weight_sparsity(strip(pruned)) if r.layer.startswith("transformer_layer")]
    weights = {r.weight.split("/")[-2] + "/" + r.weight.split("/")[-1] for r in rows}
    assert any("query" in w for w in weights) and any("intermediate" in w or "kernel" in w for w in weights)
    for row in rows:
        assert abs(row.sparsity - 0.7) <= 0.01, row
    # LayerNormalization is not a pruning target: nothing of it is wrapped on its own
    assert all("layer_norm" not in r.weight for r in rows)


def test_structured_2_4_leaves_two_of_every_four(tiny_run):
    from llmos_tf.compression.pruning import add_pruning, schedule_for, sparsity, strip

    model = tiny_bert_classifier()
    x, y = bert_batch()
    pruned, skipped = add_pruning(model, schedule_for(8, 0.5), structured_2_4=True)
    pruned.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    pruned.fit(x, y, batch_size=8, epochs=2, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    stripped = strip(pruned)
    head = stripped.get_layer("classifier").kernel.numpy()  # [16, 3]: groups of 4 along the input axis
    assert np.all(np.sum(head.T.reshape(-1, 4) == 0, axis=1) >= 2)
    # the transformer blocks are pruned too: their rank-3 attention kernels as [inputs, outputs] matrices
    assert not [s for s in skipped if s.layer.startswith("transformer_layer")], skipped
    block = [l for l in stripped.layers if isinstance(l, tf_keras.Model)][0].get_layer("transformer_layer_0")
    attention = block.attention
    matrices = {
        "query": attention._query_dense.kernel.numpy().reshape(16, -1),   # [hidden, heads, head_dim]
        "output": attention._output_dense.kernel.numpy().reshape(-1, 16),  # [heads, head_dim, hidden]
        "intermediate": block.intermediate_dense.kernel.numpy(),
    }
    for name, matrix in matrices.items():
        zeros = np.sum(matrix.T.reshape(-1, 4) == 0, axis=1)
        assert np.all(zeros >= 2), (name, zeros)


def test_2_4_names_kernels_it_cannot_group():
    from llmos_tf.compression.pruning import _why_not

    dense = tf_keras.layers.Dense(4, name="odd_inputs")
    dense.build((None, 6))
    assert "divisible by 4" in _why_not(dense, True, True)
    assert _why_not(dense, True, False) is None


def test_bad_target_is_a_clear_error(tiny_run):
    from llmos_tf.compression.pruning import prune_run
    from llmos_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="target_sparsity"):
        prune_run(tiny_run, target_sparsity=1.5)


def test_pruning_leaves_the_dense_model_dense(tiny_run, pruned, trained_run):
    """Pruning works on a copy: after ``pruned`` ran, the run's model holds exactly the weights of its
    ``model.keras`` (not a single weight zeroed, changed or fine-tuned in place)."""
    from llmos_tf.compression.pruning import weight_sparsity
    from llmos_tf.compression.run_data import load_trained

    on_disk = load_trained(trained_run).model
    assert [w.name for w in tiny_run.model.weights] == [w.name for w in on_disk.weights]
    for used, saved in zip(tiny_run.model.weights, on_disk.weights):
        assert np.array_equal(used.numpy(), saved.numpy()), used.name
    dense = {(r.layer, r.weight): r.zeros for r in weight_sparsity(tiny_run.model)}
    assert dense == {(r.layer, r.weight): r.zeros for r in weight_sparsity(on_disk)}
    assert pruned.overall_sparsity > 0.7  # while the copy was pruned


def test_pruning_can_learn_from_the_dense_model(tiny_run):
    """``distill_alpha``: the dense model teaches its pruned copy; the pruning callbacks still drive the masks."""
    from llmos_tf.compression.pruning import prune_run

    guided = prune_run(tiny_run, target_sparsity=0.8, epochs=1, steps_per_epoch=6, distill_alpha=0.5)
    for row in guided.layers:
        assert abs(row.sparsity - 0.8) <= 0.01, row
    assert {"hard_loss", "distill_loss", "accuracy"} <= set(guided.history), guided.history.keys()


def test_teacher_guided_fine_tune_moves_the_student_towards_the_teacher():
    """With alpha 0 only the teacher's soft targets count: the student's KL from the teacher falls, the
    teacher's weights do not move, and the gold labels (random here) are ignored."""
    from llmos_tf.compression.dense_teacher import TeacherGuidedFineTune

    def mlp(seed):
        tf_keras.utils.set_random_seed(seed)
        inputs = tf_keras.Input((8,))
        hidden = tf_keras.layers.Dense(16, activation="relu")(inputs)
        return tf_keras.Model(inputs, tf_keras.layers.Dense(3, activation="softmax")(hidden))

    teacher, student = mlp(0), mlp(1)
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=256).astype("int32")
    teacher_before = [w.copy() for w in teacher.get_weights()]

    def kl():
        p, q = np.clip(teacher(x).numpy(), 1e-7, 1), np.clip(student(x).numpy(), 1e-7, 1)
        return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))

    before = kl()
    guided = TeacherGuidedFineTune(student, teacher, tf_keras.losses.SparseCategoricalCrossentropy(), alpha=0.0, temperature=1.0)
    guided.compile(optimizer=tf_keras.optimizers.Adam(0.01), metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    history = guided.fit(x, y, batch_size=32, epochs=10, verbose=0).history
    assert kl() < 0.25 * before, (before, kl())
    assert history["distill_loss"][-1] < history["distill_loss"][0]
    for a, b in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)

def test_dense_teacher_weight_must_be_a_fraction(tiny_run):
    from llmos_tf.compression.pruning import prune_run
    from llmos_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="distill_alpha"):
        prune_run(tiny_run, target_sparsity=0.5, distill_alpha=1.5, steps_per_epoch=2)


def test_pruning_checks_the_strategy_in_scope_first(monkeypatch):
    """``prune_run`` and ``compress`` refuse a strategy TF-MOT pruning cannot run under (TPU) before any
    work, through ``check_compression_strategy``; techniques not asked for are not checked."""
    from llmos_tf.compression.pipeline import compress
    from llmos_tf.compression.pruning import prune_run
    from llmos_tf.errors import ConfigError, RunError
    from llmos_tf.training import distribute

    monkeypatch.setattr(distribute, "strategy_kind", lambda strategy: "tpu")
    with pytest.raises(ConfigError, match="^the tpu strategy in scope: TF-MOT pruning cannot run under this strategy"):
        prune_run(None)  # refused before it reads the run
    with pytest.raises(ConfigError, match="^the tpu strategy in scope: TF-MOT pruning cannot run"):
        compress("no/such/run")  # before the run is read
    with pytest.raises(ConfigError, match="^the tpu strategy in scope: TF-MOT quantization-aware training cannot run"):
        compress("no/such/run", prune=False, quantize=(), qat=True)
    with pytest.raises(RunError, match="no/such/run"):
        compress("no/such/run", prune=False, quantize=("dynamic",))  # post-training quantization runs anywhere


MIRRORED_PRUNE_SCRIPT = """
import json, sys
import llmos_tf
from llmos_tf._tf import tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from llmos_tf.compression.pruning import prune_run
from llmos_tf.compression.run_data import load_trained
run = load_trained(sys.argv[1])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    result = prune_run(run, target_sparsity=0.5, epochs=1, steps_per_epoch=6)
kernel = next(w for w in result.model.weights if "kernel" in w.name)
print("RESULT " + json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "mirrored": isinstance(kernel, tf.distribute.DistributedValues) and len(kernel.values) == 2,
    "sparsity": [r.sparsity for r in result.layers], "overall": result.overall_sparsity,
    "loss": result.history["loss"]}))
"""


def test_prune_run_under_mirrored_strategy_on_two_logical_cpus(trained_run):
    """The real pruning path (``prune_run``, what ``llmos compress`` calls) inside a MirroredStrategy scope
    over 2 logical CPUs: the pruned copy is built as mirrored variables, fine-tuned on both replicas and
    reaches its sparsity (a subprocess: logical devices must be set before TensorFlow starts)."""
    import json
    import pathlib
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MIRRORED_PRUNE_SCRIPT, str(trained_run)], capture_output=True, text=True,
                          timeout=400, cwd=str(pathlib.Path(__file__).parents[2]))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads([l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1][len("RESULT "):])
    assert out["replicas"] == 2 and out["mirrored"], out
    assert out["sparsity"] and all(abs(s - 0.5) <= 0.01 for s in out["sparsity"]), out
    assert abs(out["overall"] - 0.5) <= 0.01 and len(out["loss"]) == 1 and np.isfinite(out["loss"][0]), out
