"""BiLSTM-CRF and BERT-CRF taggers (``task: ner``, ``model.crf: true``) on the project's sample data:
training, Viterbi decoding, the export's ``tags`` signature, plain-TensorFlow loading, TFLite, and a real
server process spoken to with TF Serving's official gRPC stub."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError

MAX_LENGTH = 32
LONG_WORDS = 50  # > MAX_LENGTH subwords: the tail is dropped and tagged "O"
SENTENCES = [
    "Anna Berg joined Acme Corp in Oslo last year .",
    "  Lars Holm flew to Kyoto,  on Tuesday!",
    "U.S. stocks rose ; Zürich-based xqzvbnm ☃ gained",
    "",
    " ".join(["Oslo"] * (MAX_LENGTH + 10)),
]

# a fresh interpreter that imports nothing but what tensorflow_model_server links
PLAIN_TF = r"""
import json, sys
import tensorflow as tf, tensorflow_text  # noqa: F401
out = tf.saved_model.load(sys.argv[1]).signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
assert not any(m.startswith(("llmos_tf", "tf_keras")) for m in sys.modules), "llmos_tf or tf_keras was imported"
tags = [[t.decode() for t in row[:n]] for row, n in zip(out["tags"].numpy(), out["token_count"].numpy())]
print(json.dumps(tags))
"""


def ner_config(root: pathlib.Path, train: pathlib.Path, valid: pathlib.Path, name: str, model: dict, epochs: int = 3, **training):
    from llmos_tf.config import config_from_dict

    return config_from_dict({
        "name": name, "task": "ner", "seed": 3, "output_dir": str(root / "runs"),
        "data": {"train": str(train), "validation": str(valid), "max_length": MAX_LENGTH, "bucket_boundaries": [12, 16, 24]},
        "text": {"vocabulary_size": 300, "lowercase": False, "strip_accents": False},
        "model": model,
        "training": {"epochs": epochs, "batch_size": 16, "learning_rate": 0.01, "monitor": "val_entity_f1",
                     "early_stopping_patience": 0, "log_every_steps": 5, "backup_every_steps": 10, **training},
    })


BILSTM_CRF = {"architecture": "bilstm", "embedding_dim": 32, "lstm_units": 32, "dropout": 0.1, "crf": True}
_CACHE: dict[str, object] = {}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    from llmos_tf.data.sample import write_sample_data

    root = tmp_path_factory.mktemp("crf")
    paths = write_sample_data(root / "data")
    train = root / "data" / "ner_train_long.conll"
    long = "".join(f"{'Oslo' if i % 2 else 'rain'} {'B-LOC' if i % 2 else 'O'}\n" for i in range(LONG_WORDS)) + "\n"
    train.write_text(paths["ner_train"].read_text(encoding="utf-8") + long * 2, encoding="utf-8")
    return {"root": root, "train": train, "valid": paths["ner_valid"]}


@pytest.fixture(scope="module")
def run(data) -> dict:
    """One tiny BiLSTM-CRF trained through trainer.train (3 epochs, a few seconds each)."""
    from llmos_tf.training import trainer

    cfg = ner_config(data["root"], data["train"], data["valid"], "bilstm_crf", BILSTM_CRF)
    result = trainer.train(cfg, verbose=0, command="pytest")
    return {"run_dir": result.run_dir, "result": result}


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> dict:
    """``crf/1``: ``export_tagger_run``; ``crf_tflite/1``: the writer's export with ``model.tflite`` beside it."""
    from llmos_tf.compression.run_data import model_inputs
    from llmos_tf.compression.tflite import convert_to_tflite
    from llmos_tf.export.tagger import export_tagger_run
    from llmos_tf.export.writer import export_model
    from llmos_tf.tasks.tagging import TrainedTagger

    base = tmp_path_factory.mktemp("saved_models")
    v1 = export_tagger_run(run["run_dir"], base, "crf", command="pytest export")
    tagger = TrainedTagger.load(run["run_dir"])
    conversion = convert_to_tflite(tagger.model, "float32", example_inputs=[model_inputs(tagger, SENTENCES[:1])], max_length=tagger.max_length)
    v2 = export_model(tagger, tagger.model, base, "crf_tflite", tflite=conversion.content, compression={"method": "tflite float32"})
    return {"base": base, "v1": v1, "v2": v2, "tagger": tagger, "conversion": conversion, "expected": tagger.predict_tags(SENTENCES)}


# --------------------------------------------------------------------------- config and registry


def test_taggers_come_from_the_registry_and_crf_needs_ner(tmp_path):
    from llmos_tf.config import config_from_dict
    from llmos_tf.models import registry

    assert registry.taggers() == ["bert", "bilstm"]
    with pytest.raises(ConfigError, match="model.crf: .* needs task: ner"):
        config_from_dict({"data": {"train": "x.csv"}, "model": {"architecture": "bilstm", "crf": True}})
    with pytest.raises(ConfigError, match="model.crf"):
        config_from_dict({"data": {"train": "x.csv"}, "model": {"architecture": "bilstm", "crff": True}})


