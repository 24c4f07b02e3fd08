"""`encode`: BERT classifier exports and encoder-only exports give unit, mean-pooled sentence vectors; `llmos encode` writes Parquet."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmos_tf._tf import tf
from llmos_tf.cli import main
from tests.compose.conftest import load_in_plain_tf

TEXTS = ["the film was wonderful and lovely", "the plot was awful and dull", "", "cast"]


def _reference_vectors(run_dir, texts) -> np.ndarray:
    """Mean of the run's Keras encoder outputs over real tokens, L2-normalised, in NumPy."""
    from llmos_tf.models.bert import BertEncoder
    from llmos_tf.models.bert_classifier import bert_features
    from llmos_tf.tasks.classification import TrainedRun

    run = TrainedRun.load(run_dir)
    encoder = next(layer for layer in run.model.layers if isinstance(layer, BertEncoder))
    ids = run.tokenizer()(tf.constant(texts))[:, : run.max_length].to_tensor()
    features = bert_features(ids)
    sequence = encoder(features, training=False)["sequence_output"].numpy()
    mask = features["padding_mask"].numpy()[..., None].astype(np.float32)
    mean = (sequence * mask).sum(1) / mask.sum(1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def test_bert_export_encodes_unit_mean_pooled_vectors(exported, tiny_bert_run, tmp_path):
    loaded = tf.saved_model.load(str(exported["bert"]))
    assert "encode" in loaded.signatures and "serving_default" in loaded.signatures
    vectors = loaded.signatures["encode"](text=tf.constant(TEXTS))["embedding"].numpy()
    assert vectors.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, _reference_vectors(tiny_bert_run, TEXTS), atol=1e-5)
    plain = load_in_plain_tf(exported["bert"], "encode", {"text": TEXTS[:2]}, tmp_path)
    np.testing.assert_allclose(plain["embedding"], vectors[:2], atol=1e-6)
    # a BiLSTM has no sentence encoder to pool: no `encode` signature
    assert "encode" not in tf.saved_model.load(str(exported["bilstm"])).signatures


def test_llmos_encode_writes_parquet(exported, tmp_path, capsys):
    data = tmp_path / "texts.csv"
    pd.DataFrame({"review": ["a lovely film", "a dull plot", "the cast"], "x": [1, 2, 3]}).to_csv(data, index=False)
    out = tmp_path / "vectors.parquet"
    assert main(["encode", "--model", str(exported["bert"]), str(data), "--text_column", "review", "--out", str(out)]) == 0
    assert "wrote 3 vectors of dimension 32" in capsys.readouterr().out
    frame = pd.read_parquet(out)
    assert frame["text"].tolist() == ["a lovely film", "a dull plot", "the cast"] and frame["id"].tolist() == [0, 1, 2]
    vectors = np.stack(frame["embedding"])
    expected = tf.saved_model.load(str(exported["bert"])).signatures["encode"](text=tf.constant(frame["text"].tolist()))["embedding"].numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    # bad input: refused before any model loads, naming the line / what to pass
    blank = tmp_path / "blank.csv"
    blank.write_text("text\nfine\n\"\"\n")
    assert main(["encode", "--model", str(exported["bert"]), str(blank), "--out", str(tmp_path / "b.parquet")]) == 2
    assert "line 3" in capsys.readouterr().err
    assert main(["encode", "--model", str(exported["bilstm"]), str(data), "--text_column", "review", "--out", str(tmp_path / "c.parquet")]) == 2
    assert "no 'encode' signature" in capsys.readouterr().err
    assert main(["encode", "--model", str(exported["bert"]), str(data)]) == 2
    assert "--out" in capsys.readouterr().err


def test_encoder_only_export(tiny_bert_run, tmp_path, capsys):
    """A checkpoint folder (as `llmos pretrain` writes) published as an encoder: `encode` only, unit vectors, plain TF."""
    from llmos_tf.compose.embeddings import is_encoder_spec
    from llmos_tf.models.bert import BertEncoder
    from llmos_tf.models.pretrained import save_encoder
    from llmos_tf.tasks.classification import TrainedRun

    run = TrainedRun.load(tiny_bert_run)
    encoder = next(layer for layer in run.model.layers if isinstance(layer, BertEncoder))
    checkpoint = save_encoder(encoder, tmp_path / "checkpoint", run.vocabulary)
    assert is_encoder_spec(str(checkpoint))
    assert main(["encode", "--model", str(checkpoint), "--model_base_path", str(tmp_path / "models"), "--name", "encoder",
                 "--max_length", "16"]) == 0
    version = tmp_path / "models" / "encoder" / "1"
    assert f"as {version}" in capsys.readouterr().out
    vectors = np.array(load_in_plain_tf(version, "encode", {"text": TEXTS[:2]}, tmp_path)["embedding"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the same encoder weights as the classifier: the same vectors as the classifier's own `encode`
    np.testing.assert_allclose(vectors, _reference_vectors(tiny_bert_run, TEXTS[:2]), atol=1e-4)
    assert sorted(tf.saved_model.load(str(version)).signatures) == ["encode"]


@pytest.mark.parametrize("texts", [["only one"], ["a", "b", "c"]])
def test_encoder_batches_keep_input_order(exported, texts):
    from llmos_tf.compose.embeddings import load_encoder

    encoder = load_encoder(str(exported["bert"]))
    batched = encoder.encode(texts, batch_size=2)
    one_by_one = np.concatenate([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
