"""Seeded text perturbations: does the model flip on a typo? (evaluation, and ``training.augment``).

Each perturbation is a pure function of ``(text, rate, seed)``: the same seed gives the same
text, every time, on every machine (``random.Random`` seeded per text with a stable hash).

* ``typo``: each word of 2+ letters, with probability ``rate``, gets one character edit
  (swap two neighbours, delete, insert or replace a letter);
* ``lowercase``: the whole text in lower case;
* ``punctuation``: punctuation characters removed;
* ``drop``: each word dropped with probability ``rate`` (one word always stays);
* ``neighbour``: each word with probability ``rate`` swapped for its nearest whole word in the
  model's own token-embedding space (cosine), see :class:`EmbeddingNeighbours`.

Example::

    perturb("The film was GREAT!", "typo", rate=0.5, seed=1)         # 'The flim was GRAET!'
    robustness_table(predict_proba, texts, labels, seed=0)          # accuracy and flip rate per perturbation
    entity_robustness_table(predict_tags, tokens, tags, seed=0)     # a tagger: entity F1 and flip rate
"""
from __future__ import annotations

import random
import re
import string
import zlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

PERTURBATIONS = ("typo", "lowercase", "punctuation", "drop", "neighbour")
DEFAULT_RATE = 0.15
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def _rng(text: str, kind: str, seed: int) -> random.Random:
    return random.Random(zlib.crc32(f"{seed}\x00{kind}\x00{text}".encode("utf-8")))


def _typo(word: str, rng: random.Random) -> str:
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if len(letters) < 2:
        return word
    edit = rng.choice(("swap", "delete", "insert", "replace"))
    i = rng.choice(letters[:-1]) if edit == "swap" else rng.choice(letters)
    alphabet = string.ascii_lowercase
    if edit == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if edit == "delete":
        return word[:i] + word[i + 1:]
    if edit == "insert":
        return word[:i] + rng.choice(alphabet) + word[i:]
    return word[:i] + rng.choice([c for c in alphabet if c != word[i].lower()]) + word[i + 1:]


class EmbeddingNeighbours:
    """Nearest whole-word vocabulary entry (cosine, itself excluded) of a word, from an embedding matrix.

    Only alphabetic entries of 3+ characters take part (no ``##`` pieces, no ``[CLS]``); a word
    that is not in the vocabulary has no neighbour and stays."""

    def __init__(self, vocabulary: Sequence[str], matrix: np.ndarray):
        keep = [i for i, t in enumerate(vocabulary) if t.isalpha() and len(t) >= 3]
        self.words = [vocabulary[i] for i in keep]
        self.index = {w: j for j, w in enumerate(self.words)}
        rows = np.asarray(matrix, np.float32)[keep]
        self.unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        self._cache: dict[str, str | None] = {}

    def __call__(self, word: str) -> str | None:
        key = word.lower() if word.lower() in self.index and word not in self.index else word
        if key not in self._cache:
            j = self.index.get(key)
            if j is None:
                self._cache[key] = None
            else:
                scores = self.unit @ self.unit[j]
                scores[j] = -np.inf
                self._cache[key] = self.words[int(np.argmax(scores))]
        return self._cache[key]

    @classmethod
    def of_run(cls, run) -> "EmbeddingNeighbours":
        """From a loaded classification run: its vocabulary and token-embedding table."""
        from llmos_tf.explain.attributions import token_embedding_layer

        return cls(run.vocabulary, token_embedding_layer(run.model).embeddings.numpy())


