"""Every committed version in saved_models/ is a SavedModel the stock tensorflow_model_server serves.

Each version is loaded in a fresh interpreter that imports only tensorflow and
tensorflow_text (what the stock server links), its ``serving_default`` is called
on the warm-up texts, and the answers are compared with what ``llmos serve``'s
servables give for the same texts (the SavedModel, and ``model.tflite`` where a
version carries one for ``--prefer_tflite_model``).
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from tests.compression.test_int8_weights import plain_tf_answers

BASE = pathlib.Path(__file__).resolve().parents[2] / "saved_models"
VERSIONS = sorted(p for p in BASE.glob("*/[0-9]*") if p.is_dir())
# exported before the `explain` signature existed: re-exporting these three BERT versions with it adds ~2 MB of graph
# each and would take saved_models/ over its 100 MB budget (docs/serving.md#reference-models)
WITHOUT_EXPLAIN = {"banking77_bert/1", "conll03_ner/1", "sst2_bert/3"}
TEXTS = ["a warm , funny and wonderful film", "dull and far too long", "I still have not received my card",
         "Anna Berg joined Northwind Bank in Oslo .", "hello"]


def test_there_are_committed_versions():
    assert len(VERSIONS) >= 5


@pytest.mark.parametrize("version", VERSIONS, ids=[f"{p.parent.name}/{p.name}" for p in VERSIONS])
def test_committed_version_serves_with_plain_tensorflow(version):
    from llmos_tf.serving.servable import Servable, read_signature_defs

    assert "serving_default" in read_signature_defs(version), f"{version}: no serving_default"
    plain = plain_tf_answers(version, TEXTS)
    served = Servable.load(version.parent.name, int(version.name), version).run(
        "serving_default", {"text": np.array([t.encode() for t in TEXTS], dtype=object)})
    card = json.loads((version / "assets" / "llmos.json").read_text(encoding="utf-8"))
    if card.get("task") == "ner":
        assert plain["token_count"] == served["token_count"].tolist()
        assert plain["tags"] == [[t.decode() for t in row] for row in served["tags"]]
    else:
        assert plain["label"] == [x.decode() for x in served["label"]]
        np.testing.assert_allclose(plain["probabilities"], served["probabilities"], atol=1e-4)
    if (version / "model.tflite").is_file():
        from llmos_tf.serving.tflite_servable import TFLiteServable

        tflite = TFLiteServable.load(version.parent.name, int(version.name), version).run(
            "serving_default", {"text": np.array([t.encode() for t in TEXTS], dtype=object)})
        key = "tags" if card.get("task") == "ner" else "label"
        agree = np.mean([a == b for a, b in zip(tflite[key].tolist(), served[key].tolist())])
        assert agree >= 0.8, f"model.tflite and the SavedModel disagree on {1 - agree:.0%} of the texts"


@pytest.mark.parametrize("version", VERSIONS, ids=[f"{p.parent.name}/{p.name}" for p in VERSIONS])
def test_committed_version_explains_with_plain_tensorflow(version):
    """The versions that carry `explain` answer it in plain TF + tensorflow_text: one score per word of each text, for the
    label serving_default gives; the others are exactly the ones the docs list."""
    from llmos_tf.serving.servable import Servable, read_signature_defs

    key = f"{version.parent.name}/{version.name}"
    assert ("explain" in read_signature_defs(version)) == (key not in WITHOUT_EXPLAIN), key
    if key in WITHOUT_EXPLAIN:
        return
    texts = TEXTS[:3]
    explained = plain_tf_answers(version, texts, signature="explain")
    served = Servable.load(version.parent.name, int(version.name), version).run(
        "serving_default", {"text": np.array([t.encode() for t in texts], dtype=object)})
    assert explained["label"] == [x.decode() for x in served["label"]]
    for text, tokens, scores in zip(texts, explained["tokens"], explained["attributions"]):
        words = [t for t in tokens if t]
        assert len(words) == len(text.split()), (text, tokens)
        assert np.all(np.isfinite(scores)) and np.any(np.asarray(scores[: len(words)]) != 0)
