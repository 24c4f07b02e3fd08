"""Structured `llmos compress` on the tiny BERT run: trimmed vocabulary, pruned heads and FFN neurons, int8,
exported as versions that plain TensorFlow loads and `llmos serve` answers (official TF Serving stubs)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.compression.test_int8_weights import plain_tf_answers
from tests.serving.conftest import server_factory, stubs  # noqa: F401  (fixture)

# the corpus leaves out "boring", "dull", "clumsy" and "soundtrack": texts with them lose tokens
CORPUS_TEXTS = ["the film was great and wonderful", "the movie was awful and terrible plot", "the story was lovely",
                "the cast was brilliant and superb", "the script was tedious and bland", "the ending was moving and funny",
                "the plot was painful and delightful film movie story cast script ending"]
COVERED = ["the film was great and wonderful", "the plot was awful and lovely"]
NOT_COVERED = ["the soundtrack was boring and dull", "the movie was clumsy"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(CORPUS_TEXTS) + "\n")
    return path


@pytest.fixture(scope="module")
def bert_run(tiny_bert_run):
    from llmos_tf.compression.run_data import load_trained

    return load_trained(tiny_bert_run)


def test_trimmed_vocabulary_keeps_outputs_on_covered_texts(bert_run, corpus):
    from llmos_tf.compression.structured.steps import StructuredOptions, structured_steps
    from llmos_tf.compression.structured.vocabulary import coverage, corpus_token_ids

    keep = corpus_token_ids(bert_run, CORPUS_TEXTS)
    assert keep[0] == 0 and len(keep) < len(bert_run.vocabulary)
    assert coverage(bert_run, keep, COVERED)["texts_fully_covered"] == 1.0
    assert coverage(bert_run, keep, NOT_COVERED)["token_coverage"] < 1.0
    (step,) = structured_steps(bert_run, StructuredOptions(trim_vocabulary=str(corpus)), validation_texts=COVERED, say=lambda _: None)
    trimmed = step.run
    assert len(trimmed.vocabulary) == len(keep) and step.details["vocabulary_after"] == len(keep)
    np.testing.assert_array_equal(trimmed.predict_proba(COVERED), bert_run.predict_proba(COVERED))
    # a word that needs a dropped piece becomes [UNK], as WordPiece does for unknown words
    ids = trimmed.tokenizer()(["the movie was clumsy"]).to_list()[0]
    assert trimmed.vocabulary.index("[UNK]") in ids


@pytest.fixture(scope="module")
def compressed(tiny_bert_run, corpus, tmp_path_factory):
    from llmos_tf.cli import main

    base = tmp_path_factory.mktemp("structured_models")
    report_dir = tmp_path_factory.mktemp("structured_report")
    code = main(["compress", "--run", str(tiny_bert_run), "--no-prune", "--trim_vocabulary", str(corpus), "--prune_heads", "0.5",
                 "--prune_ffn", "0.5", "--importance_batches", "2", "--epochs", "1", "--steps_per_epoch", "3",
                 "--distill_alpha", "0.5", "--quantize", "dynamic", "--model_base_path", str(base), "--name", "tiny_bert",
                 "--publish", "all", "--max_drop", "1.0", "--report", "--report_dir", str(report_dir)])
    assert code == 0
    return base, json.loads((report_dir / "report.json").read_text())


def test_a_row_per_step_with_parameters_and_flops(compressed):
    _, report = compressed
    rows = {r["variant"]: r for r in report["variants"]}
    assert list(rows) == ["dense", "structured_vocab", "structured_heads", "structured_ffn", "structured_ffn_dynamic"]
    assert report["mean_tokens"] > 2
    params = [rows[n]["parameters"] for n in ("dense", "structured_vocab", "structured_heads", "structured_ffn")]
    assert params == sorted(params, reverse=True) and len(set(params)) == 4
    flops = [rows[n]["flops"] for n in ("dense", "structured_vocab", "structured_heads", "structured_ffn")]
    assert flops[0] == flops[1] > flops[2] > flops[3]  # a smaller vocabulary costs no matmul
    shape = rows["structured_ffn"]["details"]["shape"]
    assert shape["heads"] == [1] and shape["ffn_units"] == [32]  # the tiny run: 1 layer, 2 heads, 64 units
    assert rows["structured_ffn"]["details"]["steps"] == ["structured_vocab", "structured_heads", "structured_ffn"]
    assert rows["structured_ffn_dynamic"]["size_bytes"] < rows["structured_ffn"]["size_bytes"] < rows["dense"]["size_bytes"]
    assert 0 < rows["structured_vocab"]["details"]["token_coverage"] <= 1


def test_structured_int8_version_loads_in_plain_tensorflow_and_is_served(compressed, server_factory):  # noqa: F811
    from tensorflow_serving.apis import predict_pb2

    from llmos_tf._tf import tf

    base, report = compressed
    row = next(r for r in report["variants"] if r["variant"] == "structured_ffn_dynamic")
    version = base / "tiny_bert" / str(row["version"])
    card = json.loads((version / "assets" / "llmos.json").read_text())
    assert card["savedmodel_weights"]["weight_dtype"] == "int8" and (version / "model.tflite").is_file()
    assert card["encoder"]["vocabulary_size"] == report["variants"][1]["details"]["vocabulary_after"]
    texts = COVERED + NOT_COVERED
    plain = plain_tf_answers(version, texts)
    assert np.asarray(plain["probabilities"]).shape == (4, 2)
    server = server_factory(["--model_config_file", str(base / "models.config")], rest=False)
    _, predict, _ = stubs(server.target)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny_bert"
    request.model_spec.version_label = "structured_ffn_dynamic"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts))
    response = predict.Predict(request, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), plain["probabilities"], atol=1e-5)


def test_bad_structured_flags_are_refused_before_work(tiny_bert_run, tmp_path, capsys):
    from llmos_tf.cli import main

    with pytest.raises(SystemExit):
        main(["compress", "--run", str(tiny_bert_run), "--keep_layers", "0,x"])
    assert "layer indices" in capsys.readouterr().err
    assert main(["compress", "--run", str(tiny_bert_run), "--trim_vocabulary", str(tmp_path / "missing.txt")]) != 0
    assert "missing.txt: no such corpus file" in capsys.readouterr().err
    assert main(["compress", "--run", str(tiny_bert_run), "--no-prune", "--keep_layers", "0,3", "--report_dir", str(tmp_path)]) != 0
    assert "the encoder has layers 0..0" in capsys.readouterr().err
    assert not (tmp_path / "variants").exists() or not any((tmp_path / "variants").iterdir())