def perturb(text: str, kind: str, rate: float = DEFAULT_RATE, seed: int = 0, neighbours: Callable[[str], str | None] | None = None) -> str:
    """``text`` perturbed by ``kind`` (one of :data:`PERTURBATIONS`), reproducibly from ``seed``."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"perturbation {kind!r}: expected one of {', '.join(PERTURBATIONS)}")
    if kind == "lowercase":
        return text.lower()
    if kind == "punctuation":
        return re.sub(r"\s+", " ", _PUNCT.sub("", text)).strip()
    rng = _rng(text, kind, seed)
    words = text.split()
    if kind == "drop":
        return " ".join(words[i] for i in _kept_words(len(words), rate, rng))
    if kind == "typo":
        return " ".join(_typo(w, rng) if rng.random() < rate else w for w in words)
    if neighbours is None:
        raise ValueError("perturbation 'neighbour' needs an embedding-space neighbour function (EmbeddingNeighbours)")
    out = []
    for w in words:
        swap = neighbours(w) if rng.random() < rate else None
        out.append(swap or w)
    return " ".join(out)


def _kept_words(count: int, rate: float, rng: random.Random) -> list[int]:
    """Indices of the words ``drop`` keeps: each goes with probability ``rate``; one always stays."""
    kept = [i for i in range(count) if rng.random() >= rate]
    if not kept and count:
        kept = [rng.randrange(count)]
    return kept


def perturb_tokens(tokens: Sequence[str], tags: Sequence[str], kind: str, rate: float = DEFAULT_RATE, seed: int = 0,
                   neighbours=None) -> tuple[list[str], list[str], list[int]]:
    """A tagged sentence perturbed word by word, its gold tags kept aligned: ``(tokens, tags, kept)``.

    ``kept`` are the original positions of the words that remain. ``typo``, ``lowercase`` and
    ``neighbour`` change words in place, with exactly the edits :func:`perturb` makes to
    ``" ".join(tokens)``; ``drop`` removes the words it drops there, with their tags; ``punctuation``
    strips punctuation inside every word and removes the words left empty (``.``, ``,``) with their tags."""
    tokens, tags = [str(t) for t in tokens], [str(t) for t in tags]
    if kind == "punctuation":
        stripped = [_PUNCT.sub("", t) for t in tokens]
        kept = [i for i, t in enumerate(stripped) if t]
        return [stripped[i] for i in kept], [tags[i] for i in kept], kept
    if kind == "drop":
        kept = _kept_words(len(tokens), rate, _rng(" ".join(tokens), kind, seed))
        return [tokens[i] for i in kept], [tags[i] for i in kept], kept
    out = perturb(" ".join(tokens), kind, rate, seed, neighbours).split(" ") if tokens else []
    if len(out) != len(tokens):  # cannot happen for word-level edits; refuse rather than misalign the tags
        raise ValueError(f"perturbation {kind!r} changed the number of words of {' '.join(tokens)!r}")
    return out, list(tags), list(range(len(tokens)))


def perturb_all(texts: Sequence[str], kind: str, rate: float = DEFAULT_RATE, seed: int = 0, neighbours=None) -> list[str]:
    return [perturb(str(t), kind, rate, seed, neighbours) for t in texts]


def robustness_table(predict_proba: Callable[[list[str]], np.ndarray], texts: Sequence[str], labels: np.ndarray, *,
                     kinds: Sequence[str] = PERTURBATIONS, rate: float = DEFAULT_RATE, seed: int = 0,
                     neighbours=None, clean_probabilities: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Accuracy on clean and perturbed texts, and the flip rate (answers that change), per perturbation.

    ``changed`` is the share of texts the perturbation altered at all. ``neighbour`` is skipped
    (and says so) without a neighbour function. ``clean_probabilities``: the clean texts' answers
    when they are already known (so they are not predicted twice)."""
    texts = [str(t) for t in texts]
    labels = np.asarray(labels)
    clean = (predict_proba(texts) if clean_probabilities is None else np.asarray(clean_probabilities)).argmax(-1)
    rows = [{"perturbation": "none", "accuracy": float((clean == labels).mean()), "flip_rate": 0.0, "changed": 0.0}]
    for kind in kinds:
        if kind == "neighbour" and neighbours is None:
            rows.append({"perturbation": kind, "accuracy": None, "flip_rate": None, "changed": None, "note": "no embedding table"})
            continue
        perturbed = perturb_all(texts, kind, rate, seed, neighbours)
        answers = predict_proba(perturbed).argmax(-1)
        rows.append({"perturbation": kind, "accuracy": float((answers == labels).mean()), "flip_rate": float((answers != clean).mean()),
                     "changed": float(np.mean([p != t for p, t in zip(perturbed, texts)]))})
    return rows


