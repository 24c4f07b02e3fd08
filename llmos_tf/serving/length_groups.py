"""Split a merged batch into groups of similar length, so each group pads only to its own longest row.

A batch of 32 single-sentence requests pads every row to the longest sentence
among them; on SST-2 (mean 25 tokens, max 60) that is about twice the work the
sentences need, and attention's cost grows with the square of the padding.
Sorting the rows by length and cutting the sorted list where it pays (dynamic
programming over ``rows × longest`` plus a fixed cost per call) removes most of
it; the outputs are put back in request order, so clients see no difference.

Example::

    groups = length_groups([3, 40, 5, 38], call_cost=16)   # [[0, 2], [3, 1]]
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def length_groups(lengths: Sequence[int], call_cost: float, max_rows: int | None = None, step_cost: float = 0.0) -> list[list[int]]:
    """Row indices grouped by length: minimizes ``Σ ((rows + step_cost) · longest + call_cost)`` over cuts of the sorted rows.

    ``call_cost`` is the fixed cost of one model call, in padded tokens; ``step_cost`` the fixed cost of one
    time step in rows (a recurrent model runs its steps one after another, whatever the batch: grouping
    multiplies them); ``max_rows`` caps a group."""
    lengths = np.asarray(lengths, np.int64)
    n = len(lengths)
    if n <= 1:
        return [list(range(n))]
    order = np.argsort(lengths, kind="stable")
    ordered = np.maximum(lengths[order], 1)
    limit = max_rows or n
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(n + 1, np.int64)
    for end in range(1, n + 1):  # the group (start, end] is padded to ordered[end - 1]
        for start in range(max(0, end - limit), end):
            cost = best[start] + (end - start + step_cost) * ordered[end - 1] + call_cost
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups: list[list[int]] = []
    end = n
    while end > 0:
        groups.append(order[cut[end]:end].tolist())
        end = cut[end]
    return groups[::-1]


def take_rows(inputs: Mapping[str, np.ndarray], rows: Sequence[int]) -> dict[str, np.ndarray]:
    return {k: v[np.asarray(rows)] for k, v in inputs.items()}


def merge_rows(parts: Sequence[tuple[Sequence[int], Mapping[str, np.ndarray]]], total: int) -> dict[str, np.ndarray]:
    """Outputs of the groups back in request order. Outputs with a length axis (a tagger's ``tags``) are
    padded to the widest group (``""`` for strings, 0 otherwise), as a batch of the whole request would be."""
    names = list(parts[0][1])
    merged: dict[str, np.ndarray] = {}
    for name in names:
        arrays = [np.asarray(out[name]) for _, out in parts]
        if arrays[0].ndim >= 2:
            width = max(a.shape[1] for a in arrays)
            fill = b"" if arrays[0].dtype.kind in "OSU" else 0
            arrays = [a if a.shape[1] == width else
                      np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=fill)
                      for a in arrays]
        out = np.empty((total,) + arrays[0].shape[1:], dtype=arrays[0].dtype)
        for (rows, _), array in zip(parts, arrays):
            out[np.asarray(rows)] = array
        merged[name] = out
    return merged