def test_builders_with_and_without_crf():
    from llmos_tf.models.crf import CRF, find_crf
    from llmos_tf.models.schemas import BiLSTMConfig
    from llmos_tf.models.taggers import build_bilstm_tagger

    ids = tf.constant([[2, 7, 9, 3, 0, 0]])
    features = {"token_ids": ids, "padding_mask": tf.cast(ids > 0, tf.int32), "segment_ids": tf.zeros_like(ids)}
    for crf in (False, True):
        model = build_bilstm_tagger(BiLSTMConfig(embedding_dim=8, lstm_units=8, crf=crf), vocabulary_size=12, num_tags=5)
        out = model(features)
        assert out.shape == (1, 6, 5) and out.dtype == tf.float32
        np.testing.assert_allclose(tf.reduce_sum(out, -1).numpy(), 1.0, rtol=1e-5)
        assert (find_crf(model) is not None) == crf
        assert [layer.name for layer in model.layers if layer.name.startswith("bilstm")] == ["bilstm_1"]
    assert isinstance(model.get_layer("crf"), CRF) and model.get_layer("tagger").activation is tf_keras.activations.linear


# --------------------------------------------------------------------------- training and decoding


def test_run_trains_a_bilstm_crf(run):
    from llmos_tf.tasks.tagging import TrainedTagger

    run_dir, result = run["run_dir"], run["result"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["task"] == "ner" and info["architecture"] == "bilstm" and info["max_length"] == MAX_LENGTH
    assert len(result.history["val_entity_f1"]) == 3 and "val_token_accuracy" in result.history
    assert result.metrics["validation"]["entity_f1"] > 0.8
    vocab = (run_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and "Oslo" in vocab  # cased, BERT's reserved tokens
    tagger = TrainedTagger.load(run_dir)
    assert tagger.crf is not None and tagger.predictor.crf is tagger.crf
    assert tagger.model.get_layer("crf").transitions.shape == (len(tagger.labels), len(tagger.labels))
    assert tagger.predict_tags(SENTENCES[:1]) == [["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O", "O", "O"]]


def test_predictions_follow_the_transitions(run):
    """Transitions that forbid every tag but O make Viterbi answer O everywhere, whatever the emissions say."""
    from llmos_tf.tasks.tagging import TrainedTagger

    tagger = TrainedTagger.load(run["run_dir"])
    crf, outside = tagger.crf, tagger.outside_id
    banned = np.full([len(tagger.labels)], -1e4, np.float32)
    banned[outside] = 0.0
    crf.set_weights([np.tile(banned, [len(banned), 1]), banned, np.zeros_like(banned)])
    tags = tagger.predict_tags(SENTENCES[:2])
    assert all(t == "O" for row in tags for t in row)
    probabilities = tagger.model(tagger.predictor.dataset(tagger.split(SENTENCES[:1])).get_single_element()[0])
    assert (np.argmax(probabilities.numpy(), -1) != outside).any()  # per-token argmax still sees entities


# --------------------------------------------------------------------------- export, plain TensorFlow, TFLite, serving


def test_export_keeps_the_tags_signature(exported):
    version = exported["v1"]
    fn = tf.saved_model.load(str(version)).signatures["serving_default"]
    _, kwargs = fn.structured_input_signature
    assert list(kwargs) == ["text"] and kwargs["text"].dtype == tf.string
    assert set(fn.structured_outputs) == {"tags", "token_count"}
    out = fn(text=tf.constant(SENTENCES))
    counts = out["token_count"].numpy().tolist()
    assert counts == [len(s.split()) for s in SENTENCES]
    got = [[t.decode() for t in row[:n]] for row, n in zip(out["tags"].numpy(), counts)]
    assert got == exported["expected"]
    assert got[-1][MAX_LENGTH - 2:] == ["O"] * (counts[-1] - (MAX_LENGTH - 2))  # truncated tokens: "O"
    card = json.loads((version / "assets" / "llmos.json").read_text())
    assert card["task"] == "ner" and card["decoding"] == "viterbi" and card["encoder"]["architecture"] == "bilstm"
    assert card["encoder"]["model"]["crf"] is True


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_plain_tensorflow_loads_the_export(exported, version):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # llmos_tf set it here; tf would load tf_keras
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN_TF, str(exported[version]), json.dumps(SENTENCES)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == exported["expected"]


def test_tflite_model_with_viterbi_in_postprocess(exported):
    """model.tflite holds the BiLSTM (static [1, max_length]: the LSTM loop); the CRF decodes in ``postprocess``."""
    from llmos_tf.compression.tflite import TFLiteRunner, make_interpreter

    conversion = exported["conversion"]
    assert conversion.static_shape == [1, MAX_LENGTH] and not conversion.select_tf_ops
    loaded = tf.saved_model.load(str(exported["v2"]))
    pre = loaded.signatures["preprocess"](text=tf.constant(SENTENCES))
    runner = TFLiteRunner(make_interpreter(path=str(exported["v2"] / "model.tflite")))
    probabilities = runner({k: pre[k].numpy() for k in runner.input_names})
    out = loaded.signatures["postprocess"](probabilities=tf.constant(probabilities), label_mask=pre["label_mask"], word_count=pre["word_count"])
    got = [[t.decode() for t in row[:n]] for row, n in zip(out["tags"].numpy(), out["token_count"].numpy())]
    assert got == exported["expected"]


def test_served_through_the_official_grpc_stub(exported):
    """A real ``python -m llmos_tf.serving`` process (``--prefer_tflite_model``): ``crf`` from the
    SavedModel, ``crf_tflite`` from model.tflite + the SavedModel's preprocess/postprocess."""
    import grpc
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

    from llmos_tf.serving.demo import start_server

    proc, ready = start_server(str(exported["base"]))
    try:
        assert ready["models"]["crf"]["versions"] == ready["models"]["crf_tflite"]["versions"] == {"1": "AVAILABLE"}
        channel = grpc.insecure_channel(f"127.0.0.1:{ready['grpc_port']}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for name in ("crf", "crf_tflite"):
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name="serving_default"))
            request.inputs["text"].CopyFrom(tf.make_tensor_proto(SENTENCES, dtype=tf.string))
            response = stub.Predict(request, timeout=60)
            assert response.model_spec.name == name and response.model_spec.version.value == 1
            counts = tf.make_ndarray(response.outputs["token_count"])
            tags = tf.make_ndarray(response.outputs["tags"])
            assert counts.dtype == np.int32 and tags.shape == (len(SENTENCES), max(counts))
            assert [[t.decode() for t in row[:n]] for row, n in zip(tags, counts)] == exported["expected"], name
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()


def test_compression_fine_tunes_a_crf_tagger_on_its_own_loss(run):
    """``llmos compress`` fine-tunes a CRF tagger on the CRF's sequence negative log-likelihood (what it was trained
    on), not on per-token cross-entropy: the loss on a real batch is the run's CRF likelihood, computed here directly."""
    from llmos_tf.compression.run_data import fine_tune_data, load_trained
    from llmos_tf.models.crf import CRFLoss, log_probabilities
    from llmos_tf.tasks.tagging import MaskedSparseCategoricalCrossentropy

    tagger = load_trained(run["run_dir"])
    data = fine_tune_data(tagger, steps_per_epoch=1)
    assert isinstance(data.loss, CRFLoss)
    features, labels = next(iter(data.dataset))
    outputs = tagger.model(features, training=False)
    mask = labels >= 0
    nll = -tagger.crf.log_likelihood(log_probabilities(outputs), tf.where(mask, labels, 0), mask)
    expected = float(tf.reduce_sum(nll) / tf.reduce_sum(tf.cast(mask, tf.float32)))
    assert float(data.loss(labels, outputs)) == pytest.approx(expected, rel=1e-5)
    assert abs(float(MaskedSparseCategoricalCrossentropy()(labels, outputs)) - expected) > 1e-3


# --------------------------------------------------------------------------- BERT-CRF, mixed precision


def test_bert_tagger_with_crf(data):
    from llmos_tf.training import trainer
    from llmos_tf.tasks.tagging import TrainedTagger

    model = {"architecture": "bert", "encoder": None, "num_layers": 1, "hidden_dim": 32, "num_heads": 2,
             "intermediate_dim": 64, "dropout": 0.0, "crf": True}
    result = trainer.train(ner_config(data["root"], data["train"], data["valid"], "bert_crf", model, epochs=2), verbose=0)
    tagger = TrainedTagger.load(result.run_dir)
    assert tagger.crf is not None and tagger.model.name == "crf_token_classifier"
    assert result.metrics["validation"]["entity_f1"] > 0.6


def test_mixed_precision_ner_run(data):
    """mixed_bfloat16 while training: the BiLSTM computes in bfloat16, the emissions and the CRF in float32."""
    from llmos_tf.training import trainer
    from llmos_tf.tasks.tagging import TrainedTagger

    cfg = ner_config(data["root"], data["train"], data["valid"], "mixed", BILSTM_CRF, epochs=1, mixed_precision="mixed_bfloat16")
    result = trainer.train(cfg, verbose=0, profile="2,3")  # the one loop: --profile traces an NER run too
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # only the model's construction used the policy
    assert list((result.run_dir / "plugins" / "profile").glob("*/*.xplane.pb"))
    tagger = TrainedTagger.load(result.run_dir)
    assert tagger.model.get_layer("bilstm_1").compute_dtype == "bfloat16"
    assert tagger.model.get_layer("embedding").variable_dtype == "float32"
    assert tagger.model.get_layer("tagger").compute_dtype == "float32" and tagger.crf.compute_dtype == "float32"
    assert tagger.crf.transitions.dtype == tf.float32
    assert len(tagger.predict_tags(SENTENCES[:2])[1]) == len(SENTENCES[1].split())
