"""Per-entity word attributions of an NER run as a table (one row per entity x word), for ``Run.explain``
and ``llmos explain`` on a tagger; highlighted HTML in Jupyter, coloured lines on a terminal, JSON.

The numbers come from :class:`~llmos_tf.explain.entities.EntityExplainer` (integrated gradients of the
sum of the entity's tag log-probabilities; see there why), run on the model as it is exported (float32
weights, the fused BiLSTM loop), so they match the export's ``explain`` signature.

Example::

    frame = explain_tagger(TrainedTagger.load("runs/sample_ner"), ["Anna Berg flew to Oslo ."])
    frame[frame.entity == 0]          # the words' scores for the first entity ("Anna Berg", PER)
    print(render_entities_terminal(frame))
"""
from __future__ import annotations

import html
import weakref
from typing import Any, Sequence

import numpy as np
import pandas as pd

COLUMNS = ("text", "sentence", "entity", "type", "entity_text", "start", "end", "word_index", "word", "tag", "in_entity",
           "attribution", "score", "baseline_score")


class EntityExplanations(pd.DataFrame):
    """One row per (predicted entity, word of its sentence): ``attribution`` is the word's integrated-gradients
    score for that entity's tags; per entity they sum to ``score - baseline_score`` (log-probabilities).
    ``attrs["sentences"]`` keeps every sentence's tokens and tags (also those without an entity)."""

    _metadata = ["attrs"]

    @property
    def _constructor(self):
        return EntityExplanations

    def _repr_html_(self) -> str:
        return render_entities_html(self) + super()._repr_html_()

    def records(self) -> list[dict[str, Any]]:
        """JSON-able sentences with their entities and each entity's word scores (``llmos explain --json``)."""
        out = []
        for i, sentence in enumerate(self.attrs.get("sentences", [])):
            entities = []
            for _, group in self[self["sentence"] == i].groupby("entity", sort=True):
                first = group.iloc[0]
                entities.append({"type": first["type"], "text": first["entity_text"], "start": int(first["start"]), "end": int(first["end"]),
                                 "score": float(first["score"]), "baseline_score": float(first["baseline_score"]),
                                 "words": [{"word": w, "attribution": float(a)} for w, a in zip(group["word"], group["attribution"])]})
            out.append({"text": sentence["text"], "tokens": sentence["tokens"], "tags": sentence["tags"], "entities": entities})
        return out


_EXPLAINERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {steps: explainer}: one trace per run


def _explainer(tagger, steps: int):
    from llmos_tf.compression.int8_weights import QuantizedModel
    from llmos_tf.explain.entities import EntityExplainer

    cache = _EXPLAINERS.setdefault(tagger.model, {})
    if steps not in cache:
        model = QuantizedModel(tagger.model, weight_dtype="float32")  # as exported: the same scores as its `explain`
        cache[steps] = EntityExplainer(tagger.text_encoder(), model, tagger.labels.names, crf=tagger.crf, steps=steps)
    return cache[steps]


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def frame_from_outputs(texts: Sequence[str], out: dict[str, np.ndarray], offset: int = 0) -> tuple[list[dict], list[dict]]:
    """Rows and sentence records from an ``EntityExplainer`` / ``explain`` signature answer (numpy arrays)."""
    rows, sentences = [], []
    for i, text in enumerate(texts):
        n = int(out["token_count"][i])
        tokens = [_text(t) for t in out["tokens"][i][:n]]
        tags = [_text(t) for t in out["tags"][i][:n]]
        sentences.append({"text": str(text), "tokens": tokens, "tags": tags})
        for e in range(int(out["entity_count"][i])):
            start, end = int(out["entity_starts"][i][e]), int(out["entity_ends"][i][e])
            common = {"text": str(text), "sentence": offset + i, "entity": e, "type": _text(out["entity_types"][i][e]),
                      "entity_text": " ".join(tokens[start:end]), "start": start, "end": end,
                      "score": float(out["entity_scores"][i][e]), "baseline_score": float(out["entity_baseline_scores"][i][e])}
            for w, (word, tag) in enumerate(zip(tokens, tags)):
                rows.append({**common, "word_index": w, "word": word, "tag": tag, "in_entity": start <= w < end,
                             "attribution": float(out["attributions"][i][e][w])})
    return rows, sentences


