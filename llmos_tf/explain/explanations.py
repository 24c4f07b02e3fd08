"""Word attributions as a table: from a run (integrated gradients in-process) or an exported version
(its ``explain`` signature), shown as highlighted HTML in Jupyter and coloured text on a terminal.

Example::

    frame = explain_run(TrainedRun.load("runs/sst2_bilstm"), ["a wonderful film"])
    frame                      # in Jupyter: each word on a red (against) / green (for) background
    print(render_terminal(frame))
"""
from __future__ import annotations

import html
import math
import pathlib
import weakref
from typing import Any, Sequence

import numpy as np
import pandas as pd

from llmos_tf.errors import RunError

COLUMNS = ("text", "label", "probability", "words", "attributions", "explained", "baseline_probability")


class Explanations(pd.DataFrame):
    """One row per text: ``label``/``probability`` predicted, ``words`` and their ``attributions`` for the
    ``explained`` class. ``f(x) - f(baseline) == probability - baseline_probability`` is what the scores sum to."""

    @property
    def _constructor(self):
        return Explanations

    def _repr_html_(self) -> str:  # Jupyter: the highlighted sentences, then the plain table
        return render_html(self) + super()._repr_html_()

    def records(self) -> list[dict[str, Any]]:
        """JSON-able rows (``llmos explain --json``)."""
        out = []
        for row in self.itertuples(index=False):
            out.append({"text": row.text, "label": row.label, "probability": float(row.probability), "explained": row.explained,
                        "baseline_probability": None if math.isnan(row.baseline_probability) else float(row.baseline_probability),
                        "words": [{"word": w, "attribution": float(a)} for w, a in zip(row.words, row.attributions)]})
        return out


def _frame(rows: list[dict[str, Any]]) -> Explanations:
    return Explanations(pd.DataFrame(rows, columns=list(COLUMNS)))


def _unpad(words: np.ndarray, scores: np.ndarray) -> tuple[list[str], list[float]]:
    kept = [(w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w), float(s)) for w, s in zip(words, scores)]
    kept = [(w, s) for w, s in kept if w]
    return [w for w, _ in kept], [s for _, s in kept]


def explain_run(run, texts: Sequence[str], *, label: str | None = None, steps: int | None = None,
                batch_size: int = 8) -> Explanations:
    """Integrated gradients for each text with a loaded :class:`TrainedRun` (classification).

    ``label``: explain this class instead of the predicted one. Texts go ``batch_size`` at a time
    (each is ``steps + 2`` model rows)."""
    from llmos_tf._tf import tf
    from llmos_tf.explain.attributions import DEFAULT_STEPS

    names = list(run.labels.names)
    target = None
    if label is not None:
        if label not in names:
            raise RunError(f"--label {label!r}: not a label of {run.run_dir}; labels: {', '.join(names)}")
        target = names.index(label)
    explainer = _explainer(run, steps or DEFAULT_STEPS)
    rows: list[dict[str, Any]] = []
    texts = [str(t) for t in texts]
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        targets = tf.fill([len(chunk)], -1 if target is None else target)
        out = {k: v.numpy() for k, v in explainer(tf.constant(chunk), targets).items()}
        predicted = out["probabilities"].argmax(-1)
        for i, text in enumerate(chunk):
            words, scores = _unpad(out["words"][i], out["attributions"][i])
            rows.append({"text": text, "label": names[predicted[i]], "probability": float(out["probabilities"][i, predicted[i]]),
                         "words": words, "attributions": scores, "explained": names[int(out["class_id"][i])],
                         "baseline_probability": float(out["baseline_probability"][i])})
    return _frame(rows)


_EXPLAINERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {steps: explainer}: one trace per run


def _explainer(run, steps: int):
    """The run's explainer, traced once: the model as it is exported (float32 weights, the fused BiLSTM
    loop that traces and differentiates several times faster than Keras' LSTM), so the scores match the
    served ``explain`` signature."""
    from llmos_tf.compression.int8_weights import QuantizedModel
    from llmos_tf.explain.attributions import TextExplainer, vocabulary_of

    cache = _EXPLAINERS.setdefault(run.model, {})
    if steps not in cache:
        tokenizer = run.tokenizer()
        model = QuantizedModel(run.model, weight_dtype="float32")
        cache[steps] = TextExplainer(tokenizer, model, vocabulary_of(tokenizer), run.max_length, features=run.architecture.features, steps=steps)
    return cache[steps]


def explain_savedmodel(version_dir: str | pathlib.Path, texts: Sequence[str]) -> Explanations:
    """Ask an exported version's ``explain`` signature (the predicted class; no llmos code in the graph)."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel uses)

    from llmos_tf._tf import tf

    loaded = tf.saved_model.load(str(version_dir))
    if "explain" not in loaded.signatures:
        raise RunError(f"{version_dir}: this version has no 'explain' signature (exported before it existed, a TFLite-only version, "
                       f"or a tagger); re-export its run with llmos export, or pass the run folder")
    out = {k: v.numpy() for k, v in loaded.signatures["explain"](text=tf.constant([str(t) for t in texts])).items()}
    return frame_from_explain_outputs(texts, out)


def frame_from_explain_outputs(texts: Sequence[str], out: dict[str, np.ndarray]) -> Explanations:
    """The frame of a classifier ``explain`` signature's answer (numpy arrays: from a loaded SavedModel or a server)."""
    rows = []
    for i, text in enumerate(texts):
        words, scores = _unpad(out["tokens"][i], out["attributions"][i])
        label = out["label"][i].decode()
        rows.append({"text": str(text), "label": label, "probability": float(out["probability"][i]), "words": words,
                     "attributions": scores, "explained": label, "baseline_probability": math.nan})
    return _frame(rows)




def render_html(frame: pd.DataFrame) -> str:
    """Each text's words on a green (supports the explained class) or red (against it) background."""
    parts = ['<div style="font-family:sans-serif;line-height:1.9">']
    for row in frame.itertuples(index=False):
        peak = max((abs(a) for a in row.attributions), default=0.0) or 1.0
        spans = []
        for word, score in zip(row.words, row.attributions):
            alpha = min(abs(score) / peak, 1.0) * 0.8
            colour = f"rgba(0,160,0,{alpha:.2f})" if score >= 0 else f"rgba(220,0,0,{alpha:.2f})"
            spans.append(f'<span title="{score:+.4f}" style="background:{colour};padding:1px 3px;border-radius:3px">{html.escape(word)}</span>')
        parts.append(f"<div><b>{html.escape(str(row.explained))}</b> ({row.probability:.3f}): {' '.join(spans)}</div>")
    return "\n".join(parts) + "</div>"


def render_terminal(frame: pd.DataFrame, colour: bool = True) -> str:
    """Plain text, one line per word with its score; ``colour``: green / red ANSI backgrounds as well."""
    lines = []
    for row in frame.itertuples(index=False):
        lines.append(f"{row.text}\n  -> {row.label} ({row.probability:.3f}); attributions for {row.explained!r}:")
        peak = max((abs(a) for a in row.attributions), default=0.0) or 1.0
        for word, score in zip(row.words, row.attributions):
            bar = "#" * int(round(10 * abs(score) / peak))
            text = f"  {word:<20} {score:+.4f} {bar}"
            if colour and abs(score) / peak >= 0.25:
                text = f"\x1b[{'42' if score >= 0 else '41'}m{text}\x1b[0m"
            lines.append(text)
    return "\n".join(lines)
