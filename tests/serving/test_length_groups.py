"""Length-grouped sub-batches: less padding, same answers in request order."""
from __future__ import annotations

import numpy as np

from llmos_tf.serving.length_groups import length_groups, merge_rows, take_rows


def test_groups_cover_every_row_once_and_cut_between_short_and_long():
    lengths = [3, 40, 5, 38, 4, 41]
    groups = length_groups(lengths, call_cost=16)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert {frozenset(g) for g in groups} == {frozenset({0, 2, 4}), frozenset({1, 3, 5})}


def test_a_high_call_cost_keeps_one_group_and_max_rows_caps_groups():
    assert length_groups([3, 40, 5], call_cost=1e6) == [[0, 2, 1]]
    assert all(len(g) <= 2 for g in length_groups(list(range(10)), call_cost=0, max_rows=2))
    assert length_groups([], call_cost=1) == [[]]


def test_merge_rows_restores_order_and_pads_string_tags():
    inputs = {"text": np.array([b"a", b"b c d", b"e"], dtype=object)}
    parts = []
    for rows in ([0, 2], [1]):
        part = take_rows(inputs, rows)
        width = max(len(t.split()) for t in part["text"])
        tags = np.array([[b"O"] * len(t.split()) + [b""] * (width - len(t.split())) for t in part["text"]], dtype=object)
        parts.append((rows, {"tags": tags, "token_count": np.array([len(t.split()) for t in part["text"]])}))
    merged = merge_rows(parts, 3)
    assert merged["token_count"].tolist() == [1, 3, 1]
    assert merged["tags"].tolist() == [[b"O", b"", b""], [b"O", b"O", b"O"], [b"O", b"", b""]]


def test_a_step_cost_keeps_recurrent_batches_whole_unless_lengths_differ_a_lot():
    lengths = [10, 12, 14, 16, 18, 20, 22, 24]
    assert len(length_groups(lengths, call_cost=4)) > 1
    assert length_groups(lengths, call_cost=4, step_cost=32) == [list(range(8))]
    assert len(length_groups([2] * 40 + [60] * 2, call_cost=4, step_cost=32)) == 2