def entity_robustness_table(predict_tags: Callable[[list[list[str]]], list[list[str]]], tokens: Sequence[Sequence[str]],
                            tags: Sequence[Sequence[str]], *, kinds: Sequence[str] = PERTURBATIONS, rate: float = DEFAULT_RATE,
                            seed: int = 0, neighbours=None, clean: Sequence[Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """A tagger's conlleval entity F1 on clean and perturbed sentences, and its flip rate, per perturbation.

    ``flip_rate``: the share of sentences whose predicted tag sequence changes (on the words that remain:
    a dropped word's tag is not a flip); ``changed``: the share the perturbation altered at all.
    ``clean``: the tags already predicted for the clean sentences (so they are not predicted twice)."""
    from llmos_tf.metrics.conlleval import conlleval

    tokens, tags = [list(map(str, t)) for t in tokens], [list(map(str, t)) for t in tags]
    clean = [list(row) for row in clean] if clean is not None else predict_tags(tokens)
    base = conlleval(tags, clean)
    rows = [{"perturbation": "none", "entity_f1": base["entity_f1"], "entity_precision": base["entity_precision"],
             "entity_recall": base["entity_recall"], "flip_rate": 0.0, "changed": 0.0}]
    done = {kind: [perturb_tokens(w, t, kind, rate, seed, neighbours) for w, t in zip(tokens, tags)]
            for kind in kinds if not (kind == "neighbour" and neighbours is None)}
    # every perturbed sentence in ONE call: a tagger's predictor builds (and traces) its input pipeline per call
    batch = [d[0] for kind in done for d in done[kind]]
    answers = iter(predict_tags(batch) if batch else [])
    for kind in kinds:
        if kind not in done:
            rows.append({"perturbation": kind, "entity_f1": None, "entity_precision": None, "entity_recall": None, "flip_rate": None,
                         "changed": None, "note": "no embedding table"})
            continue
        predicted = [next(answers) for _ in done[kind]]
        scores = conlleval([d[1] for d in done[kind]], predicted)
        flips = [p != [c[i] for i in d[2]] for p, c, d in zip(predicted, clean, done[kind])]
        changed = [d[0] != w for d, w in zip(done[kind], tokens)]
        rows.append({"perturbation": kind, "entity_f1": scores["entity_f1"], "entity_precision": scores["entity_precision"],
                     "entity_recall": scores["entity_recall"], "flip_rate": float(np.mean(flips)) if flips else 0.0,
                     "changed": float(np.mean(changed)) if changed else 0.0})
    return rows


def augment_texts(texts: Sequence[str], labels: Sequence[Any], augment: Mapping[str, float] | None, seed: int = 0,
                  neighbours=None) -> tuple[list[str], list[Any]]:
    """``training.augment`` (``{perturbation: rate}``): the training texts plus one perturbed copy per
    perturbation (copies equal to their original are left out). Rates as in :func:`perturb`; for
    ``lowercase``/``punctuation`` the rate is the share of texts that get a copy."""
    texts, labels = [str(t) for t in texts], list(labels)
    if not augment:
        return texts, labels
    out_t, out_l = list(texts), list(labels)
    for kind, rate in augment.items():
        if kind == "neighbour" and neighbours is None:
            continue
        for i, (text, label) in enumerate(zip(texts, labels)):
            if kind in ("lowercase", "punctuation") and _rng(text, kind, seed).random() >= rate:
                continue
            new = perturb(text, kind, rate, seed + i, neighbours)
            if new != text:
                out_t.append(new)
                out_l.append(label)
    return out_t, out_l


def augment_training(data, training_cfg, seed: int) -> tuple[list[str], Any]:
    """The classification task's training texts and label ids with ``training.augment`` applied (its tf.data input).

    Without ``training.augment`` the data is returned as it is. ``neighbour`` is refused here: at the
    start of training the model has no trained embedding table to find neighbours in."""
    texts, labels = data.train["text"].tolist(), data.y_train
    augment = check_augment(getattr(training_cfg, "augment", None))
    if not augment:
        return texts, labels
    if "neighbour" in augment:
        from llmos_tf.errors import ConfigError

        raise ConfigError("training.augment.neighbour: not available at training time (no trained embedding table yet); "
                          "use typo, lowercase, punctuation or drop")
    texts, labels = augment_texts(texts, list(labels), augment, seed)
    return texts, np.asarray(labels, dtype=np.asarray(data.y_train).dtype)


def check_augment(augment: Any, where: str = "training.augment") -> dict[str, float]:
    """Validate a ``training.augment`` mapping (``{typo: 0.1, drop: 0.1}``) with an error naming the bad key.

    The rules live in :func:`llmos_tf.config.check_augment`, which refuses a bad mapping while the config is
    read, before any run folder is written; this is the same check for callers holding a bare mapping."""
    from llmos_tf.config import check_augment as check

    return check(augment, where)
