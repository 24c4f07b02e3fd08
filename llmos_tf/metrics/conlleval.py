"""Entity-level precision, recall and F1 with the semantics of CoNLL's ``conlleval`` script.

This is a line-by-line port of the chunk logic of ``conlleval.pl`` (CoNLL-2000/2003),
so the figures match the numbers papers report:

* a tag is split at ``-`` into a prefix and a type (``B-PER`` -> ``B``, ``PER``;
  ``O`` -> ``O``, ``""``);
* a chunk **starts** at ``B-``, at an ``I-`` after ``O``, and at any tag whose type
  differs from the previous token's (so IOB1 input, where chunks begin with ``I-``,
  works, as do ``E-``/``S``-less IOBES-ish prefixes the script knows);
* a chunk **ends** before ``B-``, before ``O``, and before a change of type;
* a predicted chunk is correct only when its start, end and type all match a gold chunk;
* sentence ends close every chunk (the script treats a blank line as an ``O`` token).

Precision, recall and F1 are fractions in ``[0, 1]`` (the perl script prints percentages).
Token accuracy counts tokens whose prefix and type both match.

Example::

    >>> m = conlleval([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
    >>> m["entity_f1"], m["token_accuracy"]
    (1.0, 1.0)
    >>> entity_spans(["I-LOC", "I-LOC", "O", "I-PER"])   # IOB1
    [('LOC', 0, 2), ('PER', 3, 4)]
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

OUTSIDE = "O"


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", "")`` (perl ``split(/-/, $tag)``: first two fields)."""
    parts = [p for p in str(tag).split("-")]
    while len(parts) > 1 and parts[-1] == "":  # perl's split drops trailing empty fields
        parts.pop()
    return parts[0], (parts[1] if len(parts) > 1 else "")


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval.pl ``startOfChunk``: does a chunk start at the current token?"""
    start = (
        (prev_tag == "B" and tag == "B")
        or (prev_tag == "I" and tag == "B")
        or (prev_tag == "O" and tag == "B")
        or (prev_tag == "O" and tag == "I")
        or (prev_tag == "E" and tag == "E")
        or (prev_tag == "E" and tag == "I")
        or (prev_tag == "O" and tag == "E")
    )
    if tag != "O" and tag != "." and prev_type != type_:
        start = True
    return start or tag in ("[", "]")


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval.pl ``endOfChunk``: did a chunk end at the previous token?"""
    end = (
        (prev_tag == "B" and tag == "B")
        or (prev_tag == "B" and tag == "O")
        or (prev_tag == "I" and tag == "B")
        or (prev_tag == "I" and tag == "O")
        or (prev_tag == "E" and tag == "E")
        or (prev_tag == "E" and tag == "I")
        or (prev_tag == "E" and tag == "O")
    )
    if prev_tag != "O" and prev_tag != "." and prev_type != type_:
        end = True
    return end or prev_tag in ("[", "]")


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks of one sentence as ``(type, start, end)`` with ``end`` exclusive, conlleval boundaries."""
    spans: list[tuple[str, int, int]] = []
    prev_tag, prev_type = OUTSIDE, ""
    open_start: int | None = None
    open_type = ""
    for i, raw in enumerate([*tags, OUTSIDE]):
        tag, type_ = split_tag(raw)
        if open_start is not None and end_of_chunk(prev_tag, tag, prev_type, type_):
            spans.append((open_type, open_start, i))
            open_start = None
        if i < len(tags) and start_of_chunk(prev_tag, tag, prev_type, type_):
            open_start, open_type = i, type_
        prev_tag, prev_type = tag, type_
    return spans


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def conlleval(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Metrics over sentences of gold and predicted tags (the state machine of conlleval.pl).

    Returns ``sentences``, ``tokens``, ``token_accuracy``, ``entity_precision``,
    ``entity_recall``, ``entity_f1``, ``gold_entities``, ``predicted_entities``,
    ``correct_entities`` and ``per_type`` (``{type: {precision, recall, f1,
    support, predicted, correct}}``, types sorted).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"conlleval: {len(gold)} gold sentences but {len(predicted)} predicted")
    correct_chunks = found_correct = found_guessed = 0
    correct_tags = token_count = 0
    per_correct: dict[str, int] = {}
    per_found_correct: dict[str, int] = {}
    per_found_guessed: dict[str, int] = {}

    def bump(table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    in_correct = False
    last_correct, last_correct_type = OUTSIDE, ""
    last_guessed, last_guessed_type = OUTSIDE, ""
    for index, (gold_row, pred_row) in enumerate(zip(gold, predicted)):
        if len(gold_row) != len(pred_row):
            raise ValueError(f"conlleval: sentence {index} has {len(gold_row)} gold tags but {len(pred_row)} predicted")
        # a sentence boundary is an uncounted O/O token, exactly as a blank line in the script
        items = [(g, p, True) for g, p in zip(gold_row, pred_row)] + [(OUTSIDE, OUTSIDE, False)]
        for gold_tag, pred_tag, counted in items:
            correct, correct_type = split_tag(gold_tag)
            guessed, guessed_type = split_tag(pred_tag)
            end_correct = end_of_chunk(last_correct, correct, last_correct_type, correct_type)
            end_guessed = end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
            start_correct = start_of_chunk(last_correct, correct, last_correct_type, correct_type)
            start_guessed = start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
            if in_correct:
                if end_correct and end_guessed and last_guessed_type == last_correct_type:
                    in_correct = False
                    correct_chunks += 1
                    bump(per_correct, last_correct_type)
                elif end_correct != end_guessed or guessed_type != correct_type:
                    in_correct = False
            if start_correct and start_guessed and guessed_type == correct_type:
                in_correct = True
            if start_correct:
                found_correct += 1
                bump(per_found_correct, correct_type)
            if start_guessed:
                found_guessed += 1
                bump(per_found_guessed, guessed_type)
            if counted:
                if correct == guessed and guessed_type == correct_type:
                    correct_tags += 1
                token_count += 1
            last_correct, last_correct_type = correct, correct_type
            last_guessed, last_guessed_type = guessed, guessed_type
    if in_correct:  # unreachable after the trailing boundary, kept as in the script
        correct_chunks += 1
        bump(per_correct, last_correct_type)

    precision = _ratio(correct_chunks, found_guessed)
    recall = _ratio(correct_chunks, found_correct)
    per_type = {}
    for type_ in sorted(set(per_found_correct) | set(per_found_guessed)):
        p = _ratio(per_correct.get(type_, 0), per_found_guessed.get(type_, 0))
        r = _ratio(per_correct.get(type_, 0), per_found_correct.get(type_, 0))
        per_type[type_] = {
            "precision": p,
            "recall": r,
            "f1": _f1(p, r),
            "support": per_found_correct.get(type_, 0),
            "predicted": per_found_guessed.get(type_, 0),
            "correct": per_correct.get(type_, 0),
        }
    return {
        "sentences": len(gold),
        "tokens": token_count,
        "token_accuracy": _ratio(correct_tags, token_count),
        "entity_precision": precision,
        "entity_recall": recall,
        "entity_f1": _f1(precision, recall),
        "gold_entities": found_correct,
        "predicted_entities": found_guessed,
        "correct_entities": correct_chunks,
        "per_type": per_type,
    }


def per_type_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """``per_type`` as a table (one row per entity type), for printing."""
    frame = pd.DataFrame.from_dict(metrics["per_type"], orient="index",
                                   columns=["precision", "recall", "f1", "support", "predicted", "correct"])
    frame.index.name = "type"
    return frame


def format_report(metrics: dict[str, Any]) -> str:
    """The summary in conlleval.pl's layout (percentages)."""
    m = metrics
    lines = [
        f"processed {m['tokens']} tokens with {m['gold_entities']} phrases; "
        f"found: {m['predicted_entities']} phrases; correct: {m['correct_entities']}.",
        f"accuracy: {100 * m['token_accuracy']:6.2f}%; precision: {100 * m['entity_precision']:6.2f}%; "
        f"recall: {100 * m['entity_recall']:6.2f}%; FB1: {100 * m['entity_f1']:6.2f}",
    ]
    for type_, v in m["per_type"].items():
        lines.append(f"{type_:>17}: precision: {100 * v['precision']:6.2f}%; recall: {100 * v['recall']:6.2f}%; "
                     f"FB1: {100 * v['f1']:6.2f}  {v['predicted']}")
    return "\n".join(lines)
