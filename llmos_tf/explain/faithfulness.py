"""Are the attributions faithful? The deletion test and ERASER's comprehensiveness / AOPC.

Remove the k words with the highest attribution for the predicted class and measure how
much that class's probability falls; do the same with k random words. Faithful attributions
make the first drop larger. AOPC (DeYoung et al., 2020, "ERASER") averages the drop over
k = 1..K (here words, K = 5 by default).

Both the full text and every reduced text are the explainer's own words joined by spaces
(normalised word pieces), so "removing a word" changes nothing else; all reduced texts of a
batch go through ``predict_proba`` together.

Example::

    result = deletion_test(run, texts, k_max=5, seed=0)
    result["aopc_attributed"], result["aopc_random"]
"""
from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np


def deletion_test(run, texts: Sequence[str], *, k_max: int = 5, seed: int = 0, steps: int | None = None,
                  batch_size: int = 8) -> dict[str, Any]:
    """Probability drops of the predicted class after removing the top-k attributed vs k random words."""
    from llmos_tf.explain.explanations import explain_run

    frame = explain_run(run, texts, steps=steps, batch_size=batch_size)
    rng = random.Random(seed)
    names = list(run.labels.names)
    variants: list[str] = []
    index: list[tuple[int, str, int]] = []  # (text row, kind, k)
    for row_id, row in enumerate(frame.itertuples()):
        words = list(row.words)
        if not words:
            continue
        order = list(np.argsort(-np.asarray(row.attributions), kind="stable"))
        shuffled = list(range(len(words)))
        rng.shuffle(shuffled)
        variants.append(" ".join(words))
        index.append((row_id, "full", 0))
        for k in range(1, k_max + 1):
            for kind, ranking in (("attributed", order), ("random", shuffled)):
                drop = set(ranking[:k])
                variants.append(" ".join(w for i, w in enumerate(words) if i not in drop))
                index.append((row_id, kind, k))
    probs = run.predict_proba(variants)
    predicted = {i: names.index(label) for i, label in enumerate(frame["label"])}
    full: dict[int, float] = {}
    drops = {kind: np.zeros([len(frame), k_max]) for kind in ("attributed", "random")}
    for (row_id, kind, k), p in zip(index, probs):
        value = float(p[predicted[row_id]])
        if kind == "full":
            full[row_id] = value
        else:
            drops[kind][row_id, k - 1] = full[row_id] - value
    used = sorted(full)
    out: dict[str, Any] = {"texts": len(used), "k_max": k_max}
    for kind, table in drops.items():
        table = table[used]
        out[f"aopc_{kind}"] = float(table.mean())
        out[f"drop_at_k_{kind}"] = table.mean(axis=0).round(4).tolist()
    out["aopc_ratio"] = out["aopc_attributed"] / out["aopc_random"] if out["aopc_random"] > 0 else float("inf")
    return out
