"""Inline HTML for notebooks: named entities highlighted in their sentence.

:func:`entities_html` takes what a tagger run predicts (``Run.predict`` on an NER
run: ``tokens`` and ``entities`` with token offsets) and returns an object that
Jupyter renders as marked-up sentences, one colour per entity type, in the
style of spaCy's displaCy.

Example::

    from llmos_tf import entities_html
    entities_html(ner_run.predict(["Anna Berg joined Northwind Bank in Oslo"]))
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from llmos_tf.errors import DataError

PALETTE = ("#aa9cfc", "#feca74", "#7aecec", "#bfeeb7", "#ff9561", "#e4e7d2", "#c887fb", "#9cc9cc")
KNOWN_COLOURS = {"PER": "#aa9cfc", "ORG": "#7aecec", "LOC": "#feca74", "MISC": "#bfeeb7"}


@dataclass
class EntityHTML:
    """Marked-up sentences; ``_repr_html_`` is what Jupyter shows, ``html`` the same string."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def _colour(kind: str, assigned: dict[str, str]) -> str:
    if kind not in assigned:
        assigned[kind] = KNOWN_COLOURS.get(kind, PALETTE[len(assigned) % len(PALETTE)])
    return assigned[kind]


def sentence_html(tokens: Sequence[str], entities: Sequence[Mapping[str, Any]], colours: dict[str, str] | None = None) -> str:
    """One sentence: tokens joined by spaces, each entity span in a ``<mark>`` labelled with its type."""
    colours = {} if colours is None else colours
    starts = {int(e["start"]): e for e in entities}
    parts, i = [], 0
    while i < len(tokens):
        entity = starts.get(i)
        if entity is not None and int(entity["end"]) > i:
            end = min(int(entity["end"]), len(tokens))
            kind = str(entity["type"])
            text = html.escape(" ".join(tokens[i:end]))
            parts.append(
                f'<mark class="entity" data-type="{html.escape(kind)}" style="background:{_colour(kind, colours)};'
                f'padding:0.1em 0.35em;border-radius:0.3em;line-height:2">{text}'
                f'<span style="font-size:0.7em;font-weight:bold;margin-left:0.4em">{html.escape(kind)}</span></mark>'
            )
            i = end
        else:
            parts.append(html.escape(tokens[i]))
            i += 1
    return " ".join(parts)


def entities_html(predictions: pd.DataFrame) -> EntityHTML:
    """All rows of a tagger's prediction frame (columns ``tokens`` and ``entities``) as HTML."""
    missing = [c for c in ("tokens", "entities") if c not in getattr(predictions, "columns", [])]
    if missing:
        raise DataError(f"entities_html: expected a tagger's predictions with columns tokens and entities; missing {missing}")
    colours: dict[str, str] = {}
    lines = [f'<div class="llmos-entities" style="margin:0.4em 0">{sentence_html(list(t), list(e), colours)}</div>'
             for t, e in zip(predictions["tokens"], predictions["entities"])]
    return EntityHTML("\n".join(lines))
