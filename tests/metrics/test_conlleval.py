"""conlleval semantics, checked on hand-worked examples (IOB2 and IOB1) and against a span-based reference."""
from __future__ import annotations

import random

import pytest

from llmos_tf.metrics.conlleval import conlleval, entity_spans, format_report, per_type_frame, split_tag


def test_split_tag_like_perl():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("O") == ("O", "")
    assert split_tag("I-B-X") == ("I", "B")  # perl keeps the first two '-' fields
    assert split_tag("B-") == ("B", "")


@pytest.mark.parametrize(
    "tags, spans",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["I-LOC", "I-LOC", "O", "I-PER"], [("LOC", 0, 2), ("PER", 3, 4)]),  # IOB1: I- after O starts a chunk
        (["I-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),        # IOB1: B- splits same-type chunks
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),       # I- of another type starts a chunk
        (["B-ORG", "B-ORG"], [("ORG", 0, 1), ("ORG", 1, 2)]),
        (["O", "O"], []),
        ([], []),
        (["I-MISC"], [("MISC", 0, 1)]),
    ],
)
def test_entity_spans(tags, spans):
    assert entity_spans(tags) == spans


def test_perfect_iob2():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    m = conlleval(gold, gold)
    assert (m["entity_precision"], m["entity_recall"], m["entity_f1"], m["token_accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert (m["gold_entities"], m["predicted_entities"], m["correct_entities"], m["tokens"], m["sentences"]) == (3, 3, 3, 6, 2)
    assert set(m["per_type"]) == {"LOC", "ORG", "PER"}


def test_partial_match_is_wrong():
    # gold: PER(0,2) LOC(3,4); predicted: PER(0,1) LOC(3,4) -> 1 of 2 correct each way
    m = conlleval([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]])
    assert (m["gold_entities"], m["predicted_entities"], m["correct_entities"]) == (2, 2, 1)
    assert m["entity_precision"] == m["entity_recall"] == m["entity_f1"] == 0.5
    assert m["token_accuracy"] == 0.75
    assert m["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 1, "correct": 0}
    assert m["per_type"]["LOC"]["f1"] == 1.0


def test_wrong_type_and_too_long_chunk():
    # types differ -> wrong; predicted chunk runs one token too far -> wrong
    m = conlleval([["B-PER", "I-PER", "O"], ["B-LOC", "O", "O"]], [["B-ORG", "I-ORG", "O"], ["B-LOC", "I-LOC", "O"]])
    assert (m["gold_entities"], m["predicted_entities"], m["correct_entities"]) == (2, 2, 0)
    assert m["entity_f1"] == 0.0
    assert m["token_accuracy"] == pytest.approx(3 / 6)  # O, B-LOC, O


def test_iob1_input_and_i_after_o_in_predictions():
    # IOB1 gold; the prediction starts its chunk with B- (IOB2): same chunk, so correct,
    # but the token accuracy counts I-PER vs B-PER as different tags.
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]]
    m = conlleval(gold, pred)
    assert (m["gold_entities"], m["predicted_entities"], m["correct_entities"]) == (3, 3, 3)
    assert m["entity_f1"] == 1.0
    assert m["token_accuracy"] == pytest.approx(4 / 5)


def test_sentence_boundary_closes_chunks():
    # a chunk at the end of one sentence and an I- at the start of the next are two chunks
    gold = [["O", "B-PER"], ["I-PER", "O"]]
    m = conlleval(gold, gold)
    assert m["gold_entities"] == 2 and m["correct_entities"] == 2
    # the second sentence's chunk is missed: precision 1, recall 1/2
    m = conlleval(gold, [["O", "B-PER"], ["O", "O"]])
    assert (m["gold_entities"], m["predicted_entities"], m["correct_entities"]) == (2, 1, 1)
    assert m["entity_precision"] == 1.0 and m["entity_recall"] == 0.5
    assert m["entity_f1"] == pytest.approx(2 / 3)


def test_empty_and_mismatched_input():
    m = conlleval([], [])
    assert m["entity_f1"] == 0.0 and m["tokens"] == 0 and m["token_accuracy"] == 0.0
    with pytest.raises(ValueError, match="sentence 0"):
        conlleval([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="2 gold sentences"):
        conlleval([["O"], ["O"]], [["O"]])


def _span_reference(gold, pred):
    g = {(i, *s) for i, row in enumerate(gold) for s in entity_spans(row)}
    p = {(i, *s) for i, row in enumerate(pred) for s in entity_spans(row)}
    return len(g), len(p), len(g & p)


def test_state_machine_equals_span_matching_on_random_tags():
    rng = random.Random(0)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    for _ in range(300):
        gold, pred = [], []
        for _ in range(rng.randint(1, 4)):
            n = rng.randint(0, 8)
            gold.append([rng.choice(tags) for _ in range(n)])
            pred.append([t if rng.random() < 0.6 else rng.choice(tags) for t in gold[-1]])
        m = conlleval(gold, pred)
        assert (m["gold_entities"], m["predicted_entities"], m["correct_entities"]) == _span_reference(gold, pred)


def test_report_and_frame():
    m = conlleval([["B-PER", "O"]], [["B-PER", "O"]])
    text = format_report(m)
    assert "processed 2 tokens with 1 phrases; found: 1 phrases; correct: 1." in text
    assert "FB1: 100.00" in text
    assert per_type_frame(m).loc["PER", "f1"] == 1.0
