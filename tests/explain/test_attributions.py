"""Integrated gradients: completeness on the tiny BiLSTM and BERT, word pieces -> words, --label, the CLI and Run.explain."""
import json

import numpy as np
import pytest

from llmos_tf._tf import tf
from tests.conftest import NEGATIVE, POSITIVE

TEXTS = ["the film was wonderful and lovely plot", "the story was dull and boring", "the cast was superb"]


@pytest.fixture(scope="module", params=["trained_run", "tiny_bert_run"])
def loaded(request):
    from llmos_tf.tasks.classification import TrainedRun

    return TrainedRun.load(request.getfixturevalue(request.param))


def test_completeness_within_5_percent(loaded):
    """sum(attributions) == f(x) - f(baseline) (Sundararajan et al.'s completeness axiom), per text."""
    from llmos_tf.explain.explanations import explain_run

    frame = explain_run(loaded, TEXTS)
    assert len(frame) == len(TEXTS)
    for row in frame.itertuples():
        delta = row.probability - row.baseline_probability
        assert abs(delta) > 0.02, "the fixture must move the probability for the test to mean anything"
        assert abs(sum(row.attributions) - delta) <= 0.05 * abs(delta), (row.text, sum(row.attributions), delta)
    # the answer agrees with predict, and the sentiment word outweighs every other word (the labels follow the adjectives)
    assert frame["label"].tolist() == loaded.predict(TEXTS)["label"].tolist()
    for row in frame.itertuples():
        top = row.words[int(np.argmax(row.attributions))]
        assert top in POSITIVE + NEGATIVE, (row.text, row.words, row.attributions)


def test_label_explains_the_other_class(loaded):
    from llmos_tf.explain.explanations import explain_run

    predicted = explain_run(loaded, TEXTS[:1])
    other = [n for n in loaded.labels.names if n != predicted.loc[0, "label"]][0]
    flipped = explain_run(loaded, TEXTS[:1], label=other)
    assert flipped.loc[0, "explained"] == other and flipped.loc[0, "label"] == predicted.loc[0, "label"]
    # two classes: p(other) = 1 - p(predicted), so the attributions change sign
    np.testing.assert_allclose(flipped.loc[0, "attributions"], -np.asarray(predicted.loc[0, "attributions"]), atol=2e-3)


def test_words_join_word_pieces():
    from llmos_tf.explain.attributions import words_from_pieces

    pieces = tf.constant([["un", "##believ", "##able", "film", ""], ["ok", "", "", "", ""]])
    valid = tf.not_equal(pieces, "")
    words, scores = words_from_pieces(pieces, tf.constant([[0.1, 0.2, 0.3, 0.5, 9.0], [1.0, 9.0, 9.0, 9.0, 9.0]]), valid)
    assert words.numpy().tolist() == [[b"unbelievable", b"film"], [b"ok", b""]]
    np.testing.assert_allclose(scores.numpy(), [[0.6, 0.5], [1.0, 0.0]], atol=1e-6)


def test_quadrature_integrates_exactly():
    from llmos_tf.explain.attributions import quadrature

    nodes, weights = quadrature(32)
    assert nodes.min() > 0 and nodes.max() < 1 and abs(weights.sum() - 1) < 1e-5
    assert abs(float((weights * nodes ** 7).sum()) - 1 / 8) < 1e-5
    with pytest.raises(ValueError):
        quadrature(0)


def test_cli_json_and_errors(trained_run, capsys):
    from llmos_tf.cli import main

    assert main(["explain", "--model", str(trained_run), "--json", TEXTS[1]]) == 0
    out = json.loads(capsys.readouterr().out)
    (item,) = out["explanations"]
    assert out["method"] == "integrated_gradients" and item["label"] == "negative" and item["explained"] == "negative"
    assert [w["word"] for w in item["words"]] == TEXTS[1].split()
    assert main(["explain", "--model", str(trained_run), "--label", "neutral", "x"]) == 2
    assert "--label 'neutral': not a label" in capsys.readouterr().err
    assert main(["explain", "--model", str(trained_run), "--steps", "0", "x"]) == 2
    assert "--steps 0" in capsys.readouterr().err


def test_run_explain_renders_highlighted_html(trained_run):
    import llmos_tf

    frame = llmos_tf.load_run(trained_run).explain(TEXTS[0])
    html = frame._repr_html_()
    assert "rgba(0,160,0," in html and "wonderful" in html and "<table" in html
    assert list(frame.columns[:5]) == ["text", "label", "probability", "words", "attributions"]
    from llmos_tf.explain.explanations import render_terminal

    plain, coloured = render_terminal(frame, colour=False), render_terminal(frame, colour=True)
    assert "attributions for 'positive'" in plain and "\x1b[" not in plain
    assert "\x1b[42m" in coloured  # the supporting words on green