def _frame(rows: list[dict], sentences: list[dict]) -> EntityExplanations:
    frame = EntityExplanations(pd.DataFrame(rows, columns=list(COLUMNS)))
    frame.attrs["sentences"] = sentences
    return frame


def explain_tagger(tagger, texts: Sequence[str], *, steps: int | None = None, batch_size: int = 4) -> EntityExplanations:
    """Per-entity integrated gradients for each sentence (whitespace tokens) with a loaded :class:`TrainedTagger`.

    Sentences go ``batch_size`` at a time (each entity is ``steps + 2`` model rows)."""
    from llmos_tf._tf import tf
    from llmos_tf.explain.attributions import DEFAULT_STEPS

    explainer = _explainer(tagger, int(steps or DEFAULT_STEPS))
    texts = [str(t) for t in texts]
    rows, sentences = [], []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        out = {k: v.numpy() for k, v in explainer(tf.constant(chunk)).items()}
        more_rows, more_sentences = frame_from_outputs(chunk, out, offset=start)
        rows += more_rows
        sentences += more_sentences
    return _frame(rows, sentences)


def explain_tagger_savedmodel(loaded_signature, texts: Sequence[str]) -> EntityExplanations:
    """Ask a tagger export's ``explain`` signature (a loaded concrete function)."""
    from llmos_tf._tf import tf

    texts = [str(t) for t in texts]
    out = {k: v.numpy() for k, v in loaded_signature(text=tf.constant(texts)).items()}
    return entity_explanations(texts, out)


def entity_explanations(texts: Sequence[str], out: dict[str, np.ndarray]) -> EntityExplanations:
    """The frame of a tagger ``explain`` signature's answer (numpy arrays: from a loaded SavedModel or a server)."""
    return _frame(*frame_from_outputs([str(t) for t in texts], out))


def _groups(frame: pd.DataFrame):
    for (_, _), group in frame.groupby(["sentence", "entity"], sort=True):
        yield group.iloc[0], group


def render_entities_html(frame: pd.DataFrame) -> str:
    """Each entity on its own line: its sentence's words on green (for the entity's tags) / red (against)."""
    parts = ['<div style="font-family:sans-serif;line-height:1.9">']
    for first, group in _groups(frame):
        peak = float(group["attribution"].abs().max() or 1.0)
        spans = []
        for word, score, inside in zip(group["word"], group["attribution"], group["in_entity"]):
            alpha = min(abs(score) / peak, 1.0) * 0.8
            colour = f"rgba(0,160,0,{alpha:.2f})" if score >= 0 else f"rgba(220,0,0,{alpha:.2f})"
            border = "border-bottom:2px solid #333;" if inside else ""
            spans.append(f'<span title="{score:+.4f}" style="background:{colour};{border}padding:1px 3px;border-radius:3px">{html.escape(word)}</span>')
        parts.append(f"<div><b>{html.escape(first['type'])}</b> {html.escape(first['entity_text'])!s}: {' '.join(spans)}</div>")
    return "\n".join(parts) + "</div>"


def render_entities_terminal(frame: EntityExplanations, colour: bool = True) -> str:
    """Per sentence its tags, then per entity one line per word with its score (``>`` marks the entity's words)."""
    lines = []
    sentences = frame.attrs.get("sentences", [])
    for i, sentence in enumerate(sentences):
        lines.append(sentence["text"])
        lines.append("  tags: " + " ".join(f"{w}/{t}" for w, t in zip(sentence["tokens"], sentence["tags"])))
        entities = frame[frame["sentence"] == i]
        if entities.empty:
            lines.append("  (no entities)")
        for first, group in _groups(entities):
            change = first["score"] - first["baseline_score"]
            lines.append(f"  -> {first['type']} {first['entity_text']!r} (words {first['start']}-{first['end'] - 1}); attributions for its tags "
                         f"(log p {first['score']:.3f}, {change:+.3f} over the baseline):")
            peak = float(group["attribution"].abs().max() or 1.0)
            for word, score, inside in zip(group["word"], group["attribution"], group["in_entity"]):
                bar = "#" * int(round(10 * abs(score) / peak))
                text = f"  {'>' if inside else ' '} {word:<20} {score:+.4f} {bar}"
                if colour and abs(score) / peak >= 0.25:
                    text = f"\x1b[{'42' if score >= 0 else '41'}m{text}\x1b[0m"
                lines.append(text)
    return "\n".join(lines)
