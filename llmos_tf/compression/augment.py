"""Transfer-set augmentation for distillation (Tang et al. 2019, "Distilling Task-Specific
Knowledge from BERT into Simple Neural Networks", section 3.2).

The teacher labels any text, so the student can learn from more inputs than
the labelled set has. Each synthetic example starts from a training sentence
and, word by word, is *masked* with probability ``p_mask`` (the word becomes
``[MASK]``, which teaches the student which words matter) or *swapped* for a
random word of the training vocabulary with probability ``p_swap`` (a cheap
stand-in for the paper's POS-guided replacement); then, with probability
``p_ngram``, only a random n-gram (n from 1 to 5) of it is kept. Duplicates of
training texts are dropped. Seeded: the same arguments give the same set.

Example::

    augment(["a warm and funny film"], copies=2, seed=0)
    # ['a warm [MASK] funny film', 'warm and funny']
"""
from __future__ import annotations

import random
from typing import Sequence

MASK = "[MASK]"


def augment(texts: Sequence[str], *, copies: int = 1, p_mask: float = 0.1, p_swap: float = 0.1, p_ngram: float = 0.25,
            max_ngram: int = 5, seed: int = 0) -> list[str]:
    """``copies`` synthetic variants per text (fewer after de-duplication), never one of ``texts``."""
    for name, p in (("p_mask", p_mask), ("p_swap", p_swap), ("p_ngram", p_ngram)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {p}")
    rng = random.Random(seed)
    vocabulary = sorted({w for t in texts for w in str(t).split()})
    seen = {str(t) for t in texts}
    out: list[str] = []
    for _ in range(max(0, copies)):
        for text in texts:
            words = str(text).split()
            if not words:
                continue
            new = []
            for w in words:
                r = rng.random()
                if r < p_mask:
                    new.append(MASK)
                elif r < p_mask + p_swap and vocabulary:
                    new.append(rng.choice(vocabulary))
                else:
                    new.append(w)
            if len(new) > 1 and rng.random() < p_ngram:
                n = rng.randint(1, min(max_ngram, len(new)))
                start = rng.randint(0, len(new) - n)
                new = new[start:start + n]
            candidate = " ".join(new)
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out
